// Standalone ReplicatedStores (no sticky cluster) replicating through a real redis-server
// (test/helpers/redis.ts) with real ioredis: replication, a late joiner, a Redis restart with
// writes on both sides while it is down, ioredis's keyPrefix, and the disconnect/connect events
// of a store that starts while Redis is away.
import { setTimeout as delay } from 'node:timers/promises';
import { Redis } from 'ioredis';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { ReplicatedStore, type SessionData } from '../../src/replication/store.js';
import {
  freePort,
  hasRedis,
  RedisServer,
  startRedisServer,
  stopRedisServers,
} from '../helpers/redis.js';

const available = hasRedis();
let server: RedisServer;
let inspect: Redis;
let names = 0;
const stores: ReplicatedStore[] = [];
const clients: Redis[] = [];
const quiet = { info() {}, warn() {}, error() {} };

afterEach(async () => {
  await Promise.all(stores.splice(0).map((s) => s.close()));
  for (const c of clients.splice(0)) c.disconnect();
});
afterAll(async () => {
  inspect?.disconnect();
  await stopRedisServers();
});

function store(cluster: string, extra: Record<string, unknown> = {}): ReplicatedStore {
  const s = new ReplicatedStore({
    redis: { url: server.url, cluster, syncTimeout: 3000, logger: quiet, ...extra },
  });
  stores.push(s);
  return s;
}

function sess(user: string, extra: Record<string, unknown> = {}): SessionData {
  return {
    cookie: { originalMaxAge: 3_600_000, expires: new Date(Date.now() + 3_600_000) },
    user,
    ...extra,
  };
}

/** Live sessions in Redis for the cluster: sid → user. */
async function inRedis(cluster: string, prefix = 'sticky-mesh:'): Promise<Record<string, unknown>> {
  const keys = await inspect.keys(`${prefix}${cluster}:s:*`);
  const out: Record<string, unknown> = {};
  for (const k of keys.sort()) {
    const h = await inspect.hgetall(k);
    if (h.d !== undefined) out[k.slice(`${prefix}${cluster}:s:`.length)] = JSON.parse(h.d).user;
  }
  return out;
}

async function users(s: ReplicatedStore): Promise<Record<string, unknown>> {
  const all = (await s.all()) ?? {};
  const out: Record<string, unknown> = {};
  for (const sid of Object.keys(all).sort()) out[sid] = all[sid]?.user;
  return out;
}

describe.skipIf(!available)('standalone stores replicating through a real redis-server', () => {
  beforeAll(async () => {
    server = await startRedisServer();
    inspect = new Redis(server.url, { maxRetriesPerRequest: 1, retryStrategy: () => 50 });
    inspect.on('error', () => {});
  });

  it('replicates sets and destroys between two stores, through Redis', async () => {
    const cluster = `it-${++names}`;
    const [a, b] = [store(cluster), store(cluster)];
    await a.set('s1', sess('ann'));
    await vi.waitFor(async () => expect(await b.get('s1')).toMatchObject({ user: 'ann' }), {
      timeout: 1000,
      interval: 5,
    });
    await b.destroy('s1');
    await vi.waitFor(async () => expect(await a.get('s1')).toBeNull(), {
      timeout: 1000,
      interval: 5,
    });
    const h = await inspect.hgetall(`sticky-mesh:${cluster}:s:s1`);
    expect(h.d).toBeUndefined();
    expect(h.t).toMatch(/^\d+$/);
    expect(a.redisStats()).toMatchObject({ state: 'synced', connected: true, received: 1 });
  });

  it('a store created later holds every existing session before its first answer', async () => {
    const cluster = `it-${++names}`;
    const a = store(cluster);
    await Promise.all(Array.from({ length: 2000 }, (_, i) => a.set(`s${i}`, sess(`u${i}`))));
    await a.destroy('s7');
    await vi.waitFor(async () => expect(Object.keys(await inRedis(cluster))).toHaveLength(1999), {
      timeout: 5000,
      interval: 20,
    });
    const late = store(cluster);
    expect(await late.length()).toBe(1999);
    expect(await late.get('s7')).toBeNull();
    expect(await users(late)).toEqual(await users(a));
  });

  it('a Redis restart with writes on both sides while it is down: both stores and Redis converge', async () => {
    const cluster = `it-${++names}`;
    const [a, b] = [store(cluster), store(cluster)];
    for (let i = 0; i < 50; i++) await (i % 2 ? a : b).set(`pre${i}`, sess(`pre${i}`));
    await vi.waitFor(async () => expect(await users(b)).toEqual(await users(a)), {
      timeout: 2000,
      interval: 10,
    });
    await server.stop();
    await delay(100);
    // While Redis is away: both keep serving and taking writes, including a destroy of a session
    // the other store wrote and a save of one the other store also saves.
    expect(await a.get('pre1')).toMatchObject({ user: 'pre1' });
    expect(await b.get('pre1')).toMatchObject({ user: 'pre1' });
    for (let i = 0; i < 30; i++) {
      await a.set(`a${i}`, sess(`a${i}`));
      await b.set(`b${i}`, sess(`b${i}`));
    }
    await a.destroy('pre0'); // written by b
    await b.destroy('pre1'); // written by a
    await b.set('pre3', sess('pre3 by b'));
    await delay(20);
    await a.set('pre3', sess('pre3 by a, later'));
    expect(a.redisStats()).toMatchObject({ connected: false });
    expect(a.redisStats()?.queued).toBeGreaterThan(30);
    await delay(1500);
    await server.start(); // empty
    await vi.waitFor(
      async () => {
        const [ua, ub, ur] = [await users(a), await users(b), await inRedis(cluster)];
        expect(ub).toEqual(ua);
        expect(ur).toEqual(ua);
        expect(Object.keys(ua)).toHaveLength(50 - 2 + 60);
        expect(ua.pre3).toBe('pre3 by a, later');
        expect(ua.pre0).toBeUndefined();
      },
      { timeout: 10_000, interval: 100 },
    );
    for (const s of [a, b]) {
      await vi.waitFor(() => expect(s.redisStats()).toMatchObject({ state: 'synced', queued: 0 }), {
        timeout: 5000,
        interval: 50,
      });
    }
  }, 30_000);

  it("honours an ioredis client's keyPrefix", async () => {
    const cluster = `it-${++names}`;
    const client = () => {
      const c = new Redis(server.url, { keyPrefix: 'kp:' });
      c.on('error', () => {});
      clients.push(c);
      return c;
    };
    const a = store(cluster, { url: undefined, client: client() });
    await a.set('s1', sess('ann'));
    await vi.waitFor(
      async () => expect(await inRedis(cluster, 'kp:sticky-mesh:')).toEqual({ s1: 'ann' }),
      {
        timeout: 1000,
        interval: 5,
      },
    );
    const b = store(cluster, { url: undefined, client: client() });
    expect(await b.get('s1')).toMatchObject({ user: 'ann' });
    await b.set('s2', sess('bob'));
    await vi.waitFor(async () => expect(await a.get('s2')).toMatchObject({ user: 'bob' }), {
      timeout: 1000,
      interval: 5,
    });
    // Nothing under the unprefixed names.
    expect(await inspect.keys(`sticky-mesh:${cluster}:*`)).toEqual([]);
  });

  it('a Redis that stops answering while the connection stays up (SIGSTOP): writes stay in the bounded queue, ioredis holds at most the window, and after SIGCONT every write reaches Redis', async () => {
    const cluster = `it-${++names}`;
    // ioredis with its defaults (offline queue on): only the transport bounds what it holds.
    const client = new Redis(server.url);
    client.on('error', () => {});
    clients.push(client);
    // ioredis replaces its command queue on each connection: read it afresh every time.
    const inIoredis = () =>
      (client as unknown as { commandQueue: { length: number } }).commandQueue.length;
    const maxQueueBytes = 1024 * 1024;
    const a = new ReplicatedStore({
      redis: { client, cluster, syncTimeout: 3000, logger: quiet, maxQueue: 200, maxQueueBytes },
    });
    stores.push(a);
    const b = store(cluster);
    await Promise.all([a.length(), b.length()]);
    const pad = 'x'.repeat(8 * 1024);
    const pid = server.pid as number;
    process.kill(pid, 'SIGSTOP');
    let mostInIoredis = 0;
    let mostBytes = 0;
    try {
      for (let i = 0; i < 2000; i++) {
        await a.set(`w${i}`, sess(`u${i}`, { pad }));
        if (i % 50 === 49) await delay(1); // let ioredis write what it was given
        mostInIoredis = Math.max(mostInIoredis, inIoredis());
        mostBytes = Math.max(mostBytes, a.redisStats()?.queuedBytes ?? Infinity);
      }
      expect(client.status).toBe('ready');
      // (The measure is live: writes did reach ioredis, and stayed unanswered.)
      expect(mostInIoredis).toBeGreaterThan(0);
      expect(mostInIoredis, "commands in ioredis's queue at most").toBeLessThanOrEqual(64);
      expect(mostBytes, 'bytes held by the transport at most').toBeLessThanOrEqual(maxQueueBytes);
      const held = a.redisStats();
      expect(held?.queued).toBeGreaterThan(0);
      // Nothing is lost silently: what is neither held nor answered was dropped and counted.
      expect((held?.queued ?? 0) + (held?.dropped ?? 0) + (held?.written ?? 0)).toBe(2000);
      expect(held?.dropped).toBeGreaterThan(0);
    } finally {
      process.kill(pid, 'SIGCONT');
    }
    // Held writes are answered, dropped ones written back: Redis and the other store hold all.
    await vi.waitFor(
      async () => {
        expect(a.redisStats()).toMatchObject({ state: 'synced', queued: 0, queuedBytes: 0 });
        expect(Object.keys(await inRedis(cluster))).toHaveLength(2000);
        expect(await b.length()).toBe(2000);
      },
      { timeout: 15_000, interval: 100 },
    );
    const all = await inRedis(cluster);
    for (let i = 0; i < 2000; i++) expect(all[`w${i}`]).toBe(`u${i}`);
  }, 40_000);

  it("a store started while Redis is away emits 'disconnect' after syncTimeout, then 'connect' once Redis is there", async () => {
    const away = new RedisServer(await freePort());
    const s = new ReplicatedStore({
      redis: { url: away.url, cluster: `it-${++names}`, syncTimeout: 300, logger: quiet },
    });
    stores.push(s);
    const events: string[] = [];
    s.on('disconnect', () => events.push('disconnect'));
    s.on('connect', () => events.push('connect'));
    await vi.waitFor(() => expect(events).toEqual(['disconnect']), { timeout: 2000, interval: 10 });
    expect(await s.get('x')).toBeNull(); // it answers (with nothing) rather than hanging
    await s.set('x', sess('ann')); // queued
    await away.start();
    await vi.waitFor(() => expect(events).toEqual(['disconnect', 'connect']), {
      timeout: 5000,
      interval: 10,
    });
    expect(await s.get('x')).toMatchObject({ user: 'ann' });
    const direct = new Redis(away.url);
    clients.push(direct);
    await vi.waitFor(
      async () => expect(await direct.hget(`sticky-mesh:it-${names}:s:x`, 'd')).toContain('ann'),
      {
        timeout: 2000,
        interval: 10,
      },
    );
  }, 20_000);
});
