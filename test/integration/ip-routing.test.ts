import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { getWorker, loopbackSources, request, type WorkerReply } from '../helpers/http.js';
import { establishedTcpSockets, isAlive, listeningTcpSockets } from '../helpers/proc.js';
import { hasTool } from '../helpers/system.js';

/** 40 distinct clients: 127.0.0.2 .. 127.0.0.41. */
const SOURCES = loopbackSources(40);

/** One GET per source, in parallel; the answers keyed by source. */
async function homes(port: number, sources: readonly string[]): Promise<Map<string, WorkerReply>> {
  const replies = await Promise.all(sources.map((source) => getWorker({ port, source })));
  return new Map(sources.map((source, i) => [source, replies[i] as WorkerReply]));
}

function describeHomes(map: ReadonlyMap<string, readonly WorkerReply[]>): string {
  return [...map]
    .map(
      ([source, replies]) =>
        `${source} -> ${replies.map((r) => `slot ${r.slot} pid ${r.pid}`).join(', ')}`,
    )
    .join('\n');
}

/** Opens a connection from `source` and abandons it in one of three ways. */
function abandonedConnection(port: number, source: string, how: number): Promise<void> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port, localAddress: source });
    socket.on('error', () => {});
    socket.on('close', () => resolve());
    socket.on('connect', () => {
      if (how === 0) {
        socket.destroy();
      } else if (how === 1) {
        socket.write('GET / HT');
        socket.resetAndDestroy();
      } else {
        socket.end('GET /slow?ms=200 HTTP/1.1\r\nHost: localhost\r\n\r\n', () => socket.destroy());
      }
    });
  });
}

/** Every source sends `rounds` GETs, each on a fresh connection; the replies by source. */
async function visit(port: number, rounds: number): Promise<Map<string, WorkerReply[]>> {
  const seen = new Map<string, WorkerReply[]>(SOURCES.map((s) => [s, []]));
  for (let round = 0; round < rounds; round++) {
    for (const [source, reply] of await homes(port, SOURCES)) seen.get(source)?.push(reply);
  }
  return seen;
}

/** Sources whose requests reached more than one worker process. */
function wanderers(seen: ReadonlyMap<string, readonly WorkerReply[]>): string[] {
  return [...seen]
    .filter(([, replies]) => new Set(replies.map((r) => `${r.slot}/${r.pid}`)).size > 1)
    .map(([source]) => source);
}

describe('negative control: a plain cluster on a shared port', () => {
  it('fails the stickiness check that sticky-mesh must pass', async () => {
    const control = await startFixture({ fixture: 'plain-cluster.mjs', env: { WORKERS: '4' } });
    try {
      const seen = await visit(control.port(), 3);
      expect(
        wanderers(seen).length,
        `round-robin kept every client in place?\n${describeHomes(seen)}`,
      ).toBeGreaterThan(0);
    } finally {
      await control.stop();
    }
  });
});

describe('IP mode, 4 workers on one port', () => {
  let app: FixtureProcess;
  let port: number;

  beforeAll(async () => {
    app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '4', STICKY_OPTIONS: JSON.stringify({ seed: 7 }) },
    });
    port = app.port();
  });

  afterAll(stopFixtures);

  it('sends every client address to one worker, and every worker gets clients', async () => {
    const seen = await visit(port, 3);
    const what = `${describeHomes(seen)}\n${app.transcript()}`;

    const upBySlot = new Map(app.events('workerUp').map((l) => [l.slot, l.pid]));
    expect(wanderers(seen), `clients reached more than one worker\n${what}`).toEqual([]);
    for (const [source, replies] of seen) {
      const first = replies[0] as WorkerReply;
      expect(upBySlot.get(first.slot), `${source}: slot and pid disagree with workerUp`).toBe(
        first.pid,
      );
      expect(first.remote, `the worker saw another client address than ${source}`).toBe(source);
    }
    const slots = new Set([...seen.values()].map((replies) => replies[0]?.slot));
    expect([...slots].sort(), `not every worker got clients\n${what}`).toEqual([0, 1, 2, 3]);
  });

  it.skipIf(!hasTool('ss'))(
    'lets only the primary listen on the port; workers hold no listening TCP socket (needs ss)',
    async () => {
      const workers = app.workerPids();
      expect(workers.filter(isAlive), app.transcript()).toHaveLength(4);

      const sockets = await listeningTcpSockets();
      const onPort = sockets.filter((s) => s.port === port);
      const what = `primary ${app.pid}, workers ${workers.join(', ')}\n${sockets.map((s) => s.raw).join('\n')}`;
      expect(onPort.length, `nothing listens on ${port}\n${what}`).toBeGreaterThan(0);
      expect([...new Set(onPort.flatMap((s) => s.pids))], what).toEqual([app.pid]);
      const heldByWorkers = sockets.filter((s) => s.pids.some((pid) => workers.includes(pid)));
      expect(
        heldByWorkers.map((s) => s.raw),
        what,
      ).toEqual([]);
    },
  );

  it('delivers 1 MB POST bodies intact, several in parallel from different sources', async () => {
    const sources = SOURCES.slice(0, 8);
    const bodies = sources.map(() => randomBytes(1024 * 1024));
    const replies = await Promise.all(
      sources.map((source, i) =>
        request({ port, source, method: 'POST', body: bodies[i] as Buffer, timeoutMs: 20_000 }),
      ),
    );
    replies.forEach((reply, i) => {
      const body = bodies[i] as Buffer;
      const sent = { bytes: body.length, sha256: createHash('sha256').update(body).digest('hex') };
      const what = `from ${sources[i]}: status ${reply.status}, reply ${reply.text}`;
      expect(reply.status, what).toBe(200);
      expect({ bytes: reply.body?.bytes, sha256: reply.body?.sha256 }, what).toEqual(sent);
    });
  });

  it.skipIf(!hasTool('ss'))(
    'keeps no copy of handed-off connections in the primary (a peer leaked one per connection) (needs ss)',
    async () => {
      const sources = SOURCES.slice(0, 20);
      const agents = sources.map(
        (source) => new http.Agent({ keepAlive: true, localAddress: source }),
      );
      try {
        await Promise.all(
          agents.map((agent, i) => request({ port, source: sources[i] as string, agent })),
        );
        const held = (await establishedTcpSockets()).filter((s) => s.localPort === port);
        const what = held.map((s) => `${s.local} <- ${s.peer} pids ${s.pids.join(',')}`).join('\n');
        expect(
          held.length,
          `expected the 20 idle keep-alive connections\n${what}`,
        ).toBeGreaterThanOrEqual(20);
        expect(
          held.filter((s) => s.pids.includes(app.pid)),
          what,
        ).toEqual([]);
      } finally {
        for (const agent of agents) agent.destroy();
      }
    },
  );

  it('survives 200 connections that close while in flight, and keeps routing as before', async () => {
    const before = await homes(port, SOURCES);
    const workersBefore = app.workerPids();
    const exitsBefore = app.events('workerExit').length;

    for (let i = 0; i < 200; i += 20) {
      await Promise.all(
        Array.from({ length: 20 }, (_, j) =>
          abandonedConnection(port, SOURCES[(i + j) % SOURCES.length] as string, (i + j) % 3),
        ),
      );
    }

    const after = await homes(port, SOURCES);
    const what = `before:\n${describeHomes(new Map([...before].map(([s, r]) => [s, [r]])))}\nafter:\n${describeHomes(new Map([...after].map(([s, r]) => [s, [r]])))}\n${app.transcript()}`;
    expect(isAlive(app.pid), `primary died\n${what}`).toBe(true);
    expect(app.exitStatus, what).toBeUndefined();
    expect(app.events('workerExit').slice(exitsBefore), `a worker died\n${what}`).toEqual([]);
    expect(app.workerPids(), what).toEqual(workersBefore);
    for (const source of SOURCES) {
      expect(after.get(source), `${source} moved\n${what}`).toEqual(before.get(source));
    }
  });
});
