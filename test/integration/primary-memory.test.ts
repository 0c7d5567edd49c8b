import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureEvent, type FixtureProcess, startFixture } from '../helpers/cluster.js';
import { loopbackSources } from '../helpers/http.js';

/** Clients spread over the workers: 127.0.0.2 .. 127.0.0.41. */
const SOURCES = loopbackSources(40);
/** Rounds of connections, the primary's heap measured after each. */
const ROUNDS = 4;
/** Connections of each round kept open until the end. */
const HELD = 150;
/** Connections of each round opened, answered and closed before it is measured. */
const CLOSED = 1500;
/**
 * Bytes of the primary's heap (after full GCs) each handoff may leave behind, in the round after
 * the first that grew it least. Anything kept per connection costs more: a raw handle's wrapper
 * alone is ~100 bytes, an entry in a Map or Set with it well over that, and it grows the heap in
 * every round. One-off growth (code optimised, feedback, a table grown) lands in one round at
 * most, mostly the first, which is left out.
 */
const MAX_BYTES_PER_CONNECTION = 32;

/** A GET on a new connection from `source`; resolves once the answer's head arrived. */
function answered(port: number, source: string): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: source });
    socket.setEncoding('latin1');
    let text = '';
    socket.on('error', reject);
    socket.on('connect', () => socket.write('GET / HTTP/1.1\r\nHost: localhost\r\n\r\n'));
    socket.on('data', (chunk: string) => {
      text += chunk;
      if (text.includes('\r\n\r\n')) {
        socket.removeListener('error', reject);
        socket.on('error', () => {});
        resolve(socket);
      }
    });
  });
}

/** `count` connections answered, 50 at a time, from SOURCES in turn. */
async function connections(port: number, count: number, keep: boolean): Promise<net.Socket[]> {
  const kept: net.Socket[] = [];
  for (let i = 0; i < count; i += 50) {
    const batch = Array.from({ length: Math.min(50, count - i) }, (_, j) =>
      answered(port, SOURCES[(i + j) % SOURCES.length] as string),
    );
    for (const socket of await Promise.all(batch)) {
      if (keep) kept.push(socket);
      else socket.destroy();
    }
  }
  return kept;
}

/** The primary's `heap` line after two full GCs. */
async function heap(app: FixtureProcess): Promise<FixtureEvent> {
  const from = app.received.length;
  app.signal('SIGUSR2');
  return (await app.waitFor('heap', { from })).line;
}

describe('IP mode: the primary after handoffs (issue 18)', () => {
  let app: FixtureProcess;
  const held: net.Socket[] = [];

  beforeAll(async () => {
    app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', HEAP_ON_SIGNAL: 'SIGUSR2' },
    });
  });

  afterAll(async () => {
    for (const socket of held) socket.destroy();
    await app?.stop();
  });

  it(`keeps nothing per connection once a worker has it: over rounds of ${HELD} held and ${CLOSED} closed connections its heap after full GCs grows by less than ${MAX_BYTES_PER_CONNECTION} bytes per handoff`, async () => {
    const port = app.port();
    // Warm: the code of the accept and handoff paths compiled, the heap past its first growth.
    await connections(port, 300, false);
    const rounds = [await heap(app)];
    for (let round = 0; round < ROUNDS; round++) {
      held.push(...(await connections(port, HELD, true)));
      await connections(port, CLOSED, false);
      rounds.push(await heap(app));
    }

    const stats = (line: FixtureEvent) => line.stats as { connections: number; waiting: number };
    const growth = rounds.slice(2).map((line, i) => {
      const prev = rounds[i + 1] as FixtureEvent;
      const handoffs = stats(line).connections - stats(prev).connections;
      return {
        handoffs,
        perConnection: (Number(line.heapUsed) - Number(prev.heapUsed)) / handoffs,
      };
    });
    const least = Math.min(...growth.map((g) => g.perConnection));
    const last = rounds[rounds.length - 1] as FixtureEvent;
    const what = `heap after full GCs, after the warm-up and each round: ${rounds.map((r) => r.heapUsed).join(' -> ')} bytes; bytes per handoff in rounds 2..${ROUNDS}: ${growth.map((g) => g.perConnection.toFixed(1)).join(', ')}\n${JSON.stringify(last.stats)}`;
    for (const g of growth) expect(g.handoffs, what).toBe(HELD + CLOSED);
    expect(stats(last).waiting, what).toBe(0);
    expect(least, what).toBeLessThan(MAX_BYTES_PER_CONNECTION);
  });
});
