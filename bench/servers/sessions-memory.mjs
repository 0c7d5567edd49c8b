// Memory of N stored sessions, for bench/sessions.mjs (not a server: a one-shot child process,
// run as `node --expose-gc bench/servers/sessions-memory.mjs`; prints one `RESULT {json}` line).
//
// STORE=replicated: one standalone ReplicatedStore (no cluster: in a sticky-mesh cluster every
// worker and the primary's hub each hold one such replica). gc() twice, then
// process.memoryUsage() (heapUsed, rss, external); N store.set() calls, each awaited, with a
// fresh 32-character session id (24 random bytes, base64url, as express-session's uid-safe
// makes) and a fresh session object (express-session's cookie fields plus
// ./session-app.mjs's sessionFields: about SESSION_BYTES of JSON); nothing is kept by this
// script, so everything retained is the store's; gc() twice, memoryUsage() again.
// STORE=redis: the same N sessions through connect-redis 9 (`new RedisStore({ client })`) into a
// private redis-server (./redis.mjs, killed at the end); redis's own figures, INFO memory
// used_memory and the server process's VmRSS (/proc), before and after.
// Environment: STORE [replicated], SESSIONS [100000], SESSION_BYTES [1024].
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { COOKIE_MAX_AGE, sessionFields } from './session-app.mjs';

const STORE = process.env.STORE || 'replicated';
const N = Number(process.env.SESSIONS || 100_000);
const BYTES = Number(process.env.SESSION_BYTES || 1024);
if (typeof globalThis.gc !== 'function') throw new Error('run with node --expose-gc');

const newSid = () => randomBytes(24).toString('base64url');
function newSession(i) {
  return {
    cookie: {
      originalMaxAge: COOKIE_MAX_AGE,
      expires: new Date(Date.now() + COOKIE_MAX_AGE),
      httpOnly: true,
      path: '/',
    },
    ...sessionFields(`user-${String(i).padStart(7, '0')}`, BYTES),
  };
}

function fullGc() {
  globalThis.gc();
  globalThis.gc();
}

function vmRss(pid) {
  const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

const result = { store: STORE, sessions: N, node: process.version };
// Mean JSON size of the stored sessions, from a sample (all have the same shape).
result.jsonBytes = JSON.stringify(newSession(0)).length;

if (STORE === 'replicated') {
  const { ReplicatedStore } = await import('sticky-mesh');
  const store = new ReplicatedStore();
  // Warm the code paths (and the JIT) on 100 sessions before the baseline, so it already holds
  // the compiled code; they stay stored and are not counted.
  for (let i = 0; i < 100; i++) {
    const sid = `warm-${i}`;
    await store.set(sid, newSession(i));
    await store.get(sid);
  }
  fullGc();
  const before = process.memoryUsage();
  const t0 = process.hrtime.bigint();
  for (let i = 0; i < N; i++) await store.set(newSid(), newSession(i));
  result.setSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
  fullGc();
  const after = process.memoryUsage();
  result.stored = (await store.length()) - 100;
  result.before = before;
  result.after = after;
  result.heapPerSession = (after.heapUsed - before.heapUsed) / N;
  result.rssPerSession = (after.rss - before.rss) / N;
  result.externalPerSession = (after.external - before.external) / N;
  await store.close();
} else if (STORE === 'redis') {
  const { startRedis } = await import('./redis.mjs');
  const { RedisStore } = await import('connect-redis');
  const { createClient } = await import('redis');
  const redis = await startRedis();
  try {
    const client = createClient({ url: `redis://127.0.0.1:${redis.port}` });
    await client.connect();
    const store = new RedisStore({ client });
    const usedMemory = async () =>
      Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1] ?? Number.NaN);
    const before = { usedMemory: await usedMemory(), rss: vmRss(redis.pid) };
    const t0 = process.hrtime.bigint();
    const BATCH = 1000;
    for (let i = 0; i < N; i += BATCH) {
      const batch = [];
      for (let j = i; j < Math.min(N, i + BATCH); j++)
        batch.push(store.set(newSid(), newSession(j)));
      await Promise.all(batch);
    }
    result.setSeconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const after = { usedMemory: await usedMemory(), rss: vmRss(redis.pid) };
    result.stored = await client.dbSize();
    result.redisVersion = redis.version;
    result.before = before;
    result.after = after;
    result.usedMemoryPerSession = (after.usedMemory - before.usedMemory) / N;
    result.rssPerSession = (after.rss - before.rss) / N;
    await client.quit();
  } finally {
    redis.child.kill('SIGKILL');
  }
} else {
  throw new Error(`STORE must be replicated or redis, got ${STORE}`);
}

process.stdout.write(`RESULT ${JSON.stringify(result)}\n`);
