// A worker's write is always answered: the primary's hub acknowledges what it applies and
// answers `refused` (with the reason) what it refuses, and the worker's replica settles every
// write it sent (resolved, rejected on a refusal, on a primary that is gone or silent), so no
// write waits forever and none stays pending. One Hub and one HubClient in this process, over a
// real data channel (the hub's Unix socket); the IPC channel that tells the client where it is
// is replaced by a loopback (protocol/ipc.js mocked): what one sends, the other receives.
import type { Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Message } from '../../src/protocol/messages.js';
import { Clock } from '../../src/replication/clock.js';
import type { Change } from '../../src/replication/table.js';
import { fakeLinks, fakeWorker, sendQuery } from '../helpers/hub-links.js';

const wire = vi.hoisted(() => ({
  /** The hub's handler of worker -> primary store messages (none: nobody answers). */
  deliverToPrimary: undefined as ((msg: unknown) => void) | undefined,
  /** The worker's handler of primary -> worker messages (where its data channel is). */
  toWorker: undefined as ((msg: unknown) => void) | undefined,
}));

vi.mock('../../src/protocol/ipc.js', () => ({
  sendToPrimary: (msg: unknown, _what: string, done?: (err: Error | null) => void) => {
    // Through JSON, as a real channel carries it.
    const copy = JSON.parse(JSON.stringify(msg));
    queueMicrotask(() => {
      done?.(null);
      wire.deliverToPrimary?.(copy);
    });
    return true;
  },
  sendToWorker: (_worker: unknown, msg: unknown) => {
    const copy = JSON.parse(JSON.stringify(msg));
    queueMicrotask(() => wire.toWorker?.(copy));
    return true;
  },
  primaryChannel: {
    on: (_types: unknown, handler: (msg: unknown) => void) => {
      wire.toWorker = handler;
    },
    off: () => {},
  },
}));

const { Hub } = await import('../../src/replication/transports/ipc/hub.js');
const { HubClient } = await import('../../src/replication/transports/ipc/client.js');

const worker = Object.assign(new EventEmitter(), {
  process: { pid: 4242 },
  isConnected: () => true,
  send: () => true,
}) as unknown as Worker;

function cluster() {
  const hub = new Hub();
  wire.deliverToPrimary = (msg) => hub.receive(worker, msg as never);
  const client = new HubClient(600_000);
  const link = client.link(new Clock('a1b2c3d4e5f60708'));
  return { hub, client, link };
}

const version = (t: number) => ({ t, c: 0, n: 'a1b2c3d4e5f60708' });
const set = (sid: string, t = 1): Change => ({
  op: 'set',
  sid,
  data: '{"user":"ann"}',
  expiresAt: Date.now() + 60_000,
  version: version(t),
});

/** How a write settled within `ms`: its error, `'resolved'`, or `'still pending'`. */
async function outcome(write: void | Promise<void>, ms = 1000): Promise<unknown> {
  return Promise.race([
    Promise.resolve(write).then(
      () => 'resolved',
      (err: unknown) => err,
    ),
    delay(ms).then(() => 'still pending'),
  ]);
}

afterEach(() => {
  vi.useRealTimers();
  wire.deliverToPrimary = undefined;
});

describe("the hub's answer to a worker's write", () => {
  it('a write the hub applies resolves, and leaves nothing pending', async () => {
    const { hub, link } = cluster();
    expect(await outcome(link.publish(set('fine')))).toBe('resolved');
    expect(hub.table.get('fine')).toBe('{"user":"ann"}');
    expect(link.stats()).toMatchObject({ pending: 0 });
    hub.close();
  });

  it('a write the hub refuses (a 300-character id) rejects with the reason, and leaves nothing pending', async () => {
    const { hub, link } = cluster();
    // A store of another version would send it: the hub's parser is the last word.
    const err = await outcome(link.publish(set('L'.repeat(300))));
    expect(err).toMatchObject({ name: 'StickyMeshError', code: 'ERR_STICKY_WRITE_FAILED' });
    expect((err as Error).message).toMatch(
      /the primary refused the write: its session id is 300 characters long, over the limit of 256/,
    );
    expect(link.stats()).toMatchObject({ pending: 0 });
    expect(hub.counters.dropped).toBe(1);
    expect(hub.table.record('L'.repeat(300))).toBeUndefined();
    hub.close();
  });

  it('a refused write among many: only it rejects, every other resolves', async () => {
    const { hub, link } = cluster();
    const writes = Array.from({ length: 20 }, (_, i) =>
      outcome(link.publish(set(i === 7 ? '' : `s${i}`, i + 1))),
    );
    const settled = await Promise.all(writes);
    expect(settled.filter((s) => s === 'resolved')).toHaveLength(19);
    expect(settled[7]).toMatchObject({ code: 'ERR_STICKY_WRITE_FAILED' });
    expect(link.stats()).toMatchObject({ pending: 0 });
    hub.close();
  });

  it('a primary that never answers: the write rejects after 10 s (to a second), nothing stays pending', async () => {
    vi.useFakeTimers({ toFake: ['setTimeout', 'clearTimeout'] });
    // No hub: the store's first message is sent, and nothing ever answers.
    const link = new HubClient(600_000).link(new Clock('a1b2c3d4e5f60708'));
    let settled: unknown = 'still pending';
    Promise.resolve(link.publish(set('silent'))).catch((err: unknown) => {
      settled = err;
    });
    await vi.advanceTimersByTimeAsync(10_000);
    expect(settled).toBe('still pending');
    expect(link.stats()).toMatchObject({ pending: 1 });
    await vi.advanceTimersByTimeAsync(1_100);
    expect(settled).toMatchObject({ code: 'ERR_STICKY_WRITE_FAILED' });
    expect((settled as Error).message).toMatch(/did not answer in 10000 ms/);
    expect(link.stats()).toMatchObject({ pending: 0 });
  });

  it('a primary that is gone: the write rejects at once', async () => {
    const { hub, link } = cluster();
    expect(await outcome(link.publish(set('first')))).toBe('resolved');
    // The primary's end of the data channel closes (as when the primary exits).
    hub.close();
    await delay(50);
    expect(await outcome(link.publish(set('orphan')))).toMatchObject({
      code: 'ERR_STICKY_STORE_CLOSED',
    });
    expect(link.stats()).toMatchObject({ pending: 0 });
  });

  it('a read on miss of an id outside the limits is answered at once, never asked of the other machines', async () => {
    const asked: string[] = [];
    const hub = new Hub({
      link: fakeLinks,
      transport: () => ({
        kind: 'redis' as const,
        start: () => Promise.resolve(),
        synced: () => Promise.resolve(),
        publish: () => {},
        fetch: (sid: string) => {
          asked.push(sid);
          return Promise.resolve();
        },
        close: () => Promise.resolve(),
        stats: () => ({}),
      }),
    });
    const w = fakeWorker(1);
    hub.receive(w, { src: 'sticky-mesh', v: 1, t: 16, tombstoneTtl: 600_000 });
    sendQuery(w, 1, 'x'.repeat(5000));
    sendQuery(w, 2, 'well-formed-session-id');
    await delay(10);
    expect(asked).toEqual(['well-formed-session-id']);
    expect(w.sent).toEqual([
      expect.objectContaining({ t: 13, id: 1 }),
      expect.objectContaining({ t: 13, id: 2 }),
    ]);
    hub.close();
  });

  it('an acknowledgement carries the refusal as a checked field', async () => {
    const { parseMessage } = await import('../../src/protocol/messages.js');
    const base = { src: 'sticky-mesh', v: 1, t: 9, id: 3 };
    expect(parseMessage({ ...base, refused: 'why' })).toMatchObject({ refused: 'why' });
    expect(parseMessage(base)).toBeDefined();
    expect(parseMessage({ ...base, refused: 5 } as unknown as Message)).toBeUndefined();
  });
});

describe("a connection's fence in a worker", () => {
  it('waits for the full state, then for the channel to reach the position the hub gave it', async () => {
    const { hub, client } = cluster();
    const order: string[] = [];
    // Before the state (the store asks for it as it is created): nothing is served.
    client.afterFence(0, () => order.push('first'));
    expect(order).toEqual([]);
    await vi.waitFor(() => expect(order).toEqual(['first']));
    // The worker stops reading; a change reaches the hub and is written to its channel.
    client.holdReads(300);
    await delay(20);
    hub.applyRemote([set('late', Date.now())]);
    hub.flush();
    const fence = hub.position(worker);
    client.afterFence(fence, () => order.push(`second:${client.table.get('late') ?? 'missing'}`));
    client.afterFence(0, () => order.push('third'));
    await delay(150);
    expect(order).toEqual(['first']);
    await vi.waitFor(() => expect(order).toEqual(['first', 'second:{"user":"ann"}', 'third']));
    hub.close();
  });
});
