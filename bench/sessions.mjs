#!/usr/bin/env node
// Session-store benchmark (issues 4 and 18): sticky-mesh's ReplicatedStore against connect-redis
// and against express-session's MemoryStore in the same cluster (the unreplicated limit).
//
//   node bench/sessions.mjs     (needs dist/ and redis-server; `npm run build` once if
//                                dist/index.js is missing, `apt-get install redis-server` if
//                                redis-server is not on PATH); writes its section of
//                                bench/RESULTS.md
//   node bench/sessions.mjs --quick
//                               smoke run after a change: 1 round of the three autocannon mixes
//                               (2 s each), all three stores; prints the issue 18 targets
//                               table, bench/RESULTS.md left alone (about 2 minutes)
// On the shared reference box run either under the bench lock:
//   flock /tmp/sticky-bench.lock node bench/sessions.mjs [--quick]
// Where the CPU goes: bench/profile.mjs (the same servers and load, every process profiled).
//
// Servers (bench/servers/, each started afresh as a child process for every run, own process
// group, env PORT, WORKERS, SESSIONS_SEED and SESSION_BYTES; its READY line awaited; the whole
// group killed afterwards). All run the same express + express-session app
// (bench/servers/session-app.mjs: resave false, saveUninitialized false, cookie maxAge 1 h,
// sessions of about SESSION_BYTES of JSON) under the same balancer, sticky-mesh proxy mode
// `sticky({ num: WORKERS, proxy: true, seed: SEED })`, so the two differ only in the store:
//   sticky-mesh    sessions-sticky-mesh.mjs    ReplicatedStore (default options): every worker
//                                              holds a full replica, the hub in the primary
//                                              forwards each write to the other workers
//   connect-redis  sessions-connect-redis.mjs  connect-redis 9 `new RedisStore({ client })`
//                                              over node-redis (one connection per worker) to
//                                              a redis-server the server's primary starts on a
//                                              free loopback port (`--save '' --appendonly no`)
//                                              in its own process group (killed with it; its
//                                              CPU counts as the server's)
// The bench picks the worker of every request itself: the X-Forwarded-For value decides, and
// the bench computes which client address maps to which slot with the balancer's own hash
// (dist/hash.js `rendezvous(SEED, WORKERS)` over addresses 198.18.x.y). Every response names
// its slot (`x-slot`); a response from another slot is counted as a mismatch.
//   memory         sessions-memorystore.mjs    express-session's MemoryStore, one per worker,
//                                              nothing shared: only in the writes/reads runs
//                                              (its workers' counters summed, not compared)
// The stores run with their defaults, touch included: a request that reads a session without
// changing it ends with store.touch (ReplicatedStore: a replicated expiry change, acknowledged
// by the hub; connect-redis: EXPIRE), and express-session sends the response once it completes.
//
// Measurements, in interleaved rounds (the stores' order rotates from round to round, so each
// runs first in some round):
//
// 1. latency: write-to-visible latency on another worker at steady rates, RATES writes/s (all
//    workers together): 1,000 as issue 4 asks, and 250 as a reference below saturation (on
//    the 2-core reference box 1,000 session writes/s is close to the most it can do at all,
//    see the writes measurement, so at 1,000 the figures are mostly queueing). Open loop:
//    every millisecond the bench sends as many writes as are due at the rate since the start
//    (so a slow server gets queued writes, not fewer), each `POST /write?w=ID` (a unique write
//    id stored in the session) with the session's cookie to the worker that created the
//    session (LAT_SESSIONS sessions per worker, one keep-alive agent per worker, at most 16
//    connections each). t0 = process.hrtime.bigint() just before the request is made.
//    Two ways to see when a write became visible elsewhere:
//    a) apply time (sticky-mesh only): every worker records when it applied each replicated
//       write (bench-only instrumentation in sessions-sticky-mesh.mjs: on the diagnostics
//       channel sticky-mesh:replicated, published once the worker's replica applied a change,
//       process.hrtime.bigint() = CLOCK_MONOTONIC, one clock for all
//       processes of the machine) and the bench collects the records (GET /applied) after the
//       run: latency = apply time on worker B - t0, for every measured write and every worker
//       B other than its writer A; "all other workers" = the last of them. Also apply time on
//       B - the time the `/write` route ran on A (the route returns it, `at`): the
//       replication path alone (save, IPC to the hub, hub, IPC to B, apply), without the
//       HTTP request's own queueing. Every acknowledged write sent in the measured period is
//       measured; a (write, worker) record that never came is counted as missing.
//    b) probes (both stores): every PROBE_INTERVAL ms, one write goes to a probe session on
//       worker A while the bench polls `GET /value?sid=` (store.get on that worker, no
//       session middleware, no touch) on worker B over one keep-alive connection in a tight
//       loop: latency = arrival of the first answer holding the new write id - t0 (its
//       resolution is one poll round trip, reported; so is the polling rate, extra load on
//       top of the writes). A and B cycle through every ordered pair of distinct workers.
//       Probe writes count towards the rate.
//    Also reported: the writer's own response time (write acknowledged), and how often the
//    write was visible on B (a: on every other worker) before the writer got its response.
// 2. writes: maximum session writes/s. autocannon, CONNECTIONS keep-alive connections,
//    pipelining 1; connection i is a client of worker (i mod WORKERS) (its own X-Forwarded-For
//    address of that slot) and cycles through its own SESSIONS_PER_CONN sessions, created on
//    that worker beforehand (no two connections share a session, so no two writes of a session
//    overlap); every request `POST /write` (n + 1: always a save). writes/s = 2xx responses /
//    measured duration; p50 / p99 of the response times (autocannon's per-response times, in
//    ms as floats, not its integer-ms histogram). Afterwards: GET /digest on every worker until
//    all agree (converged) and the sum of the sessions' n is compared with the writes
//    acknowledged (warm-up included): equal up to the requests in flight when autocannon
//    stopped, which the server may still have applied.
// 3. heavy and reads: a write-heavy mix (GET /me and POST /write alternating) and a read-mostly
//    one on the same connections and sessions: of every READ_CYCLE
//    requests one is `POST /write`, the others `GET /me` (the session is loaded by the
//    middleware and, unchanged, touched). req/s and p50 / p99 of reads and writes separately;
//    the same convergence check.
// 4. memory (bench/servers/sessions-memory.mjs, a one-shot `node --expose-gc` child per store
//    and round): MEM_SESSIONS sessions of SESSION_BYTES of JSON with fresh 32-character ids;
//    ReplicatedStore standalone (no cluster): heapUsed and rss after forced GC, before and
//    after, per session; connect-redis into a private redis-server: INFO used_memory and the
//    redis-server's VmRSS, before and after, per session. In a cluster each worker and the
//    primary's hub hold a replica each (WORKERS + 1 copies), redis one.
//
// Background load: the load generator (this process: autocannon, the open-loop writer and the
// pollers) shares the machine's cores (2 on the reference box) with the primary, the workers
// and redis-server, so absolute figures are bounded by that and latency includes scheduling
// delays of an over-committed machine; comparisons are between runs made under the same
// conditions. Before each run the bench waits (up to QUIET_WAIT s) until other processes use
// <= FOREIGN_MAX cores; during the measured period it estimates foreign CPU (busy time in
// /proc/stat minus this process and the server's process group). A run with more than
// FOREIGN_MAX cores of foreign load is repeated (up to MAX_ATTEMPTS, keeping the least
// disturbed). Linux only (/proc). Server lifecycle, CPU accounting and report helpers:
// bench/lib.mjs; the session app's client side (logins, the autocannon load, the open-loop
// writer, convergence and apply records): bench/sessions-lib.mjs, shared with bench/redis.mjs.
//
// Output: a table on stdout, and the section "Session store (issue 4)" of bench/RESULTS.md
// (between its BEGIN/END sessions markers; appended if absent; other sections untouched), all
// figures from this run's measurements.
//
// Output of issue 18: a targets table (write-only and write-heavy req/s >= 1.0x connect-redis and
// >= 0.9x MemoryStore, read-mostly >= 0.95x MemoryStore) with server CPU per request beside it.
//
// Environment knobs [defaults; --quick]: BENCH_ROUNDS [3; 1], BENCH_WORKERS [4], BENCH_RATES writes/s, a
// comma-separated list [1000,250], BENCH_LAT_DURATION s [5], BENCH_LAT_WARMUP s [1],
// BENCH_LAT_SESSIONS per worker [16], BENCH_PROBE_INTERVAL ms [50], BENCH_DURATION s [3; 2] and
// BENCH_WARMUP s [1] (autocannon runs), BENCH_CONNECTIONS [32], BENCH_SESSIONS_PER_CONN [8],
// BENCH_READ_CYCLE [20] (one write per that many requests in the read-mostly mix),
// BENCH_MEM_SESSIONS [100000], BENCH_SESSION_BYTES [1024], BENCH_SEED [0x5e5510a5] (the
// balancer's seed), BENCH_PORT [a free one], BENCH_WRITE [1; 0] (0: print only, bench/RESULTS.md is
// left alone, e.g. for trial runs), BENCH_RESULTS_FILE [bench/RESULTS.md], BENCH_FOREIGN_MAX
// cores [0.2], BENCH_MAX_ATTEMPTS [2], BENCH_QUIET_WAIT s [30]; BENCH_ONLY (trial runs: a
// comma-separated subset of latency, writes, heavy, reads, memory; prints the table only;
// --quick is BENCH_ONLY=writes,heavy,reads).
// Defaults take about 6 to 7 minutes on a quiet 2-core machine (3 rounds, each of 13 runs on
// fresh servers and 2 memory runs); longer while other processes keep it busy and runs are
// repeated.

import { execFile } from 'node:child_process';
import { existsSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as lib from './lib.mjs';
import {
  dist,
  f1,
  f2,
  f3,
  fmtInt,
  fmtMs,
  fmtRatio,
  intEnv,
  median,
  ms,
  nowNs,
  pctOf,
  requestJson,
  sleep,
} from './lib.mjs';
import {
  applyFigures,
  converge,
  fetchApplied,
  latencySessions,
  loadFigures,
  login,
  machineInfo,
  newLoadCounters,
  runLoad,
  runOpenLoop,
  sendWrite,
  setupLoad,
  slotKeys,
  sumCheck,
} from './sessions-lib.mjs';

// --quick: a smoke run after a change (1 round, the three autocannon mixes only, 2 s each,
// bench/RESULTS.md left alone); prints the issue 18 targets table.
const QUICK = process.argv.includes('--quick');
const q = (full, quick) => (QUICK ? quick : full);
const ROUNDS = intEnv('BENCH_ROUNDS', q(3, 1));
const WORKERS = intEnv('BENCH_WORKERS', 4, 2);
// Rates of the latency measurement, writes/s; the first is the one the issue asks about.
const RATES = lib.intListEnv('BENCH_RATES', '1000,250');
const LAT_DURATION = intEnv('BENCH_LAT_DURATION', 5);
const LAT_WARMUP = intEnv('BENCH_LAT_WARMUP', 1, 0);
const LAT_SESSIONS = intEnv('BENCH_LAT_SESSIONS', 16);
const PROBE_INTERVAL = intEnv('BENCH_PROBE_INTERVAL', 50);
const DURATION = intEnv('BENCH_DURATION', q(3, 2));
const WARMUP = intEnv('BENCH_WARMUP', 1, 0);
const CONNECTIONS = intEnv('BENCH_CONNECTIONS', 32);
const SESSIONS_PER_CONN = intEnv('BENCH_SESSIONS_PER_CONN', 8);
const READ_CYCLE = intEnv('BENCH_READ_CYCLE', 20, 2);
const MEM_SESSIONS = intEnv('BENCH_MEM_SESSIONS', 100_000);
const SESSION_BYTES = intEnv('BENCH_SESSION_BYTES', 1024, 200);
const SEED = intEnv('BENCH_SEED', 0x5e5510a5, 0);
const MAX_ATTEMPTS = intEnv('BENCH_MAX_ATTEMPTS', 2);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', 30, 0);
const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.2);
const WRITE = (process.env.BENCH_WRITE ?? q('1', '0')) !== '0';
if (SEED > 0xffffffff) throw new Error('BENCH_SEED: an unsigned 32-bit integer');

// The servers read these (lib.startServer passes this process's environment on).
process.env.SESSIONS_SEED = String(SEED);
process.env.SESSION_BYTES = String(SESSION_BYTES);

const STORES = [
  { id: 'sticky-mesh', label: 'ReplicatedStore (sticky-mesh)', file: 'sessions-sticky-mesh.mjs' },
  { id: 'connect-redis', label: 'connect-redis + redis', file: 'sessions-connect-redis.mjs' },
  // The unreplicated limit (throughput mixes only: it replicates nothing, so has no
  // write-to-visible latency, and its memory is not measured).
  {
    id: 'memory',
    label: 'MemoryStore (express-session, unreplicated)',
    file: 'sessions-memorystore.mjs',
    throughputOnly: true,
  },
];
const STORE_IDS = STORES.map((x) => x.id);
// Issue 18's targets: [mix, the store compared with, least ratio of req/s].
const TARGETS = [
  ['writes', 'connect-redis', 1.0],
  ['heavy', 'connect-redis', 1.0],
  ['writes', 'memory', 0.9],
  ['heavy', 'memory', 0.9],
  ['reads', 'memory', 0.95],
];
// BENCH_ONLY (trial runs): a comma-separated subset of latency, writes, reads, memory.
// The autocannon mixes: one write in `cycle` requests (kind 'heavy' is write-heavy, 1 in 2).
const ONLY = process.env.BENCH_ONLY
  ? process.env.BENCH_ONLY.split(',').map((x) => x.trim())
  : QUICK
    ? ['writes', 'heavy', 'reads']
    : null;
const MEASUREMENTS = [
  ...RATES.map((rate) => ({ id: `latency-${rate}`, kind: 'latency', rate })),
  { id: 'writes', kind: 'writes', cycle: 1 },
  { id: 'heavy', kind: 'heavy', cycle: 2 },
  { id: 'reads', kind: 'reads', cycle: READ_CYCLE },
].filter((m) => !ONLY || ONLY.includes(m.kind));
const LOAD_IDS = MEASUREMENTS.filter((m) => m.kind !== 'latency').map((m) => m.id);
const LOAD_NAMES = {
  writes: 'write-only (all POST /write)',
  heavy: 'write-heavy (1 GET /me : 1 POST /write)',
  reads: `read-mostly (${READ_CYCLE - 1} GET /me : 1 POST /write)`,
};
const RUN_MEMORY = !ONLY || ONLY.includes('memory');
const PORT_HOSTS = ['127.0.0.1'];
const NS = 1_000_000n; // ns per ms
// Settings of lib.measureQuietlyByCpu.
const QUIET = { maxAttempts: MAX_ATTEMPTS, quietWaitS: QUIET_WAIT_S, foreignMax: FOREIGN_MAX };

// ---------------------------------------------------------------------------------------------
// Client addresses per slot (the session app's client side: bench/sessions-lib.mjs).

// keysBySlot[s]: X-Forwarded-For addresses (198.18.x.y) that the balancer routes to slot s.
let keysBySlot = [];
async function buildKeys() {
  const { rendezvous } = await import(pathToFileURL(path.join(lib.rootDir, 'dist', 'hash.js')));
  keysBySlot = slotKeys(rendezvous(SEED, WORKERS), WORKERS, Math.ceil(CONNECTIONS / WORKERS) + 2);
}

// ---------------------------------------------------------------------------------------------
// 1. latency

async function setupLatency(port) {
  const agents = keysBySlot.map(() => new http.Agent({ keepAlive: true, maxSockets: 16 }));
  const pollAgents = keysBySlot.map(() => new http.Agent({ keepAlive: true, maxSockets: 1 }));
  const sessions = await latencySessions(port, keysBySlot, LAT_SESSIONS);
  const probeSessions = await lib.pool(
    keysBySlot.map((keys, s) => [s, keys[0]]),
    WORKERS,
    ([s, key]) => login(port, s, key, `probe-${s}`),
  );
  const pairs = [];
  for (let a = 0; a < WORKERS; a++)
    for (let b = 0; b < WORKERS; b++) if (a !== b) pairs.push([a, b]);
  return {
    port,
    agents,
    pollAgents,
    sessions,
    probeSessions,
    pairs,
    nextId: 1,
    k: 0,
    pairK: 0,
    writeErrorCode: (err, s) => `${err.code ?? err.message} (POST /write on slot ${s.slot})`,
  };
}

async function poll(ctx, slot, sid, rec) {
  const r = await requestJson(ctx.port, {
    path: `/value?sid=${encodeURIComponent(sid)}`,
    headers: { 'x-forwarded-for': keysBySlot[slot][0] },
    agent: ctx.pollAgents[slot],
  });
  if (r.json.slot !== slot) rec.mismatches++;
  return { w: r.json.w, end: r.end };
}

async function probeOnce(ctx, rec, endNs) {
  const [a, b] = ctx.pairs[ctx.pairK++ % ctx.pairs.length];
  const s = ctx.probeSessions[a];
  await poll(ctx, b, s.sid, rec); // the poll connection is open and B answers
  rec.polls++;
  rec.sent++;
  const w = sendWrite(ctx, s, rec);
  const rtts = [];
  let seen = null;
  for (;;) {
    const ts = nowNs();
    const r = await poll(ctx, b, s.sid, rec);
    rtts.push(r.end - ts);
    rec.polls++;
    if (r.w === w.id) {
      seen = r.end;
      break;
    }
    if (r.end - w.t0 > 2000n * NS || r.end > endNs + 2000n * NS) break;
  }
  await w.done;
  return {
    id: w.id,
    a,
    b,
    visible: seen === null ? null : seen - w.t0,
    beforeAck: seen !== null && w.ack !== null && seen < w.ack,
    polls: rtts.length,
    rtt: rtts,
  };
}

// One period of `seconds` at `rate` writes/s (background writes, open loop, and the probes beside
// them).
function runLatency(ctx, seconds, rate) {
  return runOpenLoop(
    ctx,
    seconds,
    rate,
    { probes: [], probeErrors: 0, polls: 0 },
    async (rec, endNs) => {
      while (nowNs() < endNs) {
        const next = Date.now() + PROBE_INTERVAL;
        try {
          rec.probes.push(await probeOnce(ctx, rec, endNs));
        } catch (err) {
          rec.probeErrors++;
          const code = `probe: ${err.code ?? err.message}`;
          rec.errorCodes.set(code, (rec.errorCodes.get(code) || 0) + 1);
        }
        await sleep(Math.max(0, next - Date.now()));
      }
    },
  );
}

// Drains GET /applied of every slot: Map id -> [apply ns per slot] (sticky-mesh only).
async function collectApplied(port) {
  const bySlot = await Promise.all(keysBySlot.map((keys) => fetchApplied(port, keys[0])));
  const out = new Map();
  bySlot.forEach((applied, slot) => {
    for (const [k, t] of applied) {
      if (!out.has(k)) out.set(k, new Array(WORKERS).fill(null));
      out.get(k)[slot] = t;
    }
  });
  return out;
}

function summarizeLatency(rec, applied) {
  const writes = [...rec.writes.values()];
  const okWrites = writes.filter((w) => w.ok);
  const ack = dist(okWrites.map((w) => ms(w.ack - w.t0)));
  const probes = rec.probes;
  const seen = probes.filter((p) => p.visible !== null);
  const probe = dist(seen.map((p) => ms(p.visible)));
  const r = {
    writesSent: writes.length,
    writesOk: okWrites.length,
    rate: writes.length / rec.elapsed,
    ack,
    probe,
    probes: probes.length,
    probesUnseen: probes.length - seen.length,
    probeErrors: rec.probeErrors,
    probeBeforeAck: seen.filter((p) => p.beforeAck).length,
    pollRtt: dist(probes.flatMap((p) => p.rtt.map(ms))),
    pollsPerProbe: median(probes.map((p) => p.polls)),
    pollsPerS: rec.polls / rec.elapsed,
    errors: rec.errors,
    non2xx: rec.non2xx,
    mismatches: rec.mismatches,
    connErrors: Object.fromEntries(rec.errorCodes),
  };
  if (applied) {
    // Every worker but the writer applies each write.
    const others = (w) => {
      const times = applied.get(w.id);
      const out = [];
      for (let slot = 0; slot < WORKERS; slot++)
        if (slot !== w.slot) out.push(times?.[slot] ?? undefined); // null: no record
      return out;
    };
    const f = applyFigures(okWrites, others);
    r.apply = {
      pairs: f.each,
      lag: f.fromHandler,
      all: f.all,
      measured: f.measured,
      missing: f.missing,
      allBeforeAck: f.allBeforeAck,
    };
  }
  return r;
}

// ---------------------------------------------------------------------------------------------
// 2./3. writes and reads (autocannon)

// An unreplicated store's figures in converge's shape: every worker's GET /digest (its own
// sessions only), their sessions and counters summed into one entry; converged null (not
// applicable).
async function unreplicated(port) {
  const digests = await Promise.all(
    keysBySlot.map((k) =>
      requestJson(port, { path: '/digest', headers: { 'x-forwarded-for': k[0] } }).then(
        (r) => r.json,
      ),
    ),
  );
  const sessions = digests.reduce((a, d) => a + d.sessions, 0);
  const bytes = digests.reduce((a, d) => a + d.meanBytes * d.sessions, 0);
  const sum = digests.reduce((a, d) => a + d.sum, 0);
  return {
    converged: null,
    ms: 0,
    digests: [{ sessions, sum, meanBytes: sessions ? bytes / sessions : 0 }],
  };
}

// ---------------------------------------------------------------------------------------------
// One run on a fresh server (lifecycle and CPU accounting: bench/lib.mjs).

const procCpu = (pid) => lib.procStat(pid)?.cpu ?? 0;

function measure(meas, store, port, round) {
  return lib.measureQuietlyByCpu(QUIET, () => measureOnce(meas, store, port, round));
}

async function measureOnce(meas, store, port, round) {
  await lib.waitPortFree(port, PORT_HOSTS);
  const srv = await lib.startServer({ file: store.file, name: store.file, workers: WORKERS, port });
  try {
    const readyLine = /^READY .*$/m.exec(srv.stdout())?.[0] ?? '';
    const redisPid = Number(/redisPid=(\d+)/.exec(readyLine)?.[1]) || 0;
    const redisVersion = /redis=(\S+)/.exec(readyLine)?.[1];
    await lib.probe(port, { headers: { 'x-forwarded-for': keysBySlot[0][0] } });
    const out = {
      round,
      measurement: meas.id,
      kind: meas.kind,
      targetRate: meas.rate,
      store: store.id,
      redisVersion,
      attempts: 1,
    };
    let before;
    let after;
    let redis0;
    let redis1;
    if (meas.kind === 'latency') {
      const ctx = await setupLatency(port);
      if (LAT_WARMUP > 0) await runLatency(ctx, LAT_WARMUP, meas.rate);
      if (store.id === 'sticky-mesh') await collectApplied(port); // drop the warm-up's
      before = lib.cpuSnapshot(srv.pgid);
      redis0 = redisPid && procCpu(redisPid);
      const rec = await runLatency(ctx, LAT_DURATION, meas.rate);
      after = lib.cpuSnapshot(srv.pgid);
      redis1 = redisPid && procCpu(redisPid);
      await sleep(200);
      const applied = store.id === 'sticky-mesh' ? await collectApplied(port) : null;
      Object.assign(out, summarizeLatency(rec, applied));
      for (const a of [...ctx.agents, ...ctx.pollAgents]) a.destroy();
    } else {
      const ctx = await setupLoad(port, {
        keys: keysBySlot,
        workers: WORKERS,
        connections: CONNECTIONS,
        sessionsPerConn: SESSIONS_PER_CONN,
      });
      // writes: every request a write; heavy: one in 2; reads: one write in READ_CYCLE.
      const { cycle } = meas;
      const counters = newLoadCounters();
      if (WARMUP > 0) await runLoad(ctx, cycle, WARMUP, counters);
      counters.active = true;
      before = lib.cpuSnapshot(srv.pgid);
      redis0 = redisPid && procCpu(redisPid);
      const r = await runLoad(ctx, cycle, DURATION, counters);
      after = lib.cpuSnapshot(srv.pgid);
      redis1 = redisPid && procCpu(redisPid);
      counters.active = false;
      // MemoryStore replicates nothing: its workers' counters are summed, not compared.
      const conv =
        store.id === 'memory'
          ? await unreplicated(port)
          : await converge([{ port, keys: keysBySlot }]);
      Object.assign(out, loadFigures(r, counters, conv), {
        connections: CONNECTIONS,
        sessionBytes: conv.digests[0].meanBytes,
        expectedSessions: CONNECTIONS * SESSIONS_PER_CONN,
      });
    }
    const cpu = lib.cpuBetween(before, after);
    const secs = Number(after.t - before.t) / 1e9;
    out.cpu = {
      client: cpu.client,
      primary: cpu.primary,
      redis: redisPid ? (redis1 - redis0) / lib.CLK_TCK / secs : 0,
      workers: 0,
      foreign: cpu.foreign,
    };
    out.cpu.workers = Math.max(0, cpu.server - cpu.primary - out.cpu.redis);
    out.cpu.server = cpu.server;
    // Server CPU (primary, workers, redis-server) per request of the measured period, ms.
    if (meas.kind !== 'latency') out.cpuMsPerReq = (cpu.server * 1000) / out.rps;
    const err = srv.stderr().trim();
    out.serverStderr = err ? err.split('\n').slice(0, 3).join(' | ') : '';
    return out;
  } finally {
    await lib.stopServer(srv);
  }
}

// 4. memory: one `node --expose-gc bench/servers/sessions-memory.mjs` per store.
function measureMemory(store) {
  return new Promise((resolve, reject) => {
    execFile(
      process.execPath,
      ['--expose-gc', path.join(lib.benchDir, 'servers', 'sessions-memory.mjs')],
      {
        cwd: lib.rootDir,
        env: {
          ...process.env,
          STORE: store === 'sticky-mesh' ? 'replicated' : 'redis',
          SESSIONS: String(MEM_SESSIONS),
        },
        timeout: 120_000,
        maxBuffer: 1 << 20,
      },
      (err, stdout, stderr) => {
        const line = /^RESULT (.*)$/m.exec(stdout)?.[1];
        if (err || !line)
          reject(new Error(`memory run (${store}) failed: ${err?.message}\n${stderr}`));
        else resolve(JSON.parse(line));
      },
    );
  });
}

// ---------------------------------------------------------------------------------------------
// Report.

const fmtBytes = (x) => (Number.isFinite(x) ? fmtInt(x) : 'n/a');
const fmtCpuRun = (c) =>
  `${f2(c.client)} / ${f2(c.primary)} / ${f2(c.workers)}${c.redis ? ` / ${f2(c.redis)}` : ''}`;

function problems(r) {
  const parts = [];
  if (r.errors) parts.push(`errors ${r.errors}`);
  if (r.timeouts) parts.push(`timeouts ${r.timeouts}`);
  if (r.non2xx) parts.push(`non-2xx ${r.non2xx}`);
  if (r.mismatches) parts.push(`wrong slot ${r.mismatches}`);
  if (r.probeErrors) parts.push(`probe errors ${r.probeErrors}`);
  if (r.probesUnseen) parts.push(`probes never seen ${r.probesUnseen}`);
  if (r.apply?.missing) parts.push(`apply records missing ${r.apply.missing}`);
  const ce = Object.entries(r.connErrors ?? {});
  if (ce.length)
    parts.push(
      `${r.kind === 'latency' ? 'error detail' : 'conn errors'}: ${ce.map(([k, v]) => `${k} ${v}`).join(', ')}`,
    );
  if (r.converged === false) parts.push('NOT CONVERGED');
  return parts.length ? parts.join('; ') : '0';
}

function summarize(results, memory) {
  const of = (m, s) => results.filter((r) => r.measurement === m && r.store === s);
  const med = (m, s, fn) => median(of(m, s).map(fn).filter(Number.isFinite));
  const ratio = (m, fn, vs = 'connect-redis') => med(m, 'sticky-mesh', fn) / med(m, vs, fn);
  const perRound = (m, fn, vs = 'connect-redis') => {
    const out = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const a = of(m, 'sticky-mesh').find((r) => r.round === round);
      const b = of(m, vs).find((r) => r.round === round);
      if (a && b) out.push(fn(a) / fn(b));
    }
    return out;
  };
  const memOf = (s) => memory.filter((m) => m.store === s);
  return { of, med, ratio, perRound, memOf };
}

const label = (id) => STORES.find((x) => x.id === id).label;
const sumOf = (rs, fn) => rs.reduce((a, r) => a + fn(r), 0);
const latId = (rate) => `latency-${rate}`;

function renderSection(results, memory, info, startedAt, elapsedS) {
  const S = summarize(results, memory);
  const { of, med, ratio, perRound } = S;
  const L = [];
  const p = (...xs) => L.push(...xs);
  const rounds = (m, s, fn, fmt) =>
    of(m, s)
      .map((r) => fmt(fn(r)))
      .join(', ');
  p('<!-- BEGIN sessions (written by bench/sessions.mjs; do not edit by hand) -->');
  p('## Session store (issues 4 and 18)', '');
  p(
    `Run: ${startedAt.toISOString()} (${elapsedS.toFixed(0)} s), \`node bench/sessions.mjs\`, sticky-mesh commit ${info.commit}; sticky-mesh measured as built in dist/ (newest file ${info.distBuilt})${info.distChanged ? `; **dist/ was rebuilt during the run (newest file ${info.distChanged} at the end), so the sticky-mesh figures may mix two builds**` : ''}.`,
    '',
  );
  p(
    `Machine: ${info.cpus} CPUs (os.cpus), ${info.model}, ${info.memGiB} GiB; Node ${info.node}; ${info.os}; express ${info.express}, express-session ${info.expressSession}, connect-redis ${info.connectRedis}, redis (node client) ${info.redis}, redis-server ${info.redisServer}, autocannon ${info.autocannon}.`,
    '',
  );
  p('Settings and method (details in the header of `bench/sessions.mjs`):', '');
  p(
    `- Three stores behind the same express + express-session app (\`bench/servers/session-app.mjs\`; resave false, saveUninitialized false, cookie maxAge 1 h, sessions of about ${SESSION_BYTES} bytes of JSON) and the same balancer, sticky-mesh proxy mode \`sticky({ num: ${WORKERS}, proxy: true, seed: ${SEED} })\`: ${WORKERS} workers. ReplicatedStore with default options (\`sessions-sticky-mesh.mjs\`); connect-redis with default options over one node-redis connection per worker to a redis-server (\`--save '' --appendonly no\`, loopback) that the server's primary starts in its own process group (\`sessions-connect-redis.mjs\`); express-session's MemoryStore, one per worker, nothing shared (\`sessions-memorystore.mjs\`: the unreplicated limit, in the throughput mixes only; its workers' counters are summed instead of compared). Touch is on for both (a read of an unchanged session ends with store.touch, a replicated expiry change resp. a redis EXPIRE, before the response is sent).`,
  );
  p(
    `- The bench chooses each request's worker with X-Forwarded-For (client addresses mapped to slots with the balancer's own hash, \`dist/hash.js\` \`rendezvous(seed, ${WORKERS})\`); every response names its slot and a wrong one is counted ("wrong slot"). Every run on a freshly started server, killed with its process group afterwards; ${ROUNDS} interleaved rounds, the stores' order rotating from round to round; figures are medians over rounds unless said otherwise.`,
  );
  p(
    `- **Latency**, at ${RATES.map(fmtInt).join(' and ')} writes/s in total (${RATES.length > 1 ? `${fmtInt(RATES[0])} as asked; the lower rate${RATES.length > 2 ? 's' : ''} added as a reference below saturation; ` : ''}${LAT_WARMUP} s warm-up + ${LAT_DURATION} s measured): open loop, writes sent on a 1 ms timer as they fall due, each \`POST /write?w=ID\` to the worker that created the session (${LAT_SESSIONS} sessions per worker, keep-alive). t0 = hrtime in the bench just before the request. (a) *apply* (ReplicatedStore only): each worker records when it applied each replicated write (process.hrtime.bigint(), CLOCK_MONOTONIC, one clock for all processes; on the diagnostics channel \`sticky-mesh:replicated\`, once its replica applied the change), for every write of the measured period and each of the ${WORKERS - 1} other workers; "from t0" = apply time - t0, "all other workers" = the last of the ${WORKERS - 1}, "from the writer's handler" = apply time - the time the \`/write\` route ran on the writer (before express-session saved; returned in the response), i.e. the replication path alone without the HTTP request's queueing. (b) *probe* (both stores): every ${PROBE_INTERVAL} ms a write to a probe session on worker A while the bench polls \`GET /value\` (store.get, no middleware, no touch) on worker B in a tight loop over one keep-alive connection; latency = arrival of the first answer with the new value - t0 (resolution: one poll round trip, given below; the polling is extra load, its rate is given); A, B cycle through all ${WORKERS * (WORKERS - 1)} ordered pairs; probe writes count towards the rate. (c) the writer's response time (write acknowledged).`,
  );
  p(
    `- **Writes / reads**: autocannon, ${CONNECTIONS} keep-alive connections, pipelining 1, ${WARMUP} s warm-up + ${DURATION} s measured; connection i is a client of worker i mod ${WORKERS} with its own ${SESSIONS_PER_CONN} sessions (created on that worker; ${fmtInt(CONNECTIONS * SESSIONS_PER_CONN)} in all; no two connections share one). *write-only*: every request \`POST /write\` (a change: always a save). *write-heavy*: \`GET /me\` and \`POST /write\` alternating. *read-mostly*: of every ${READ_CYCLE} requests one \`POST /write\`, the others \`GET /me\` (session loaded and touched). Rates = 2xx responses / measured duration; p50 / p99 from autocannon's per-response times (float ms); server CPU per request = CPU time of the primary, workers and redis-server / requests. After each run: \`GET /digest\` (count and SHA-256 of all sessions) on every worker until all agree ("converged"), and the sum of the sessions' write counters on every worker compared with the writes acknowledged to the client (equal up to the requests in flight when autocannon stops its clients, at most ${CONNECTIONS} per stop, two stops).`,
  );
  p(
    `- **Memory**: ${fmtInt(MEM_SESSIONS)} sessions of ${SESSION_BYTES} bytes of JSON with 32-character ids, one \`node --expose-gc\` process per store and round (\`bench/servers/sessions-memory.mjs\`): a standalone ReplicatedStore (no cluster), heapUsed and rss after two forced GCs, before and after; connect-redis into a private redis-server, its INFO used_memory and VmRSS, before and after.`,
    '',
  );

  // Targets.
  p('### Targets (issue 18)', '');
  p(
    `ReplicatedStore (sticky-mesh) against connect-redis (redis on loopback) and express-session's MemoryStore in the same ${WORKERS}-worker cluster (the unreplicated limit), side by side in this run. Ratio of the medians over rounds; per-round ratios (same round, runs seconds apart) beside it.`,
    '',
  );
  p(
    '| target | ReplicatedStore | vs | ratio | per round | CPU ms/request (ReplicatedStore / other) | met? |',
  );
  p('|---|---:|---:|---:|---|---|---|');
  for (const [m, vs, goal] of TARGETS) {
    if (!of(m, 'sticky-mesh').length || !of(m, vs).length) continue;
    const rate = (r) => r.rps;
    const x = ratio(m, rate, vs);
    p(
      `| ${LOAD_NAMES[m]}: req/s >= ${goal.toFixed(2)}x ${label(vs)} | ${fmtInt(med(m, 'sticky-mesh', rate))} req/s | ${fmtInt(med(m, vs, rate))} req/s | **${fmtRatio(x)}** | ${perRound(m, rate, vs).map(fmtRatio).join(', ')} | ${f3(med(m, 'sticky-mesh', (r) => r.cpuMsPerReq))} / ${f3(med(m, vs, (r) => r.cpuMsPerReq))} (${fmtRatio(ratio(m, (r) => r.cpuMsPerReq, vs))}) | ${x >= goal ? 'yes' : '**no**'} |`,
    );
  }
  p('');

  // Latency.
  p('### Write-to-visible latency on another worker', '');
  p(
    `${WORKERS} workers. Medians over rounds of each round's percentile (per round beside them); ms.`,
    '',
  );
  p('| writes/s | store | what | p50 | p99 | per round p50 | per round p99 | measured per round |');
  p('|---:|---|---|---:|---:|---|---|---|');
  for (const rate of RATES) {
    const m = latId(rate);
    const row = (s, what, get, count) => {
      const rs = of(m, s);
      p(
        `| ${fmtInt(rate)} | ${label(s)} | ${what} | ${fmtMs(median(rs.map((r) => get(r).p50)))} | ${fmtMs(median(rs.map((r) => get(r).p99)))} | ${rs.map((r) => fmtMs(get(r).p50)).join(', ')} | ${rs.map((r) => fmtMs(get(r).p99)).join(', ')} | ${rs.map(count).join(', ')} |`,
      );
    };
    const pairs = (r) => `${fmtInt(r.apply.pairs.n)} (write, worker)`;
    row('sticky-mesh', '(a) apply on another worker, from t0', (r) => r.apply.pairs, pairs);
    row(
      'sticky-mesh',
      '(a) apply on all other workers, from t0',
      (r) => r.apply.all,
      (r) => `${fmtInt(r.apply.measured)} writes`,
    );
    row(
      'sticky-mesh',
      "(a) apply on another worker, from the writer's handler",
      (r) => r.apply.lag,
      pairs,
    );
    for (const s of ['sticky-mesh', 'connect-redis'])
      row(
        s,
        '(b) probe: new value read on B',
        (r) => r.probe,
        (r) => `${fmtInt(r.probe.n)} probes`,
      );
    for (const s of ['sticky-mesh', 'connect-redis'])
      row(
        s,
        "(c) writer's response",
        (r) => r.ack,
        (r) => `${fmtInt(r.ack.n)} writes`,
      );
  }
  p('');
  for (const rate of RATES) {
    const m = latId(rate);
    const sm = of(m, 'sticky-mesh');
    const cr = of(m, 'connect-redis');
    p(`At ${fmtInt(rate)} writes/s:`, '');
    p(
      `- Writes sent per second (measured periods): ${[...sm, ...cr].map((r) => `${r.store} r${r.round} ${fmtInt(r.rate)}`).join(', ')}; server CPU (cores, primary + workers + redis-server): ReplicatedStore ${sm.map((r) => f2(r.cpu.server)).join(', ')}, connect-redis ${cr.map((r) => f2(r.cpu.server)).join(', ')}; bench process ${[...sm, ...cr].map((r) => f2(r.cpu.client)).join(', ')}.`,
    );
    p(
      `- ReplicatedStore: ${fmtInt(sumOf(sm, (r) => r.apply.measured))} of ${fmtInt(sumOf(sm, (r) => r.writesOk))} acknowledged writes recorded as applied on all ${WORKERS - 1} other workers (${fmtInt(sumOf(sm, (r) => r.apply.missing))} (write, worker) records missing); applied on all other workers before the writer's response reached the client: ${pctOf(
        sumOf(sm, (r) => r.apply.allBeforeAck),
        sumOf(sm, (r) => r.apply.measured),
      )}.`,
    );
    for (const [s, rs] of [
      ['sticky-mesh', sm],
      ['connect-redis', cr],
    ])
      p(
        `- Probes, ${label(s)}: ${fmtInt(sumOf(rs, (r) => r.probe.n))} seen of ${fmtInt(sumOf(rs, (r) => r.probes))} (not seen within 2 s: ${fmtInt(sumOf(rs, (r) => r.probesUnseen))}); new value read on B before the writer's response arrived: ${pctOf(
          sumOf(rs, (r) => r.probeBeforeAck),
          sumOf(rs, (r) => r.probe.n),
        )}; poll round trip p50 ${rs.map((r) => fmtMs(r.pollRtt.p50)).join(', ')} ms; polls per probe (median) ${rs.map((r) => f1(r.pollsPerProbe)).join(', ')}; polls/s ${rs.map((r) => fmtInt(r.pollsPerS)).join(', ')}.`,
      );
    p('');
  }

  // Throughput.
  p('### Requests/s by mix', '');
  p(
    '| mix | store | median req/s | per round | p50 ms | p99 ms | per round p99 | server CPU ms per request (per round) | CPU cores: primary / workers (/ redis-server) | replicas converged | write counters vs acknowledged |',
  );
  p('|---|---|---:|---|---:|---:|---|---|---|---|---|');
  for (const m of LOAD_IDS) {
    for (const s of STORE_IDS) {
      const rs = of(m, s);
      if (!rs.length) continue;
      const rate = (r) => r.rps;
      p(
        `| ${LOAD_NAMES[m]} | ${label(s)} | ${fmtInt(med(m, s, rate))} | ${rounds(m, s, rate, fmtInt)} | ${fmtMs(med(m, s, (r) => r.all.p50))} | ${fmtMs(med(m, s, (r) => r.all.p99))} | ${rounds(m, s, (r) => r.all.p99, fmtMs)} | ${f3(med(m, s, (r) => r.cpuMsPerReq))} (${rounds(m, s, (r) => r.cpuMsPerReq, f3)}) | ${f2(med(m, s, (r) => r.cpu.primary))} / ${f2(med(m, s, (r) => r.cpu.workers))}${s === 'connect-redis' ? ` / ${f2(med(m, s, (r) => r.cpu.redis))}` : ''} | ${rs.map((r) => (r.converged === null ? 'n/a (unreplicated)' : r.converged ? `yes (${r.convergeMs} ms)` : '**no**')).join(', ')} | ${rs.map(sumCheck).join('; ')} |`,
      );
    }
  }
  p('');
  p('By request kind (medians over rounds; ms):', '');
  p('| mix | store | reads/s | read p50 | read p99 | writes/s | write p50 | write p99 |');
  p('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const m of LOAD_IDS.filter((x) => x !== 'writes'))
    for (const s of STORE_IDS)
      if (of(m, s).length)
        p(
          `| ${m === 'heavy' ? 'write-heavy' : 'read-mostly'} | ${label(s)} | ${fmtInt(med(m, s, (r) => r.readsPerS))} | ${fmtMs(med(m, s, (r) => r.reads.p50))} | ${fmtMs(med(m, s, (r) => r.reads.p99))} | ${fmtInt(med(m, s, (r) => r.writesPerS))} | ${fmtMs(med(m, s, (r) => r.writes.p50))} | ${fmtMs(med(m, s, (r) => r.writes.p99))} |`,
        );
  p('');

  // Ratios.
  p('### ReplicatedStore / connect-redis and / MemoryStore', '');
  p(
    'Ratio of medians; per-round ratios (same round, seconds apart) beside it. Above 1 means ReplicatedStore is higher (better for rates, worse for latencies and CPU).',
    '',
  );
  p(
    '| figure | / connect-redis | per round | / MemoryStore | per round |',
    '|---|---:|---|---:|---|',
  );
  const ratios = [];
  for (const m of LOAD_IDS) {
    const short = { writes: 'write-only', heavy: 'write-heavy', reads: 'read-mostly' }[m];
    ratios.push([`req/s (${short})`, m, (r) => r.rps]);
    ratios.push([`p50 (${short})`, m, (r) => r.all.p50]);
    ratios.push([`p99 (${short})`, m, (r) => r.all.p99]);
    ratios.push([`server CPU per request (${short})`, m, (r) => r.cpuMsPerReq]);
  }
  for (const rate of RATES) {
    ratios.push([
      `probe write-to-visible p50 at ${fmtInt(rate)} writes/s`,
      latId(rate),
      (r) => r.probe.p50,
    ]);
    ratios.push([
      `probe write-to-visible p99 at ${fmtInt(rate)} writes/s`,
      latId(rate),
      (r) => r.probe.p99,
    ]);
  }
  for (const [text, m, fn] of ratios) {
    if (!of(m, 'sticky-mesh').length) continue;
    const vsMem = of(m, 'memory').length
      ? `${fmtRatio(ratio(m, fn, 'memory'))} | ${perRound(m, fn, 'memory').map(fmtRatio).join(', ')}`
      : 'n/a | -';
    p(
      `| ${text} | ${fmtRatio(ratio(m, fn))} | ${perRound(m, fn).map(fmtRatio).join(', ')} | ${vsMem} |`,
    );
  }
  p('');

  // Memory.
  p(`### Memory per ${fmtInt(MEM_SESSIONS)} sessions`, '');
  const smm = S.memOf('sticky-mesh');
  const crm = S.memOf('connect-redis');
  const mMed = (rs, fn) => median(rs.map(fn));
  const json = smm[0]?.jsonBytes ?? crm[0]?.jsonBytes;
  p(`Each session ${json} bytes of JSON; medians over ${ROUNDS} runs (per run beside them).`, '');
  p('| store | measure | bytes per session | per run | per 100k sessions | over the JSON size |');
  p('|---|---|---:|---|---:|---:|');
  const memRow = (store, what, rs, fn) => {
    const v = mMed(rs, fn);
    p(
      `| ${store} | ${what} | ${fmtBytes(v)} | ${rs.map((r) => fmtBytes(fn(r))).join(', ')} | ${f1((v * 100_000) / 2 ** 20)} MiB | ${fmtBytes(v - json)} |`,
    );
  };
  memRow('ReplicatedStore, one replica', 'V8 heapUsed', smm, (r) => r.heapPerSession);
  memRow('ReplicatedStore, one replica', 'process RSS', smm, (r) => r.rssPerSession);
  memRow('connect-redis (redis-server)', 'INFO used_memory', crm, (r) => r.usedMemoryPerSession);
  memRow('connect-redis (redis-server)', 'redis-server RSS', crm, (r) => r.rssPerSession);
  const heap = mMed(smm, (r) => r.heapPerSession);
  p('');
  p(
    `In a cluster of ${WORKERS} workers ReplicatedStore holds ${WORKERS + 1} replicas (every worker and the primary's hub): about ${fmtInt(heap * (WORKERS + 1))} bytes of heap per session in all, ${f1((heap * (WORKERS + 1) * 100_000) / 2 ** 20)} MiB per 100k sessions, against one copy in redis (${f1((mMed(crm, (r) => r.usedMemoryPerSession) * 100_000) / 2 ** 20)} MiB used_memory per 100k). Sessions stored: ${[...smm, ...crm].map((r) => `${r.store === 'sticky-mesh' ? 'ReplicatedStore' : 'redis'} r${r.round} ${fmtInt(r.stored)}`).join(', ')}.`,
    '',
  );

  // Raw.
  p('### Per-run raw figures', '');
  p(
    '| round | measurement | store | rate | p50 / p99 ms | measured | problems | converged / counters | CPU cores: client / primary / workers (/ redis-server) | foreign CPU | attempts |',
  );
  p('|---:|---|---|---:|---|---:|---|---|---|---:|---:|');
  for (const r of results) {
    if (r.kind === 'latency') {
      const a = r.apply
        ? `apply ${fmtMs(r.apply.pairs.p50)} / ${fmtMs(r.apply.pairs.p99)}, from handler ${fmtMs(r.apply.lag.p50)} / ${fmtMs(r.apply.lag.p99)}; `
        : '';
      p(
        `| ${r.round} | ${r.measurement} | ${r.store} | ${fmtInt(r.rate)} writes/s | ${a}probe ${fmtMs(r.probe.p50)} / ${fmtMs(r.probe.p99)}; response ${fmtMs(r.ack.p50)} / ${fmtMs(r.ack.p99)} | ${fmtInt(r.writesSent)} writes, ${fmtInt(r.probes)} probes | ${problems(r)} | n/a | ${fmtCpuRun(r.cpu)} | ${f2(r.cpu.foreign)} | ${r.attempts} |`,
      );
    } else {
      const rate =
        r.kind === 'writes' ? `${fmtInt(r.writesPerS)} writes/s` : `${fmtInt(r.rps)} req/s`;
      p(
        `| ${r.round} | ${r.measurement} | ${r.store} | ${rate} | ${fmtMs(r.all.p50)} / ${fmtMs(r.all.p99)} | ${fmtInt(r.all.n)} | ${problems(r)} | ${r.converged === null ? 'n/a' : r.converged ? 'yes' : '**no**'}, ${fmtInt(r.sessions)} sessions; ${sumCheck(r)} | ${fmtCpuRun(r.cpu)} | ${f2(r.cpu.foreign)} | ${r.attempts} |`,
      );
    }
  }
  p('');

  p('### Observations (generated from the figures above)', '');
  for (const o of observations(results, S)) p(`- ${o}`);
  for (const r of results.filter((x) => x.serverStderr))
    p(`- server stderr, round ${r.round} ${r.measurement} ${r.store}: \`${r.serverStderr}\``);
  const foreign = results.map((r) => r.cpu.foreign);
  const disturbed = foreign.filter((x) => x > FOREIGN_MAX).length;
  const client = (k) => f2(median(results.filter((r) => r.kind === k).map((r) => r.cpu.client)));
  p('', '### Background load', '');
  p(
    `This machine has ${info.cpus} CPUs. The load generator (this bench process: the open-loop writer and the pollers, autocannon) runs on them beside the primary, ${WORKERS} workers and, for connect-redis, redis-server: it used a median of ${client('latency')} cores in the latency runs, ${client('writes')} in the writes runs and ${client('reads')} in the read-mostly runs, and the servers had what was left, ${WORKERS} workers and a primary on ${info.cpus} cores. Absolute rates and latencies are bounded by that (latencies include run-queue waits of an over-committed machine) and do not transfer to other machines; the ratios compare runs made under the same conditions. Load from other processes, measured per run: median ${f2(median(foreign))}, max ${f2(Math.max(...foreign))} cores (runs above ${FOREIGN_MAX} cores were repeated, up to ${MAX_ATTEMPTS} attempts, keeping the least disturbed)${disturbed ? `; **${disturbed} of ${results.length} kept runs still had more than ${FOREIGN_MAX} cores of foreign load** (raw table), so their figures are lower than a quiet machine would give` : ''}.`,
  );
  p('<!-- END sessions -->');
  return L.join('\n');
}

function observations(results, S) {
  const out = [];
  const { of, med } = S;
  const bad = results.filter((r) => problems(r) !== '0');
  if (bad.length)
    out.push(
      `Runs with problems: ${bad.map((r) => `round ${r.round} ${r.measurement} ${r.store}: ${problems(r)}`).join('; ')}.`,
    );
  else
    out.push(
      'No errors, non-2xx answers, wrong-slot answers, unseen probes or missing apply records in any run.',
    );
  const notConv = results.filter((r) => r.converged === false);
  if (notConv.length)
    out.push(`**Replicas did not converge** within 5 s in ${notConv.length} run(s) (raw table).`);
  const sumBad = results.filter((r) => r.sumN && !sumCheck(r).startsWith('ok'));
  if (sumBad.length)
    out.push(
      `**The write counters on the replicas do not match the acknowledged writes** in ${sumBad.map((r) => `round ${r.round} ${r.measurement} ${r.store}`).join(', ')}.`,
    );
  else
    out.push(
      'After every writes and read-mostly run all workers agreed (digests) and the write counters matched the acknowledged writes (up to requests in flight when autocannon stopped).',
    );
  const w = med('writes', 'sticky-mesh', (r) => r.writesPerS);
  const wr = med('writes', 'connect-redis', (r) => r.writesPerS);
  out.push(
    `Write-only: ReplicatedStore ${fmtInt(w)} writes/s (each write applied by the writer, the hub and ${WORKERS - 1} other workers), connect-redis ${fmtInt(wr)} writes/s: ${fmtRatio(w / wr)}; server CPU per write ${f2(med('writes', 'sticky-mesh', (r) => r.cpuMsPerReq))} ms vs ${f2(med('writes', 'connect-redis', (r) => r.cpuMsPerReq))} ms.`,
  );
  const rr = med('reads', 'sticky-mesh', (r) => r.rps);
  const rrr = med('reads', 'connect-redis', (r) => r.rps);
  out.push(
    `Read-mostly: ReplicatedStore ${fmtInt(rr)} req/s, connect-redis ${fmtInt(rrr)} req/s: ${fmtRatio(rr / rrr)}.`,
  );
  for (const rate of RATES) {
    for (const s of ['sticky-mesh', 'connect-redis']) {
      const cap = med('writes', s, (r) => r.writesPerS);
      const rs = of(latId(rate), s);
      const low = rs.filter((r) => r.rate < rate * 0.95);
      if (low.length)
        out.push(
          `${label(s)}: the open-loop writer fell below ${fmtInt(rate * 0.95)} writes/s in ${low.map((r) => `round ${r.round} (${fmtInt(r.rate)})`).join(', ')} of the ${fmtInt(rate)} writes/s runs.`,
        );
      const resp = fmtMs(med(latId(rate), s, (r) => r.ack.p50));
      if (cap && rate > cap)
        out.push(
          `${label(s)}: ${fmtInt(rate)} writes/s is above the most this machine did in the writes runs (${fmtInt(cap)} writes/s, closed loop; ${pctOf(rate, cap)}): at that rate writes queue up for the whole run, so the ${fmtInt(rate)} writes/s latencies measure a growing backlog (writer's response p50 ${resp} ms) and depend on the run's length; the row "from the writer's handler" leaves that backlog out.`,
        );
      else if (cap && rate >= 0.7 * cap)
        out.push(
          `${label(s)}: ${fmtInt(rate)} writes/s is ${pctOf(rate, cap)} of the most this machine did in the writes runs (${fmtInt(cap)} writes/s, closed loop), so at that rate requests queue and the latency figures are mostly queueing (writer's response p50 ${resp} ms).`,
        );
    }
  }
  return out;
}

function printTable(results, memory) {
  const S = summarize(results, memory);
  const { med } = S;
  const table = [['measurement', 'store', 'median rate', 'p50 ms', 'p99 ms', 'problems']];
  for (const rate of RATES) {
    const m = latId(rate);
    if (!S.of(m, 'sticky-mesh').length) continue;
    for (const s of ['sticky-mesh', 'connect-redis']) {
      const rs = S.of(m, s);
      const r0 = `${fmtInt(med(m, s, (r) => r.rate))} writes/s`;
      if (s === 'sticky-mesh') {
        table.push([
          `${m} apply (t0)`,
          s,
          r0,
          fmtMs(med(m, s, (r) => r.apply.pairs.p50)),
          fmtMs(med(m, s, (r) => r.apply.pairs.p99)),
          rs.map(problems).join('; '),
        ]);
        table.push([
          `${m} apply (handler)`,
          s,
          r0,
          fmtMs(med(m, s, (r) => r.apply.lag.p50)),
          fmtMs(med(m, s, (r) => r.apply.lag.p99)),
          '',
        ]);
      }
      table.push([
        `${m} probe`,
        s,
        r0,
        fmtMs(med(m, s, (r) => r.probe.p50)),
        fmtMs(med(m, s, (r) => r.probe.p99)),
        s === 'sticky-mesh' ? '' : rs.map(problems).join('; '),
      ]);
      table.push([
        `${m} response`,
        s,
        r0,
        fmtMs(med(m, s, (r) => r.ack.p50)),
        fmtMs(med(m, s, (r) => r.ack.p99)),
        '',
      ]);
    }
  }
  for (const m of LOAD_IDS)
    for (const s of STORE_IDS) {
      const rs = S.of(m, s);
      if (!rs.length) continue;
      table.push([
        m,
        s,
        `${fmtInt(med(m, s, (r) => r.rps))} req/s, ${f3(med(m, s, (r) => r.cpuMsPerReq))} CPU ms/req`,
        fmtMs(med(m, s, (r) => r.all.p50)),
        fmtMs(med(m, s, (r) => r.all.p99)),
        rs.map(problems).join('; '),
      ]);
    }
  console.log(`\nMedians over ${ROUNDS} rounds (${WORKERS} workers):`);
  for (const line of lib.formatTable(table)) console.log(line);
  const tt = [['target (issue 18)', 'ReplicatedStore', 'other', 'ratio', 'CPU ms/req', 'met?']];
  for (const [m, vs, goal] of TARGETS) {
    if (!S.of(m, 'sticky-mesh').length || !S.of(m, vs).length) continue;
    const x = S.ratio(m, (r) => r.rps, vs);
    tt.push([
      `${m} >= ${goal}x ${vs}`,
      `${fmtInt(med(m, 'sticky-mesh', (r) => r.rps))} req/s`,
      `${fmtInt(med(m, vs, (r) => r.rps))} req/s`,
      fmtRatio(x),
      `${f3(med(m, 'sticky-mesh', (r) => r.cpuMsPerReq))} / ${f3(med(m, vs, (r) => r.cpuMsPerReq))}`,
      x >= goal ? 'yes' : 'NO',
    ]);
  }
  console.log('');
  for (const line of lib.formatTable(tt)) console.log(line);
  const smm = S.memOf('sticky-mesh');
  const crm = S.memOf('connect-redis');
  if (smm.length || crm.length)
    console.log(
      `\nmemory per session (${smm[0]?.jsonBytes} B JSON): ReplicatedStore heap ${fmtBytes(median(smm.map((r) => r.heapPerSession)))} B, rss ${fmtBytes(median(smm.map((r) => r.rssPerSession)))} B; redis used_memory ${fmtBytes(median(crm.map((r) => r.usedMemoryPerSession)))} B, rss ${fmtBytes(median(crm.map((r) => r.rssPerSession)))} B`,
    );
}

function logRun(r) {
  const head = `round ${r.round} ${r.measurement.padEnd(12)} ${r.store.padEnd(13)}`;
  const cpu = `cpu client/primary/workers${r.cpu.redis ? '/redis' : ''} ${fmtCpuRun(r.cpu)}  foreign ${f2(r.cpu.foreign)}`;
  if (r.kind === 'latency') {
    const a = r.apply
      ? `apply p50/p99 ${fmtMs(r.apply.pairs.p50)}/${fmtMs(r.apply.pairs.p99)} ms, from handler ${fmtMs(r.apply.lag.p50)}/${fmtMs(r.apply.lag.p99)} (${fmtInt(r.apply.measured)} writes)  `
      : '';
    console.log(
      `${head} ${fmtInt(r.rate)} writes/s  ${a}probe ${fmtMs(r.probe.p50)}/${fmtMs(r.probe.p99)} ms (${r.probe.n}, ${fmtInt(r.pollsPerS)} polls/s)  response ${fmtMs(r.ack.p50)}/${fmtMs(r.ack.p99)} ms  ${cpu}  problems: ${problems(r)}`,
    );
  } else {
    const rate =
      r.kind === 'writes' ? `${fmtInt(r.writesPerS)} writes/s` : `${fmtInt(r.rps)} req/s`;
    console.log(
      `${head} ${rate}  p50/p99 ${fmtMs(r.all.p50)}/${fmtMs(r.all.p99)} ms  cpu ${f2(r.cpuMsPerReq)} ms/req  converged ${r.converged} (${r.convergeMs} ms) ${sumCheck(r)}  ${cpu}  problems: ${problems(r)}`,
    );
  }
}

async function main() {
  if (!existsSync(path.join(lib.rootDir, 'dist', 'index.js'))) {
    console.error('dist/index.js is missing: run `npm run build` first.');
    process.exit(2);
  }
  const startedAt = new Date();
  const info = machineInfo();
  if (info.redisServer === 'not found') {
    console.error('redis-server is not on PATH: apt-get install redis-server');
    process.exit(2);
  }
  if (info.connectRedis === 'not installed' || info.redis === 'not installed') {
    console.error('connect-redis / redis are missing: npm install (devDependencies)');
    process.exit(2);
  }
  await buildKeys();
  const port = await lib.findPort(PORT_HOSTS);
  console.log(
    `sessions bench: ${ROUNDS} rounds, ${WORKERS} workers, latency ${LAT_WARMUP}+${LAT_DURATION} s at ${RATES.join(', ')} writes/s, writes/reads ${WARMUP}+${DURATION} s x ${CONNECTIONS} connections, memory ${MEM_SESSIONS} sessions of ${SESSION_BYTES} B, seed ${SEED}, port ${port}`,
  );
  console.log(`machine: ${info.cpus} x ${info.model}, Node ${info.node}, commit ${info.commit}`);
  const results = [];
  const memory = [];
  for (let round = 1; round <= ROUNDS; round++) {
    // Rotate the stores' order, so each runs first in some round.
    const k = (round - 1) % STORES.length;
    const order = [...STORES.slice(k), ...STORES.slice(0, k)];
    for (const meas of MEASUREMENTS) {
      for (const store of order) {
        if (meas.kind === 'latency' && store.throughputOnly) continue;
        const r = await measure(meas, store, port, round);
        results.push(r);
        logRun(r);
      }
    }
    for (const store of RUN_MEMORY ? order.filter((x) => !x.throughputOnly) : []) {
      await lib.waitQuiet(QUIET_WAIT_S, FOREIGN_MAX);
      const m = await measureMemory(store.id);
      m.round = round;
      m.store = store.id;
      memory.push(m);
      console.log(
        `round ${round} memory  ${store.id.padEnd(13)} ${store.id === 'sticky-mesh' ? `heap ${fmtBytes(m.heapPerSession)} B/session, rss ${fmtBytes(m.rssPerSession)}` : `used_memory ${fmtBytes(m.usedMemoryPerSession)} B/session, rss ${fmtBytes(m.rssPerSession)}`} (${m.jsonBytes} B JSON, ${fmtInt(m.stored)} stored)`,
      );
    }
  }
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const distNow = lib.distStamp();
  if (distNow !== info.distBuilt) {
    info.distChanged = distNow;
    console.log(`WARNING: dist/ was rebuilt during the run (${info.distBuilt} -> ${distNow})`);
  }
  printTable(results, memory);
  if (ONLY) {
    console.log(
      `${QUICK ? '--quick' : `BENCH_ONLY=${ONLY.join(',')}`}: partial run, bench/RESULTS.md not written`,
    );
    return;
  }
  const text = renderSection(results, memory, info, startedAt, elapsedS);
  if (WRITE) lib.writeResults('sessions', text);
  else console.log('\nBENCH_WRITE=0: bench/RESULTS.md not written');
}

lib.runMain(main);
