import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { rendezvous } from '../../src/hash.js';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import {
  callSessionApp,
  type Method,
  type SessionReply,
  sessionAppStats,
} from '../helpers/session-app.js';

afterAll(stopFixtures);

const SEED = 7;
const SLOTS = [0, 1, 2, 3];
const pick = rendezvous(SEED, SLOTS.length);

/** An X-Forwarded-For value that the balancer routes to `slot` (the n-th such value). */
function clientOn(slot: number, n = 0): string {
  let seen = 0;
  for (let i = 1; i < 100_000; i++) {
    const ip = `10.${(i >> 16) & 255}.${(i >> 8) & 255}.${i & 255}`;
    if (pick(ip, SLOTS) === slot && seen++ === n) return ip;
  }
  throw new Error(`no address for slot ${slot}`);
}

/** A request from a client the balancer routes to `slot`: that worker must answer it. */
async function call(
  port: number,
  method: Method,
  path: string,
  slot: number,
  cookie?: string,
): Promise<SessionReply> {
  const reply = await callSessionApp({ port }, method, path, {
    cookie,
    client: clientOn(slot),
    what: `${method} ${path} on ${slot}`,
  });
  expect(reply.body.slot, `${method} ${path} was meant for slot ${slot}`).toBe(slot);
  return reply;
}

async function start(extra: Record<string, string> = {}): Promise<FixtureProcess> {
  return startFixture({
    fixture: 'session-app.mjs',
    env: {
      WORKERS: '4',
      STICKY_OPTIONS: JSON.stringify({ seed: SEED, respawnDelay: 50 }),
      ...extra,
    },
  });
}

describe('ReplicatedStore across the workers of a sticky cluster', () => {
  it('a connection handed to a worker whose store is behind waits for the writes acknowledged before it', async () => {
    const app = await start();
    const port = app.port();
    const login = await call(port, 'POST', '/login?user=ann', 0);
    await vi.waitFor(async () => {
      expect((await call(port, 'GET', '/me', 1, login.cookie)).body.user).toBe('ann');
    });
    // Worker 1 stops reading its store channel; worker 0 changes the session (acknowledged:
    // the hub has written the change to worker 1's channel, where it waits).
    const HOLD_MS = 800;
    await call(port, 'GET', `/hold-store-reads?ms=${HOLD_MS}`, 1);
    const held = Date.now();
    await call(port, 'POST', '/login?user=bob', 0, login.cookie);
    // A new connection to worker 1 is served once its store has the change: never 'ann'.
    const read = await call(port, 'GET', '/me', 1, login.cookie);
    expect(read.body.user).toBe('bob');
    expect(Date.now() - held).toBeGreaterThanOrEqual(HOLD_MS - 50);
  });

  it('every read sees the last write, whichever worker serves it; logout holds everywhere', async () => {
    const app = await start();
    const port = app.port();
    const login = await call(port, 'POST', '/login?user=ann', 0);
    const cookie = login.cookie;
    expect(cookie).toMatch(/^connect\.sid=/);
    let expected = 0;
    for (const writer of [1, 2, 3, 0, 2]) {
      const inc = await call(port, 'POST', '/inc', writer, cookie);
      expected++;
      expect(inc.body.count).toBe(expected);
      for (const reader of SLOTS) {
        const me = await call(port, 'GET', '/me', reader, cookie);
        expect(me.body, `read on ${reader} after a write on ${writer}`).toMatchObject({
          user: 'ann',
          count: expected,
        });
      }
    }
    await call(port, 'POST', '/logout', 3, cookie);
    for (const reader of SLOTS) {
      expect((await call(port, 'GET', '/me', reader, cookie)).body.user).toBeNull();
    }
  });

  it('loses no session when the worker that created them is killed with SIGKILL', async () => {
    const app = await start();
    const port = app.port();
    const cookies: string[] = [];
    for (let i = 0; i < 20; i++) {
      cookies.push((await call(port, 'POST', `/login?user=u${i}`, 2)).cookie as string);
    }
    const up = app.events('workerUp').filter((e) => e.slot === 2);
    const pid = Number(up.at(-1)?.pid);
    const before = app.events('workerUp').length;
    process.kill(pid, 'SIGKILL');
    await vi.waitFor(
      () => {
        expect(
          app
            .events('workerUp')
            .slice(before)
            .some((e) => e.slot === 2),
        ).toBe(true);
      },
      { timeout: 10_000 },
    );
    for (const [i, cookie] of cookies.entries()) {
      expect((await call(port, 'GET', '/me', 2, cookie)).body.user).toBe(`u${i}`);
      expect((await call(port, 'GET', '/me', 0, cookie)).body.user).toBe(`u${i}`);
    }
  });

  it('1,000 sessions updated concurrently from every worker converge to one state', async () => {
    const app = await start();
    const port = app.port();
    const cookies: string[] = [];
    await inBatches(1_000, 50, async (i) => {
      cookies[i] = (await call(port, 'POST', `/login?user=u${i}`, i % 4)).cookie as string;
    });
    // Each session is written from three workers at once: last writer wins, the same everywhere.
    await inBatches(1_000, 50, async (i) => {
      const cookie = cookies[i] as string;
      await Promise.all([1, 2, 3].map((k) => call(port, 'POST', '/inc', (i + k) % 4, cookie)));
    });
    await vi.waitFor(
      async () => {
        const digests = await Promise.all(SLOTS.map((s) => call(port, 'GET', '/digest', s)));
        for (const d of digests) expect(d.body.sessions).toBe(1_000);
        expect(new Set(digests.map((d) => d.body.digest)).size).toBe(1);
      },
      { timeout: 5_000, interval: 200 },
    );
  });
});

describe('a store created after its worker joined the cluster', () => {
  it('fetches the full state before it answers its first read', async () => {
    const app = await start({ LAZY_STORE: '1' });
    const port = app.port();
    const login = await call(port, 'POST', '/login?user=lee', 0);
    await call(port, 'POST', '/inc', 0, login.cookie);
    // Slots 1 to 3 create their store on this very request, after the write.
    for (const reader of [1, 2, 3]) {
      expect((await call(port, 'GET', '/me', reader, login.cookie)).body).toMatchObject({
        user: 'lee',
        count: 1,
      });
    }
  });
});

describe('the replication hub and bad input', () => {
  it('drops and counts malformed store messages from a worker, and keeps serving', async () => {
    const app = await start();
    const port = app.port();
    const login = await call(port, 'POST', '/login?user=zoe', 1);
    expect((await call(port, 'GET', '/garbage', 2)).body).toMatchObject({ slot: 2 });
    // And on the store's data channel.
    expect((await call(port, 'GET', '/garbage-frames', 2)).body).toMatchObject({ slot: 2 });
    // The messages may still be on their way: ask again until the count shows them.
    await vi.waitFor(
      async () => {
        const stats = await sessionAppStats<{
          sessions: { dropped: number };
          malformedMessages: number;
        }>(app, 1_000);
        // The three IPC store messages (writes travel on the data channel, not as IPC
        // messages) and the three frames.
        expect(stats.sessions.dropped).toBe(6);
        // Another version and an unknown type are counted; another library's message is not ours.
        expect(stats.malformedMessages).toBe(2);
      },
      { timeout: 5_000 },
    );
    for (const reader of SLOTS) {
      expect((await call(port, 'GET', '/me', reader, login.cookie)).body.user).toBe('zoe');
    }
  });
});

describe('a write some replica would refuse (issue 15 item 6)', () => {
  const pick2 = rendezvous(SEED, 2);
  /** X-Forwarded-For of a client the balancer of a 2-worker cluster routes to `slot`. */
  function clientOf2(slot: number): string {
    for (let i = 1; i < 100_000; i++) {
      const ip = `10.9.${(i >> 8) & 255}.${i & 255}`;
      if (pick2(ip, [0, 1]) === slot) return ip;
    }
    throw new Error(`no address for slot ${slot}`);
  }
  async function on(app: FixtureProcess, method: Method, path: string, slot: number) {
    const reply = await callSessionApp(app, method, path, { client: clientOf2(slot) });
    expect(reply.body.slot, `${method} ${path} was meant for slot ${slot}`).toBe(slot);
    return reply.body;
  }

  it('a 300-character session id: set() rejects at once with a coded error, nothing is applied in any worker, nothing waits', async () => {
    const app = await startFixture({
      fixture: 'session-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ seed: SEED }) },
    });
    const sid = 'L'.repeat(300);
    for (const op of ['set', 'destroy', 'touch']) {
      const written = await on(app, 'POST', `/write?op=${op}&sid=${sid}`, 0);
      expect(written, `${op}() with a 300-character id`).toMatchObject({
        settled: 'rejected',
        code: 'ERR_STICKY_INVALID_SESSION_ID',
      });
      expect(written.message).toMatch(/300 characters long, over the limit of 256/);
    }
    for (const slot of [0, 1]) {
      expect((await on(app, 'GET', `/has?sid=${sid}`, slot)).found, `held by ${slot}`).toBe(false);
    }
    // A well-formed write right after is applied and answered as usual.
    expect((await on(app, 'POST', '/write?sid=ok-after-the-refusal', 0)).settled).toBe('resolved');
    expect((await on(app, 'GET', '/has?sid=ok-after-the-refusal', 1)).found).toBe(true);
    // The primary never got the refused write: nothing for it to drop.
    const stats = await sessionAppStats<{ sessions: { dropped: number } }>(app);
    expect(stats.sessions.dropped).toBe(0);
  });

  it('a write the primary refuses (sent by a store that does not check the limits) is answered with the reason, and applied nowhere', async () => {
    const app = await startFixture({
      fixture: 'session-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ seed: SEED }) },
    });
    const sid = 'R'.repeat(300);
    const raw = await on(app, 'POST', `/raw-write?sid=${sid}`, 0);
    expect(raw).toMatchObject({ settled: 'answered' });
    expect(raw.refused).toMatch(/its session id is 300 characters long, over the limit of 256/);
    for (const slot of [0, 1]) {
      expect((await on(app, 'GET', `/has?sid=${sid}`, slot)).found, `held by ${slot}`).toBe(false);
    }
    // A well-formed write sent the same way is taken (the control).
    expect(await on(app, 'POST', '/raw-write?sid=raw-but-fine', 0)).toMatchObject({
      settled: 'answered',
      refused: null,
    });
    await vi.waitFor(async () => {
      expect((await on(app, 'GET', '/has?sid=raw-but-fine', 1)).found).toBe(true);
    });
    const stats = await sessionAppStats<{ sessions: { dropped: number } }>(app);
    expect(stats.sessions.dropped).toBe(1);
  });
});

async function inBatches(n: number, size: number, work: (i: number) => Promise<void>) {
  for (let start = 0; start < n; start += size) {
    await Promise.all(Array.from({ length: Math.min(size, n - start) }, (_, k) => work(start + k)));
  }
}

describe('the hub and a worker that does not read its channel', () => {
  it('is not queued into without bound: the worker is resynced from full state once it drains', async () => {
    const app = await start({
      STICKY_OPTIONS: JSON.stringify({
        seed: SEED,
        maxIpcBacklog: 64 * 1024,
        unresponsiveTimeout: 60_000,
      }),
    });
    const port = app.port();
    // Worker 1 blocks for 1.5 s: what the hub forwards to it meanwhile backs up in the primary.
    const blocked = call(port, 'GET', '/block?ms=1500', 1);
    await delay(100);
    await call(port, 'POST', '/bulk?n=4000&prefix=while-blocked-', 0);
    await blocked;
    await vi.waitFor(
      async () => {
        const seen = await Promise.all(SLOTS.map((slot) => call(port, 'GET', '/digest', slot)));
        expect(new Set(seen.map((r) => `${r.body.sessions}:${r.body.digest}`)).size).toBe(1);
        expect(seen[1]?.body.sessions).toBe(4000);
      },
      { timeout: 10_000, interval: 100 },
    );
    const stats = await sessionAppStats<{ sessions: { resyncs: number } }>(app);
    expect(stats.sessions.resyncs).toBeGreaterThanOrEqual(1);
  });
});
