#!/usr/bin/env node
// Redis transport benchmark (issues 6 and 18): sticky-mesh's ReplicatedStore replicating through
// Redis (`sticky({ redis })`) against connect-redis on the same redis-server, and the
// write-to-visible latency between sticky clusters that share one Redis; by default with Redis
// at a realistic distance: every server reaches redis-server through a relay that holds each
// chunk 250 µs in each direction (bench/servers/delay-relay.mjs: this kernel has no netem),
// whose real added round trip the bench measures first (Redis PINGs, directly and through it)
// and whose hold times it reports per run.
//
// On the shared reference box run it under the bench lock:
//   flock /tmp/sticky-bench.lock node bench/redis.mjs [--quick]
// Where the CPU goes: bench/profile.mjs --server redis-sticky-mesh.mjs (same servers and relay).
//
//   node bench/redis.mjs            full run (needs dist/: `npm run build` once, redis-server on
//                                   PATH, ioredis, connect-redis and redis installed); writes its
//                                   section of bench/RESULTS.md
//   node bench/redis.mjs --quick    smoke run (1 round, short runs, no reference store, two
//                                   workloads); bench/RESULTS.md left alone
//
// redis-server: for every run the bench starts a fresh one of its own on a free loopback port,
//   redis-server --port P --bind 127.0.0.1 --save '' --appendonly no
// in its own process group (killed after the run; its CPU is measured and reported on its own),
// and, with BENCH_DELAY_US > 0, a delay relay in front of it (its own process group too; its CPU
// reported on its own, as the network's, not the server's), and gives the servers the relay's
// port (else redis-server's) in REDIS_PORT. The bench's own clients (INFO commandstats, the
// records check, the channel subscriber) talk to redis-server directly.
//
// Servers (bench/servers/, each started afresh for every run as a child process in its own
// process group, env PORT, WORKERS, SESSIONS_SEED, SESSION_BYTES and REDIS_PORT; its READY
// line awaited; the whole group killed afterwards), all the express + express-session app of
// bench/servers/session-app.mjs (the one bench/sessions.mjs measures: resave false,
// saveUninitialized false, cookie maxAge 1 h, sessions of about SESSION_BYTES of JSON) under the
// same balancer, proxy mode `sticky({ num: WORKERS, proxy: true, seed: SEED })`:
//   redis          redis-sticky-mesh.mjs     ReplicatedStore (default options) in a cluster with
//                                            `redis: 'redis://127.0.0.1:REDIS_PORT'`: the
//                                            primary writes every change to Redis through the
//                                            transport's Lua script (which publishes it) and
//                                            applies what other machines publish; reads are
//                                            local to each worker
//   connect-redis  redis-connect-redis.mjs   connect-redis 9 `new RedisStore({ client })` over
//                                            node-redis, one connection per worker, to the same
//                                            kind of redis-server (the bench's)
//   memory         sessions-sticky-mesh.mjs  reference: ReplicatedStore without Redis (workers
//                                            and hub only, as in bench/sessions.mjs); no Redis
//                                            involved, shows what the transport itself costs
// The bench picks each request's worker with X-Forwarded-For (client addresses 198.18.x.y mapped
// to slots with the balancer's own hash, dist/hash.js `rendezvous(SEED, WORKERS)`); every
// response names its slot (`x-slot`), a wrong one is counted.
//
// Measurements:
//
// 0. the relay's delay: BENCH_PINGS Redis PINGs one at a time over one connection, directly and
//    through a relay, in alternating blocks, on a fresh redis-server: round trip p50 / p99 each
//    way, and the relay's own hold times (read to written, per chunk).
// 1. throughput (req/s, p50 / p99), in interleaved rounds (each round runs every workload once
//    per store; the stores' order rotates from round to round, so each one runs first in some
//    round). autocannon, CONNECTIONS keep-alive connections, pipelining 1, WARMUP + DURATION s;
//    connection i is a client of worker (i mod WORKERS) with its own SESSIONS_PER_CONN
//    sessions, created on that worker beforehand (no two connections share a session). A
//    workload "1 write in N": of every N requests one is `POST /write` (n + 1: always a save),
//    the others `GET /me` (the session loaded by the middleware and, unchanged, touched: for
//    connect-redis a GET and an EXPIRE; for ReplicatedStore a local read, and a touch only when
//    it would move the expiry by more than touchAfter, 10 s by default). MIXES, default
//    20 (read-mostly, as bench/sessions.mjs), 2 (write-heavy) and 1 (write-only). req/s = 2xx
//    responses / measured duration; p50 / p99 of autocannon's per-response times (float ms).
//    During the measured period: CPU of every process (this one = the load generator, each
//    server process, redis-server; /proc) and Redis's INFO commandstats (commands and their
//    time per request). Afterwards (300 ms later, for requests still in flight): GET /digest on
//    every worker until all agree (converged),
//    the sum of the sessions' write counters compared with the writes acknowledged (equal up to
//    the requests in flight when autocannon stopped), and for the Redis transport the records in
//    Redis (HGETALL of every session hash, the counters in its JSON summed) until they agree
//    with the workers (up to 5 s), plus the transport's own counters (stats().redis: written,
//    stale, errors, queued, dropped; the primary prints them on SIGUSR2).
//    Paced (after each read-mostly run, same server and sessions): the same mix at a fixed
//    PACED_RATE req/s (open loop on a 1 ms timer, each request to its session's worker over a
//    keep-alive agent), below saturation: p50 / p99 response times without a queue (the
//    closed-loop p50 of a saturated machine is mostly queueing), and server CPU per request.
//    Reference (SMALL): the read-mostly workload once more per store and round on 1 worker with
//    SMALL_CONNECTIONS connections: the machine is then not over-committed (one worker, the
//    primary, redis-server and the load generator on 2 cores), so it shows what a request costs
//    the worker itself, without 4 workers and the load generator competing for 2 cores.
// 2. cross-cluster latency: CLUSTERS sticky clusters (redis-sticky-mesh.mjs, LAT_WORKERS
//    workers each, each its own port) on one redis-server, the same cluster name: as many
//    machines of one deployment. Cluster 1 takes writes at RATES writes/s, open loop (a 1 ms
//    timer sends the writes due since the start, a slow server gets a queue, not fewer
//    writes), `POST /write?w=ID` with the session's cookie to the worker that created it
//    (LAT_SESSIONS sessions per worker of cluster 1, one keep-alive agent per worker, at most 16
//    sockets). t0 = process.hrtime.bigint() just before the request is made. Every worker of
//    every cluster records when it applied each write it was sent by its hub (bench-only
//    instrumentation in redis-sticky-mesh.mjs: process.hrtime.bigint() = CLOCK_MONOTONIC, one
//    clock for all processes of the machine, taken on sticky-mesh's diagnostics channel
//    sticky-mesh:replicated, which a worker publishes once its replica applied a change);
//    the bench collects them after the
//    run (GET /applied). Also this process subscribes to the cluster's channel itself and
//    takes hrtime when each write's message arrives (the Lua script's PUBLISH: the write is in
//    Redis). Reported: write-to-visible on a worker of another cluster (apply - t0, every
//    (write, remote worker)), on every remote worker (the last of them), the same from the
//    writer's handler (apply - the time the /write route ran on the writer, returned in its
//    answer: the replication path without the HTTP request's own queueing), the message on
//    the Redis channel, the other workers of cluster 1 (in-cluster, for reference) and the
//    writer's response; p50 / p99 / max over every measured write of the run (warm-up writes
//    not counted; a (write, worker) record that never came counts as missing). After each
//    rate: GET /digest on every worker of every cluster until all agree. Each round on fresh
//    clusters and a fresh redis-server, the rates in alternating order.
//
// Background load: the load generator (this process: autocannon, the open-loop writer, the
// channel subscriber) shares the machine's cores (2 on the reference box) with the primaries,
// the workers and redis-server, so absolute figures are bounded by that and latencies include
// run-queue waits of an over-committed machine; comparisons are between runs made seconds apart
// under the same conditions. Before each run the bench waits (up to QUIET_WAIT s) until other
// processes use <= FOREIGN_MAX cores, and measures foreign CPU during the run (busy time in
// /proc/stat minus this process, the server groups and redis-server); a run above FOREIGN_MAX is
// repeated (up to MAX_ATTEMPTS, keeping the least disturbed). Linux only (/proc).
//
// Cleanup: every process group the bench starts (servers, redis-servers) is killed after its
// run, and all still alive are killed on exit, error, SIGINT and SIGTERM.
//
// Shared code: bench/lib.mjs (server lifecycle, CPU accounting, report helpers),
// bench/sessions-lib.mjs (the session app's client side, shared with bench/sessions.mjs: logins,
// the autocannon load, the open-loop writer, convergence and apply records) and
// bench/servers/redis.mjs (starting a redis-server).
//
// Output: a summary on stdout and the section "Redis transport (issue 6)" of bench/RESULTS.md
// (between its BEGIN/END redis markers, appended if absent; other sections untouched; the file
// is read again right before it is written). The section keeps a one-line summary of up to 4
// earlier full runs (a JSON comment in it), so consecutive runs stay comparable.
//
// Targets of issue 18 (Redis at a distance), in the Targets table: read-mostly p50 with the
// transport <= 0.5x connect-redis's (paced, and closed loop), read-mostly req/s >= 1.2x,
// cross-cluster write-to-visible p99 <= 10 ms at 500 writes/s.
//
// Environment knobs [defaults; --quick]: BENCH_DELAY_US [250] (0: Redis on loopback, no relay),
// BENCH_CPU_PROFILE (a directory: every server process of the latency runs is CPU-profiled over
// each measured period, bench/servers/profile-hook.mjs; read them with
// `node bench/profile.mjs --summarize DIR`), BENCH_PINGS [2000; 500], BENCH_PACED_RATE req/s [400] (0: no paced runs), BENCH_PACED_DURATION
// s [4; 2], BENCH_ROUNDS [4; 1], BENCH_WORKERS [4],
// BENCH_MIXES one write per N requests, comma-separated [20,2,1; 20,1], BENCH_REFERENCE [1; 0]
// (0: no ReplicatedStore-without-Redis runs), BENCH_DURATION s [4; 2], BENCH_WARMUP s [1],
// BENCH_CONNECTIONS [32], BENCH_SESSIONS_PER_CONN [8], BENCH_SMALL [1; 0] (0: no 1-worker
// reference runs), BENCH_SMALL_CONNECTIONS [8], BENCH_CLUSTERS [3], BENCH_LAT_WORKERS
// [2], BENCH_RATES writes/s [100,250,500; 100,500], BENCH_LAT_DURATION s [6; 2],
// BENCH_LAT_WARMUP s [1],
// BENCH_LAT_SESSIONS per writer worker [16], BENCH_SESSION_BYTES [1024], BENCH_SEED
// [0x5e5510a5], BENCH_WRITE [1; 0] (0: bench/RESULTS.md left alone), BENCH_RESULTS_FILE
// [bench/RESULTS.md], BENCH_FOREIGN_MAX cores [0.2], BENCH_MAX_ATTEMPTS [2], BENCH_QUIET_WAIT s
// [30; 5]; BENCH_ONLY (trial runs: throughput or latency; prints the runs only), BENCH_STORES (trial
// runs: a comma-separated subset of redis, connect-redis, memory).
// Defaults take about 9 minutes on a quiet 2-core machine (4 rounds of 12 throughput runs and 3
// latency runs; more while other processes keep it busy and runs are repeated).

import { spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { pingRoundTrips } from './lib/ping.mjs';
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
  sleep,
} from './lib.mjs';
import { freePort, startRedis } from './servers/redis.mjs';
import {
  applyFigures,
  converge,
  fetchApplied,
  latencySessions,
  loadFigures,
  machineInfo,
  newLoadCounters,
  runLoad,
  runOpenLoop,
  runPaced,
  setupLoad,
  slotKeys,
  sumCheck,
} from './sessions-lib.mjs';

const QUICK = process.argv.includes('--quick');
const q = (full, quick) => (QUICK ? quick : full);

const ROUNDS = intEnv('BENCH_ROUNDS', q(4, 1));
const WORKERS = intEnv('BENCH_WORKERS', 4, 2);
const MIXES = lib.intListEnv('BENCH_MIXES', q('20,2,1', '20,1'));
const READ_CYCLE = MIXES.find((c) => c >= 10) ?? 20;
const REFERENCE = (process.env.BENCH_REFERENCE ?? q('1', '0')) !== '0';
const DURATION = intEnv('BENCH_DURATION', q(4, 2));
const WARMUP = intEnv('BENCH_WARMUP', 1, 0);
const CONNECTIONS = intEnv('BENCH_CONNECTIONS', 32);
const SESSIONS_PER_CONN = intEnv('BENCH_SESSIONS_PER_CONN', 8);
// The not-over-committed reference: read-mostly on 1 worker, SMALL_CONNECTIONS connections.
const SMALL = (process.env.BENCH_SMALL ?? q('1', '0')) !== '0';
const SMALL_CONNECTIONS = intEnv('BENCH_SMALL_CONNECTIONS', 8);
const CLUSTERS = intEnv('BENCH_CLUSTERS', 3, 2);
const LAT_WORKERS = intEnv('BENCH_LAT_WORKERS', 2, 1);
const RATES = lib.intListEnv('BENCH_RATES', q('100,250,500', '100,500'));
const LAT_DURATION = intEnv('BENCH_LAT_DURATION', q(6, 2));
const LAT_WARMUP = intEnv('BENCH_LAT_WARMUP', 1, 0);
const LAT_SESSIONS = intEnv('BENCH_LAT_SESSIONS', 16);
const SESSION_BYTES = intEnv('BENCH_SESSION_BYTES', 1024, 200);
const SEED = intEnv('BENCH_SEED', 0x5e5510a5, 0);
const MAX_ATTEMPTS = intEnv('BENCH_MAX_ATTEMPTS', 2);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', q(30, 5), 0);
const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.2);
// Redis at a distance: a relay (bench/servers/delay-relay.mjs) holding every chunk DELAY_US µs
// each way in front of every redis-server the servers use; 0: none (loopback).
const DELAY_US = intEnv('BENCH_DELAY_US', 250, 0);
const PINGS = intEnv('BENCH_PINGS', q(2000, 500));
// After each read-mostly throughput run, the same mix paced at PACED_RATE req/s (open loop,
// below saturation) for PACED_DURATION s: response times without a queue; 0: none.
const PACED_RATE = intEnv('BENCH_PACED_RATE', 400, 0);
const PACED_DURATION = intEnv('BENCH_PACED_DURATION', q(4, 2));
const WRITE = (process.env.BENCH_WRITE ?? q('1', '0')) !== '0';
const ONLY = process.env.BENCH_ONLY || null;
if (ONLY && !['throughput', 'latency'].includes(ONLY))
  throw new Error('BENCH_ONLY: throughput or latency');
if (SEED > 0xffffffff) throw new Error('BENCH_SEED: an unsigned 32-bit integer');
// Issue 18's targets, with Redis at a distance: read-mostly req/s (Redis transport /
// connect-redis) at least TARGET_RATIO, read-mostly p50 at most TARGET_P50_RATIO of
// connect-redis's, cross-cluster write-to-visible p99 at most TARGET_P99_MS at TARGET_RATE
// writes/s.
const TARGET_RATIO = 1.2;
const TARGET_P50_RATIO = 0.5;
const TARGET_P99_MS = 10;
const TARGET_RATE = 500;
const HISTORY = 4;
// Settings of lib.measureQuietlyByCpu.
const QUIET = { maxAttempts: MAX_ATTEMPTS, quietWaitS: QUIET_WAIT_S, foreignMax: FOREIGN_MAX };

// The servers read these (spawned with this process's environment).
process.env.SESSIONS_SEED = String(SEED);
process.env.SESSION_BYTES = String(SESSION_BYTES);

const STORES = [
  {
    id: 'redis',
    label: 'ReplicatedStore + Redis transport',
    file: 'redis-sticky-mesh.mjs',
    redis: true,
  },
  { id: 'connect-redis', label: 'connect-redis', file: 'redis-connect-redis.mjs', redis: true },
  ...(REFERENCE
    ? [
        {
          id: 'memory',
          label: 'ReplicatedStore without Redis (reference)',
          file: 'sessions-sticky-mesh.mjs',
          redis: false,
        },
      ]
    : []),
];
// BENCH_STORES (trial runs): a comma-separated subset of the store ids.
if (process.env.BENCH_STORES) {
  const keep = process.env.BENCH_STORES.split(',').map((x) => x.trim());
  for (let i = STORES.length - 1; i >= 0; i--)
    if (!keep.includes(STORES[i].id)) STORES.splice(i, 1);
}
const KEY_PREFIX = 'sticky-mesh:sticky-mesh:s:'; // the transport's default prefix + cluster
const CHANNEL = 'sticky-mesh:sticky-mesh:changes';

let Redis; // ioredis, loaded in main()

// ---------------------------------------------------------------------------------------------
// Process groups the bench started: all killed on exit, error and signals.

const groups = new Set();
function killAll() {
  for (const g of groups) {
    try {
      process.kill(-g, 'SIGKILL');
    } catch {}
  }
}
process.on('exit', killAll);

async function killGroup(pgid, child) {
  await lib.killGroup(pgid, child);
  groups.delete(pgid);
}

// A fresh redis-server in its own process group: { port, pid, version, child }.
function startRedisServer() {
  return startRedis({ detached: true, onSpawn: (child) => groups.add(child.pid) });
}

// A delay relay (bench/servers/delay-relay.mjs) in front of the redis-server on targetPort, in
// its own process group: { port, pid, child, stats() }, stats() its STATS line (SIGUSR2: what it
// relayed and how long it held the chunks since the last one). null when DELAY_US is 0.
function startRelay(targetPort) {
  if (!DELAY_US) return Promise.resolve(null);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(lib.benchDir, 'servers', 'delay-relay.mjs')], {
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, TARGET_PORT: String(targetPort), DELAY_US: String(DELAY_US) },
    });
    groups.add(child.pid);
    let out = '';
    let err = '';
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      err += d;
    });
    const timer = setTimeout(() => child.kill('SIGKILL'), 10_000);
    child.on('exit', (code, signal) => {
      clearTimeout(timer);
      reject(new Error(`delay relay exited (${code ?? signal}) before READY: ${err}`));
    });
    child.stdout.on('data', (d) => {
      out += d;
      const m = /^READY pid=\d+ port=(\d+)/m.exec(out);
      if (!m) return;
      clearTimeout(timer);
      const stats = async () => {
        const before = (out.match(/^STATS /gm) ?? []).length;
        process.kill(child.pid, 'SIGUSR2');
        for (let i = 0; i < 100; i++) {
          const lines = out.match(/^STATS .*$/gm) ?? [];
          if (lines.length > before) return JSON.parse(lines[lines.length - 1].slice(6));
          await sleep(20);
        }
        return null;
      };
      resolve({ port: Number(m[1]), pid: child.pid, child, stats });
    });
  });
}

// A redis-server and, with DELAY_US, a relay in front of it: { redis, relay, port } (port: the
// one the servers use, the relay's when there is one).
async function startRedisAtDistance() {
  const redis = await startRedisServer();
  try {
    const relay = await startRelay(redis.port);
    return { redis, relay, port: relay ? relay.port : redis.port };
  } catch (err) {
    await killGroup(redis.pid, redis.child);
    throw err;
  }
}

async function stopRedisAtDistance(r) {
  if (r.relay) await killGroup(r.relay.pid, r.relay.child);
  await killGroup(r.redis.pid, r.redis.child);
}

// The delay the relay really adds: Redis PING round trips (one at a time, one connection),
// directly and through the relay, alternating in 4 blocks of each, on a fresh redis-server.
async function measureRelay() {
  const at = await startRedisAtDistance();
  try {
    const direct = [];
    const relayed = [];
    const per = Math.ceil(PINGS / 4);
    await lib.waitQuiet(QUIET_WAIT_S, FOREIGN_MAX);
    const a = snap();
    for (let i = 0; i < 4; i++) {
      direct.push(...(await pingRoundTrips(at.redis.port, per)));
      relayed.push(...(await pingRoundTrips(at.port, per)));
    }
    const b = snap();
    const held = await at.relay.stats();
    const cpu = cpuSplit(a, b, [], at.redis.pid);
    return { direct: dist(direct), relayed: dist(relayed), held, foreign: cpu.foreign };
  } finally {
    await stopRedisAtDistance(at);
  }
}

async function startServer(file, workers, port, redisPort) {
  if (redisPort) process.env.REDIS_PORT = String(redisPort);
  else delete process.env.REDIS_PORT;
  await lib.waitPortFree(port, ['127.0.0.1']);
  const srv = await lib.startServer({ file, name: file, workers, port });
  groups.add(srv.pgid);
  return srv;
}

async function stopServer(srv) {
  await killGroup(srv.pgid, srv.child);
}

function redisClient(port) {
  const c = new Redis({ host: '127.0.0.1', port, maxRetriesPerRequest: 1, lazyConnect: false });
  c.on('error', () => {});
  return c;
}

// ---------------------------------------------------------------------------------------------
// CPU accounting per process (/proc): this process, each server group (primary = the group
// leader, workers = the rest), redis-server; foreign = all busy time minus those.

function snap() {
  const busy = lib.busyTicks();
  const procs = new Map(); // pid -> { pgrp, cpu }
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = lib.procStat(entry);
    if (st) procs.set(Number(entry), st);
  }
  return { t: nowNs(), busy, procs };
}

// Cores between two snapshots: client, redis, per cluster { primary, workers: [..] }, machine
// (all busy), foreign.
function cpuSplit(a, b, clusterPgids, redisPid, relayPid = 0) {
  const secs = Number(b.t - a.t) / 1e9;
  const cores = (ticks) => ticks / lib.CLK_TCK / secs;
  const d = (pid) => {
    const x = b.procs.get(pid);
    return x ? x.cpu - (a.procs.get(pid)?.cpu ?? 0) : 0;
  };
  const clusters = clusterPgids.map((pgid) => ({ pgid, primary: 0, workers: [] }));
  let ours = 0;
  for (const [pid, p] of b.procs) {
    const k = clusterPgids.indexOf(p.pgrp);
    if (k === -1) continue;
    const c = cores(d(pid));
    ours += c;
    if (pid === p.pgrp) clusters[k].primary = c;
    else clusters[k].workers.push(c);
  }
  const client = cores(d(process.pid));
  const redis = redisPid ? cores(d(redisPid)) : 0;
  // The relay stands for the network: its CPU is reported on its own, not as the server's.
  const relay = relayPid ? cores(d(relayPid)) : 0;
  ours += client + redis + relay;
  const machine = cores(b.busy - a.busy);
  for (const c of clusters) c.workers.sort((x, y) => y - x);
  return { client, redis, relay, clusters, machine, foreign: Math.max(0, machine - ours) };
}

// ---------------------------------------------------------------------------------------------
// Client addresses per slot (the session app's client side: bench/sessions-lib.mjs), Redis.

// keys[s]: X-Forwarded-For addresses (198.18.x.y) that the balancer routes to slot s.
async function buildKeys(workers, need) {
  const { rendezvous } = await import(pathToFileURL(path.join(lib.rootDir, 'dist', 'hash.js')));
  return slotKeys(rendezvous(SEED, workers), workers, need);
}

// INFO commandstats as { cmd: { calls, usec } }.
async function commandStats(client) {
  const out = {};
  const text = await client.info('commandstats');
  for (const m of text.matchAll(/^cmdstat_([^:]+):calls=(\d+),usec=(\d+)/gm))
    out[m[1]] = { calls: Number(m[2]), usec: Number(m[3]) };
  return out;
}
function statsDelta(a, b) {
  const out = {};
  for (const [k, v] of Object.entries(b)) {
    const calls = v.calls - (a[k]?.calls ?? 0);
    if (calls > 0 && k !== 'info') out[k] = { calls, usec: v.usec - (a[k]?.usec ?? 0) };
  }
  return out;
}

// The transport's counters: SIGUSR2 to the primary, which prints a STATS line.
async function transportStats(srv) {
  const before = (srv.stdout().match(/^STATS /gm) ?? []).length;
  process.kill(srv.pgid, 'SIGUSR2');
  for (let i = 0; i < 100; i++) {
    const lines = srv.stdout().match(/^STATS .*$/gm) ?? [];
    if (lines.length > before) return JSON.parse(lines[lines.length - 1].slice(6));
    await sleep(20);
  }
  return null;
}

// Sessions in Redis as the transport wrote them: count and the sum of their counters n.
async function redisRecords(client) {
  let cursor = '0';
  let count = 0;
  let sum = 0;
  do {
    const [next, keys] = await client.scan(cursor, 'MATCH', `${KEY_PREFIX}*`, 'COUNT', 1000);
    cursor = next;
    if (!keys.length) continue;
    const pipe = client.pipeline();
    for (const k of keys) pipe.hget(k, 'd');
    for (const [err, d] of (await pipe.exec()) ?? []) {
      if (err || typeof d !== 'string') continue;
      count++;
      sum += Number(JSON.parse(d).n) || 0;
    }
  } while (cursor !== '0');
  return { count, sum };
}

// ---------------------------------------------------------------------------------------------
// 1. throughput (autocannon)

async function throughputOnce(store, cycle, round, cfg) {
  const { keys } = cfg;
  const port = await freePort();
  const at = store.redis ? await startRedisAtDistance() : null;
  const redis = at?.redis;
  let srv = null;
  // The bench's own client (INFO, the records check) talks to redis-server directly.
  const client = redis ? redisClient(redis.port) : null;
  try {
    srv = await startServer(store.file, cfg.workers, port, at?.port);
    await lib.probe(port, { headers: { 'x-forwarded-for': keys[0][0] } });
    const tLogin = Date.now();
    const ctx = await setupLoad(port, { ...cfg, sessionsPerConn: SESSIONS_PER_CONN });
    const tReady = Date.now();
    const counters = newLoadCounters();
    if (WARMUP > 0) await runLoad(ctx, cycle, WARMUP, counters);
    counters.active = true;
    const cs0 = client ? await commandStats(client) : null;
    await at?.relay?.stats(); // starts the relay's hold times afresh
    const a = snap();
    const tMeasure = Date.now();
    const r = await runLoad(ctx, cycle, DURATION, counters);
    const b = snap();
    const tEnd = Date.now();
    const cs1 = client ? await commandStats(client) : null;
    const relayHeld = (await at?.relay?.stats()) ?? null;
    counters.active = false;
    const cpu = cpuSplit(a, b, [srv.pgid], redis?.pid, at?.relay?.pid);
    // Requests in flight when autocannon stopped its clients may still land: let them.
    await sleep(300);
    let conv = await converge([{ port, keys }]);
    let redisRec;
    if (store.id === 'redis') {
      // Redis holds every write: its records agree with the workers' (up to 5 s; the workers'
      // digests are taken again each time, in case a straggling write landed meanwhile).
      const t0 = Date.now();
      for (;;) {
        const rec = await redisRecords(client);
        const agrees = rec.sum === conv.digests[0].sum && rec.count === conv.digests[0].sessions;
        redisRec = { ...rec, agrees, ms: Date.now() - t0 };
        if (agrees || !conv.converged || Date.now() - t0 > 5000) break;
        await sleep(50);
        conv = await converge([{ port, keys }]);
      }
    }
    const out = {
      kind: 'throughput',
      small: cfg.small,
      workers: cfg.workers,
      connections: cfg.connections,
      round,
      store: store.id,
      cycle,
      ...loadFigures(r, counters, conv),
      cpu,
      serverCpu: cpu.clusters[0].primary + cpu.clusters[0].workers.reduce((x, y) => x + y, 0),
      redisVersion: redis?.version,
      // s from the first login: sessions made, measured period started, ended.
      timing: [tReady - tLogin, tMeasure - tLogin, tEnd - tLogin].map((x) => x / 1000),
    };
    out.cpuMsPerReq = ((out.serverCpu + cpu.redis) * 1000) / out.rps;
    out.redisCpuMsPerReq = (cpu.redis * 1000) / out.rps;
    if (cs0) {
      const delta = statsDelta(cs0, cs1);
      const n = out.reads.n + out.writes.n;
      out.commands = Object.fromEntries(
        Object.entries(delta).map(([k, v]) => [
          k,
          { perReq: v.calls / n, usPerCall: v.usec / v.calls },
        ]),
      );
      out.redisCallsPerReq = Object.values(delta).reduce((x, v) => x + v.calls, 0) / n;
      out.redisUsecPerReq = Object.values(delta).reduce((x, v) => x + v.usec, 0) / n;
    }
    out.relayHeld = relayHeld;
    if (store.id === 'redis') {
      out.redisRecords = redisRec;
      out.transport = await transportStats(srv);
    }
    if (PACED_RATE && cycle === READ_CYCLE && !cfg.small) {
      const pa = snap();
      const pr = await runPaced(ctx, cycle, PACED_RATE, PACED_DURATION);
      const pb = snap();
      const pcpu = cpuSplit(pa, pb, [srv.pgid], redis?.pid, at?.relay?.pid);
      const n = pr.reads.length + pr.writes.length;
      const serverCores = pcpu.clusters[0].primary + sumW(pcpu.clusters[0]) + pcpu.redis;
      out.paced = {
        rate: pr.sent / pr.elapsed,
        all: dist([...pr.reads, ...pr.writes]),
        reads: dist(pr.reads),
        writes: dist(pr.writes),
        problems: pr.non2xx + pr.errors + pr.mismatches,
        cpuMsPerReq: (serverCores * 1000 * (Number(pb.t - pa.t) / 1e9)) / n,
        relayHeld: (await at?.relay?.stats()) ?? null,
        foreign: pcpu.foreign,
      };
    }
    const err = srv.stderr().trim();
    out.serverStderr = err ? err.split('\n').slice(0, 3).join(' | ') : '';
    return out;
  } finally {
    client?.disconnect();
    if (srv) await stopServer(srv);
    if (at) await stopRedisAtDistance(at);
  }
}

function measureThroughput(store, cycle, round, cfg) {
  return lib.measureQuietlyByCpu(QUIET, () => throughputOnce(store, cycle, round, cfg));
}

// ---------------------------------------------------------------------------------------------
// 2. cross-cluster latency

async function startLatencyClusters(keys) {
  const at = await startRedisAtDistance();
  const { redis } = at;
  const clusters = [];
  try {
    for (let k = 0; k < CLUSTERS; k++) {
      const port = await freePort();
      const srv = await startServer('redis-sticky-mesh.mjs', LAT_WORKERS, port, at.port);
      clusters.push({ port, srv });
      await lib.probe(port, { headers: { 'x-forwarded-for': keys[0][0] } });
    }
  } catch (err) {
    for (const c of clusters) await stopServer(c.srv);
    await stopRedisAtDistance(at);
    throw err;
  }
  // This process's own subscriber to the cluster's channel, directly on redis-server (not
  // through the relay): when each write was published.
  const sub = redisClient(redis.port);
  const published = new Map();
  let recording = false;
  sub.on('message', (_ch, message) => {
    if (!recording) return;
    const t = nowNs();
    const m = /\\"w\\":(\d+)/.exec(message);
    if (m) published.set(Number(m[1]), t);
  });
  await sub.subscribe(CHANNEL);
  const agents = keys.map(() => newAgent());
  const sessions = await latencySessions(clusters[0].port, keys, LAT_SESSIONS);
  return {
    at,
    redis,
    clusters,
    port: clusters[0].port, // the writer (sendWrite's target)
    sub,
    published,
    setRecording: (on) => {
      recording = on;
    },
    agents,
    sessions,
    keys,
    nextId: 1,
    k: 0,
  };
}

async function stopLatencyClusters(ctx) {
  ctx.sub.disconnect();
  for (const a of ctx.agents) a.destroy();
  for (const c of ctx.clusters) await stopServer(c.srv);
  await stopRedisAtDistance(ctx.at);
}

// Keep-alive, at most 16 sockets; a socket idle for 3 s is closed by the client (before the
// server's 5 s keep-alive timeout can close it under a request).
const newAgent = () => new http.Agent({ keepAlive: true, maxSockets: 16, timeout: 3000 });

// GET /applied of every worker of every cluster: applied[cluster][slot] = Map id -> ns.
async function collectApplied(ctx) {
  return Promise.all(
    ctx.clusters.map((c) => Promise.all(ctx.keys.map((k) => fetchApplied(c.port, k[0])))),
  );
}

async function latencyOnce(ctx, rate, round) {
  // Fresh keep-alive agents for every run: no socket left idle since an earlier run (the
  // server closes idle ones after 5 s, and reusing one as it closes is an ECONNRESET).
  for (const a of ctx.agents) a.destroy();
  ctx.agents = ctx.keys.map(() => newAgent());
  if (LAT_WARMUP > 0) await runOpenLoop(ctx, LAT_WARMUP, rate);
  await sleep(200);
  await collectApplied(ctx); // drop the warm-up's records
  ctx.published.clear();
  ctx.setRecording(true);
  const pgids = ctx.clusters.map((c) => c.srv.pgid);
  await ctx.at.relay?.stats(); // starts the relay's hold times afresh
  // BENCH_CPU_PROFILE=DIR (bench/servers/profile-hook.mjs): every server process profiles the
  // measured period (bench/profile.mjs --summarize DIR reads them).
  const profile = () => {
    if (process.env.BENCH_CPU_PROFILE)
      for (const c of ctx.clusters) process.kill(-c.srv.pgid, 'SIGWINCH');
  };
  profile();
  const a = snap();
  const rec = await runOpenLoop(ctx, LAT_DURATION, rate);
  const b = snap();
  profile();
  const relayHeld = (await ctx.at.relay?.stats()) ?? null;
  await sleep(500);
  ctx.setRecording(false);
  const applied = await collectApplied(ctx);
  const conv = await converge(ctx.clusters.map((c) => ({ port: c.port, keys: ctx.keys })));
  const stats = await Promise.all(ctx.clusters.map((c) => transportStats(c.srv)));
  const writes = [...rec.writes.values()];
  const ok = writes.filter((w) => w.ok);
  const inCluster = [];
  const pub = [];
  let missingLocal = 0;
  for (const w of ok) {
    const tp = ctx.published.get(w.id);
    if (tp !== undefined) pub.push(ms(tp - w.t0));
    for (let s = 0; s < LAT_WORKERS; s++) {
      if (s === w.slot) continue;
      const t = applied[0][s].get(w.id);
      if (t === undefined) missingLocal++;
      else inCluster.push(ms(t - w.t0));
    }
  }
  // Every worker of every other cluster applies each write.
  const remote = applyFigures(ok, (w) =>
    applied.slice(1).flatMap((cluster) => cluster.map((slot) => slot.get(w.id))),
  );
  const cpu = cpuSplit(a, b, pgids, ctx.redis.pid, ctx.at.relay?.pid);
  return {
    kind: 'latency',
    relayHeld,
    round,
    rate,
    actualRate: writes.length / rec.elapsed,
    writesSent: writes.length,
    writesOk: ok.length,
    remote: remote.each,
    remoteAll: remote.all,
    fromHandler: remote.fromHandler,
    inCluster: dist(inCluster),
    published: dist(pub),
    publishedMissing: ok.length - pub.length,
    ack: dist(ok.map((w) => ms(w.ack - w.t0))),
    measured: remote.measured,
    missing: remote.missing,
    missingLocal,
    allBeforeAck: remote.allBeforeAck,
    errors: rec.errors,
    non2xx: rec.non2xx,
    mismatches: rec.mismatches,
    connErrors: Object.fromEntries(rec.errorCodes),
    converged: conv.converged,
    convergeMs: conv.ms,
    transport: stats,
    cpu,
    serverStderr: ctx.clusters
      .map((c) => c.srv.stderr().trim())
      .filter(Boolean)
      .map((e) => e.split('\n').slice(0, 2).join(' | '))
      .join(' || '),
  };
}

function measureLatency(ctx, rate, round) {
  return lib.measureQuietlyByCpu(QUIET, () => latencyOnce(ctx, rate, round));
}

// ---------------------------------------------------------------------------------------------
// Report.

const mixName = (c) =>
  c === 1
    ? 'write-only'
    : c >= 10
      ? `read-mostly (1 write in ${c})`
      : `write-heavy (1 write in ${c})`;
const mixShort = (c) => (c === 1 ? 'write-only' : `1 in ${c}`);

function problems(r) {
  const parts = [];
  if (r.errors) parts.push(`errors ${r.errors}`);
  if (r.timeouts) parts.push(`timeouts ${r.timeouts}`);
  if (r.non2xx) parts.push(`non-2xx ${r.non2xx}`);
  if (r.mismatches) parts.push(`wrong slot ${r.mismatches}`);
  if (r.missing) parts.push(`remote apply records missing ${r.missing}`);
  if (r.missingLocal) parts.push(`in-cluster apply records missing ${r.missingLocal}`);
  if (r.publishedMissing) parts.push(`not seen on the channel ${r.publishedMissing}`);
  const ce = Object.entries(r.connErrors ?? {});
  if (ce.length) parts.push(`conn errors: ${ce.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  if (r.converged === false) parts.push('NOT CONVERGED');
  if (r.redisRecords && !r.redisRecords.agrees) parts.push('REDIS DISAGREES');
  for (const t of [].concat(r.transport ?? [])) {
    const x = t?.redis;
    if (!x) continue;
    if (x.errors) parts.push(`transport errors ${x.errors}`);
    if (x.dropped) parts.push(`transport dropped ${x.dropped}`);
    if (x.queued) parts.push(`transport queued ${x.queued}`);
    if (x.malformed) parts.push(`transport malformed ${x.malformed}`);
  }
  return parts.length ? parts.join('; ') : '0';
}

const sumW = (c) => c.workers.reduce((x, y) => x + y, 0);
const fmtCpu = (cpu) =>
  `${f2(cpu.client)} / ${f2(cpu.clusters[0].primary)} / ${f2(sumW(cpu.clusters[0]))} (max ${f2(cpu.clusters[0].workers[0])}) / ${cpu.redis ? f2(cpu.redis) : '-'} / ${f2(cpu.machine)}`;
const fmtCmds = (r) =>
  r.commands
    ? Object.entries(r.commands)
        .sort((a, b) => b[1].perReq - a[1].perReq)
        .filter(([, v]) => v.perReq >= 0.001)
        .map(([k, v]) => `${k} ${f3(v.perReq)} (${f1(v.usPerCall)} µs)`)
        .join(', ') || 'none'
    : '-';

function summarize(results) {
  const tp = results.filter((r) => r.kind === 'throughput' && !r.small);
  const small = results.filter((r) => r.kind === 'throughput' && r.small);
  const smallOf = (s) => small.filter((r) => r.store === s);
  const of = (cycle, s) => tp.filter((r) => r.cycle === cycle && r.store === s);
  const med = (cycle, s, fn) => median(of(cycle, s).map(fn).filter(Number.isFinite));
  const perRound = (cycle, s1, s2, fn) => {
    const out = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const a = of(cycle, s1).find((r) => r.round === round);
      const b = of(cycle, s2).find((r) => r.round === round);
      if (a && b) out.push(fn(a) / fn(b));
    }
    return out;
  };
  const lat = results.filter((r) => r.kind === 'latency');
  const latOf = (rate) => lat.filter((r) => r.rate === rate);
  return { tp, of, med, perRound, lat, latOf, small, smallOf };
}

function historyEntry(results, startedAt, commit) {
  const S = summarize(results);
  const h = {
    date: startedAt.toISOString(),
    commit,
    delayUs: DELAY_US,
    rounds: ROUNDS,
    mixes: {},
    latency: {},
  };
  for (const c of MIXES)
    h.mixes[c] = {
      ratio: S.perRound(c, 'redis', 'connect-redis', (r) => r.rps),
      redis: S.of(c, 'redis').map((r) => Math.round(r.rps)),
      cr: S.of(c, 'connect-redis').map((r) => Math.round(r.rps)),
    };
  if (S.small.length) {
    h.small = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const a = S.smallOf('redis').find((r) => r.round === round);
      const b = S.smallOf('connect-redis').find((r) => r.round === round);
      if (a && b) h.small.push(a.rps / b.rps);
    }
  }
  for (const rate of RATES)
    h.latency[rate] = {
      p50: S.latOf(rate).map((r) => +r.remote.p50.toFixed(3)),
      p99: S.latOf(rate).map((r) => +r.remote.p99.toFixed(3)),
    };
  return h;
}

function readHistory() {
  try {
    const doc = readFileSync(lib.resultsFile, 'utf8');
    const m = /<!-- redis-runs (\[.*?\]) -->/.exec(doc);
    return m ? JSON.parse(m[1]) : [];
  } catch {
    return [];
  }
}

function renderSection(results, info, startedAt, elapsedS, history, relayCal) {
  const S = summarize(results);
  const { of, med, perRound } = S;
  const L = [];
  const p = (...xs) => L.push(...xs);
  const ratioMed = (c, fn, s2 = 'connect-redis') => med(c, 'redis', fn) / med(c, s2, fn);
  const readC = MIXES.find((c) => c >= 10) ?? MIXES[0];
  const readRatio = ratioMed(readC, (r) => r.rps);
  const readRounds = perRound(readC, 'redis', 'connect-redis', (r) => r.rps);

  p('<!-- BEGIN redis (written by bench/redis.mjs; do not edit by hand) -->');
  p('## Redis transport (issues 6 and 18)', '');
  p(
    `Run: ${startedAt.toISOString()} (${elapsedS.toFixed(0)} s), \`node bench/redis.mjs\`, sticky-mesh commit ${info.commit}; sticky-mesh measured as built in dist/ (newest file ${info.distBuilt})${info.distChanged ? `; **dist/ was rebuilt during the run (newest file ${info.distChanged} at the end), so the sticky-mesh figures may mix two builds**` : ''}.`,
    '',
  );
  p(
    `Machine: ${info.cpus} CPUs (os.cpus), ${info.model}, ${info.memGiB} GiB; Node ${info.node}; ${info.os}; redis-server ${info.redisServer}; ioredis ${info.ioredis} (the transport's client), express ${info.express}, express-session ${info.expressSession}, connect-redis ${info.connectRedis}, redis (node client) ${info.redis}, autocannon ${info.autocannon}.`,
    '',
  );
  p('Method (details in the header of `bench/redis.mjs`):', '');
  p(
    `- ${DELAY_US ? `**Redis at a distance**: every server reaches its redis-server through a relay (\`bench/servers/delay-relay.mjs\`, its own process) that holds every chunk ${DELAY_US} µs in each direction, in order (this kernel has no netem); what it really adds is measured below. The relay stands for the network: its CPU is reported on its own, not counted as the server's. The bench's own Redis clients (INFO, the records check, the channel subscriber) go to redis-server directly. ` : 'Redis on loopback (no delay relay: BENCH_DELAY_US=0). '}One fresh redis-server per run (\`--save '' --appendonly no\`, loopback, its own process group, its CPU measured on its own). Every store behind the same express + express-session app (\`bench/servers/session-app.mjs\`, as in the session-store section: resave false, saveUninitialized false, cookie maxAge 1 h, sessions of about ${SESSION_BYTES} bytes of JSON) and the same balancer, proxy mode \`sticky({ num: ${WORKERS}, proxy: true, seed: ${SEED} })\`, ${WORKERS} workers: **ReplicatedStore + Redis transport** (\`bench/servers/redis-sticky-mesh.mjs\`: \`sticky({ ..., redis: 'redis://127.0.0.1:PORT' })\`, default options; the primary holds the Redis connections and writes every change through the transport's Lua script, the workers' stores are fed over IPC and read locally); **connect-redis** 9 with default options over one node-redis connection per worker to the same kind of redis-server (\`bench/servers/redis-connect-redis.mjs\`)${REFERENCE ? '; and, for reference, **ReplicatedStore without Redis** (`bench/servers/sessions-sticky-mesh.mjs`, hub and workers only)' : ''}. The bench picks each request's worker with X-Forwarded-For (the balancer's own hash); a response from another worker is counted ("wrong slot").`,
  );
  p(
    `- **Throughput**: autocannon, ${CONNECTIONS} keep-alive connections, pipelining 1, ${WARMUP} s warm-up + ${DURATION} s measured, each on a freshly started server and redis-server; connection i is a client of worker i mod ${WORKERS} with its own ${SESSIONS_PER_CONN} sessions (${fmtInt(CONNECTIONS * SESSIONS_PER_CONN)} in all). Workloads: ${MIXES.map(mixName).join(', ')}; a write is \`POST /write\` (a change: always a save), a read \`GET /me\` (the session loaded by the middleware and touched: connect-redis GET + EXPIRE; ReplicatedStore a local read, its touch skipped unless it moves the expiry by more than touchAfter = 10 s, which never happens within these runs, see caveats). ${ROUNDS} interleaved rounds, the stores' order rotating from round to round; figures are medians over rounds, per-round figures beside them. ${SMALL ? `Also, as a reference, the read-mostly workload on 1 worker with ${SMALL_CONNECTIONS} connections (the machine not over-committed). ` : ''}Server CPU = the primary, the workers and redis-server; Redis commands per request from INFO commandstats over the measured period (it counts the commands a Lua script runs as well: for the transport one EVALSHA per write plus the HGET, DEL, HSET, PEXPIREAT and PUBLISH inside it). After each run: all workers agree (digests), the write counters match the writes acknowledged, and for the transport the records in Redis agree with the workers (count and counters) and its counters (stats().redis) show no errors, queue or drops.`,
  );
  p(
    `- **Cross-cluster latency**: ${CLUSTERS} sticky clusters on this host (${LAT_WORKERS} workers each, each its own port, \`redis-sticky-mesh.mjs\`) sharing one redis-server with the same cluster name: ${CLUSTERS} "machines" of one deployment. Cluster 1 takes writes at ${RATES.map(fmtInt).join(' and ')} writes/s (open loop on a 1 ms timer, ${LAT_WARMUP} s warm-up not counted + ${LAT_DURATION} s measured, \`POST /write?w=ID\` to the worker that created the session, ${LAT_SESSIONS} sessions per worker, keep-alive). t0 = hrtime in the bench just before the request. Every worker of every cluster records when it applied each write (process.hrtime.bigint() on the diagnostics channel \`sticky-mesh:replicated\`, once the worker's replica applied the change; CLOCK_MONOTONIC, one clock for all processes), so *remote* = apply time on a worker of another cluster - t0, for every measured write and each of the ${(CLUSTERS - 1) * LAT_WORKERS} remote workers; *all remote* = the last of them; *from the handler* = remote apply - the time the /write route ran on the writer (the replication path without the HTTP request's queueing). The bench also subscribes to the channel itself (*published*: the Lua script has written the record and published it). ${ROUNDS} round(s) on fresh clusters and redis-server, the rates in alternating order.`,
    '',
  );

  if (relayCal) {
    const hr = S.tp.filter((r) => r.relayHeld?.held);
    p(
      `- **The relay's delay, measured**: Redis PING round trips, one at a time over one connection, ${fmtInt(relayCal.direct.n)} directly and ${fmtInt(relayCal.relayed.n)} through the relay (alternating blocks, fresh redis-server, before the runs): direct p50 ${f3(relayCal.direct.p50)} ms / p99 ${f3(relayCal.direct.p99)} ms, through the relay p50 ${f3(relayCal.relayed.p50)} ms / p99 ${f3(relayCal.relayed.p99)} ms: **the relay adds ${f3(relayCal.relayed.p50 - relayCal.direct.p50)} ms per round trip at p50** (${f3((relayCal.relayed.p50 - relayCal.direct.p50) / 2)} ms each way: the ${DELAY_US} µs hold plus the relay's own two loopback hops and scheduling), ${f3(relayCal.relayed.p99 - relayCal.direct.p99)} ms at p99. Hold time per chunk in the relay (read to written) then: p50 ${f3(relayCal.held.p50 / 1000)} ms, p99 ${f3(relayCal.held.p99 / 1000)} ms; during the throughput runs (median over runs of each run's figure): p50 ${f3(median(hr.map((r) => r.relayHeld.p50 / 1000)))} ms, p99 ${f3(median(hr.map((r) => r.relayHeld.p99 / 1000)))} ms; relay CPU ${f2(median(hr.map((r) => r.cpu.relay)))} cores (median). Foreign load during the calibration ${f2(relayCal.foreign)} cores.`,
    );
  }
  if (PACED_RATE)
    p(
      `- **Paced read-mostly**: after each ${mixName(readC)} throughput run, on the same server and sessions, the same mix at a fixed ${fmtInt(PACED_RATE)} req/s for ${PACED_DURATION} s (open loop on a 1 ms timer, each request to its session's worker over a keep-alive agent of at most 16 sockets): below saturation, so the response times are what a request costs rather than a queue. p50 / p99 from t0 (just before the request) to the response's last byte.`,
    );
  p('');

  // Targets.
  const pacedMed = (s, fn) =>
    median(
      S.of(readC, s)
        .filter((r) => r.paced)
        .map(fn),
    );
  const pacedP50 = pacedMed('redis', (r) => r.paced.all.p50);
  const pacedP50Cr = pacedMed('connect-redis', (r) => r.paced.all.p50);
  const closedP50 = ratioMed(readC, (r) => r.all.p50);
  const lat500 = S.latOf(TARGET_RATE);
  const p99At = median(lat500.map((r) => r.remote.p99));
  const yes = (ok) => (ok ? 'yes' : '**no**');
  p(
    `### Targets (issue 18${DELAY_US ? `, Redis ${DELAY_US} µs away each way` : ', Redis on loopback'})`,
    '',
  );
  p('| target | result | met? |', '|---|---|---|');
  if (PACED_RATE)
    p(
      `| ${mixName(readC)} p50 latency, Redis transport <= ${TARGET_P50_RATIO}x connect-redis: paced at ${fmtInt(PACED_RATE)} req/s | ${fmtMs(pacedP50)} vs ${fmtMs(pacedP50Cr)} ms (medians over rounds): **${fmtRatio(pacedP50 / pacedP50Cr)}**; per round ${perRound(
        readC,
        'redis',
        'connect-redis',
        (r) => r.paced?.all.p50,
      )
        .map(fmtRatio)
        .join(
          ', ',
        )}; p99 ${fmtMs(pacedMed('redis', (r) => r.paced.all.p99))} vs ${fmtMs(pacedMed('connect-redis', (r) => r.paced.all.p99))} ms | ${yes(pacedP50 / pacedP50Cr <= TARGET_P50_RATIO)} |`,
    );
  p(
    `| ${mixName(readC)} p50 latency, Redis transport <= ${TARGET_P50_RATIO}x connect-redis: closed loop, ${CONNECTIONS} connections (the machine saturated: mostly queueing) | ${fmtMs(med(readC, 'redis', (r) => r.all.p50))} vs ${fmtMs(med(readC, 'connect-redis', (r) => r.all.p50))} ms: **${fmtRatio(closedP50)}**; per round ${perRound(
      readC,
      'redis',
      'connect-redis',
      (r) => r.all.p50,
    )
      .map(fmtRatio)
      .join(', ')} | ${yes(closedP50 <= TARGET_P50_RATIO)} |`,
  );
  p(
    `| ${mixName(readC)}: req/s with the Redis transport >= ${TARGET_RATIO}x connect-redis (same app, redis-server, ${WORKERS} workers) | ${fmtInt(med(readC, 'redis', (r) => r.rps))} vs ${fmtInt(med(readC, 'connect-redis', (r) => r.rps))} req/s (medians): **${fmtRatio(readRatio)}**; per round ${readRounds.map(fmtRatio).join(', ')}, their median ${fmtRatio(median(readRounds))}; server CPU per request ${fmtRatio(ratioMed(readC, (r) => r.cpuMsPerReq))} | ${readRatio >= TARGET_RATIO ? 'yes' : '**no**'} |`,
  );
  for (const c of MIXES.filter((x) => x !== readC)) {
    const r = ratioMed(c, (x) => x.rps);
    const rounds = perRound(c, 'redis', 'connect-redis', (x) => x.rps);
    p(
      `| ${mixName(c)} (no target; reported) | ${fmtInt(med(c, 'redis', (x) => x.rps))} vs ${fmtInt(med(c, 'connect-redis', (x) => x.rps))} req/s (medians): ${fmtRatio(r)}; per round ${rounds.map(fmtRatio).join(', ')}, their median ${fmtRatio(median(rounds))}; server CPU per request ${fmtRatio(ratioMed(c, (x) => x.cpuMsPerReq))} | - |`,
    );
  }
  if (lat500.length)
    p(
      `| cross-cluster write-to-visible p99 <= ${TARGET_P99_MS} ms at ${fmtInt(TARGET_RATE)} writes/s (a worker of another cluster, from t0) | p99 ${fmtMs(p99At)} ms (median over rounds; per round ${lat500.map((r) => fmtMs(r.remote.p99)).join(', ')}), p50 ${fmtMs(median(lat500.map((r) => r.remote.p50)))} ms; on every remote worker p99 ${fmtMs(median(lat500.map((r) => r.remoteAll.p99)))} ms | ${yes(p99At <= TARGET_P99_MS)} |`,
    );
  for (const rate of RATES.filter((x) => x !== TARGET_RATE)) {
    const rs = S.latOf(rate);
    p(
      `| cross-cluster write-to-visible at ${fmtInt(rate)} writes/s (no target; reported) | p50 ${fmtMs(median(rs.map((r) => r.remote.p50)))} ms, p99 ${fmtMs(median(rs.map((r) => r.remote.p99)))} ms, max ${fmtMs(Math.max(...rs.map((r) => r.remote.max)))} ms | - |`,
    );
  }
  p('');

  // Throughput.
  p('### Requests/s and response times', '');
  p(
    '| workload | store | median req/s | per round | p50 ms | p99 ms | per round p99 | server CPU ms/req (of it redis-server) | Redis commands per request (µs per call) |',
  );
  p('|---|---|---:|---|---:|---:|---|---:|---|');
  for (const c of MIXES)
    for (const s of STORES) {
      const rs = of(c, s.id);
      p(
        `| ${mixName(c)} | ${s.label} | ${fmtInt(med(c, s.id, (r) => r.rps))} | ${rs.map((r) => fmtInt(r.rps)).join(', ')} | ${fmtMs(med(c, s.id, (r) => r.all.p50))} | ${fmtMs(med(c, s.id, (r) => r.all.p99))} | ${rs.map((r) => fmtMs(r.all.p99)).join(', ')} | ${f2(med(c, s.id, (r) => r.cpuMsPerReq))} (${f3(med(c, s.id, (r) => r.redisCpuMsPerReq))}) | ${s.redis ? `${f2(med(c, s.id, (r) => r.redisCallsPerReq))}: ${fmtCmds(rs[0] ?? {})}` : '-'} |`,
      );
    }
  p('');
  p('By request kind (medians over rounds; ms):', '');
  p('| workload | store | reads/s | read p50 | read p99 | writes/s | write p50 | write p99 |');
  p('|---|---|---:|---:|---:|---:|---:|---:|');
  for (const c of MIXES)
    for (const s of STORES)
      p(
        `| ${mixShort(c)} | ${s.label} | ${fmtInt(med(c, s.id, (r) => r.readsPerS))} | ${fmtMs(med(c, s.id, (r) => r.reads.p50))} | ${fmtMs(med(c, s.id, (r) => r.reads.p99))} | ${fmtInt(med(c, s.id, (r) => r.writesPerS))} | ${fmtMs(med(c, s.id, (r) => r.writes.p50))} | ${fmtMs(med(c, s.id, (r) => r.writes.p99))} |`,
      );
  p('');
  p(
    'Ratios, Redis transport / connect-redis (ratio of medians; per round beside it, same round, seconds apart):',
    '',
  );
  p(
    '| workload | req/s | per round | p99 | per round | server CPU per request |',
    '|---|---:|---|---:|---|---:|',
  );
  for (const c of MIXES)
    p(
      `| ${mixName(c)} | ${fmtRatio(ratioMed(c, (r) => r.rps))} | ${perRound(
        c,
        'redis',
        'connect-redis',
        (r) => r.rps,
      )
        .map(fmtRatio)
        .join(', ')} | ${fmtRatio(ratioMed(c, (r) => r.all.p99))} | ${perRound(
        c,
        'redis',
        'connect-redis',
        (r) => r.all.p99,
      )
        .map(fmtRatio)
        .join(', ')} | ${fmtRatio(ratioMed(c, (r) => r.cpuMsPerReq))} |`,
    );
  if (REFERENCE) {
    p('');
    p(
      'Redis transport / ReplicatedStore without Redis (what the transport costs in one cluster):',
      '',
    );
    p('| workload | req/s | per round | server CPU per request |', '|---|---:|---|---:|');
    for (const c of MIXES)
      p(
        `| ${mixName(c)} | ${fmtRatio(ratioMed(c, (r) => r.rps, 'memory'))} | ${perRound(
          c,
          'redis',
          'memory',
          (r) => r.rps,
        )
          .map(fmtRatio)
          .join(', ')} | ${fmtRatio(ratioMed(c, (r) => r.cpuMsPerReq, 'memory'))} |`,
      );
  }
  p('');

  // Not over-committed reference.
  if (S.small.length) {
    const sm = (s, fn) => median(S.smallOf(s).map(fn).filter(Number.isFinite));
    const smallRounds = (s1, s2, fn) => {
      const out = [];
      for (let round = 1; round <= ROUNDS; round++) {
        const a = S.smallOf(s1).find((r) => r.round === round);
        const b = S.smallOf(s2).find((r) => r.round === round);
        if (a && b) out.push(fn(a) / fn(b));
      }
      return out;
    };
    const wMs = (r) => (sumW(r.cpu.clusters[0]) * 1000) / r.rps;
    p('### Reference: the same read-mostly workload on 1 worker', '');
    p(
      `${mixName(READ_CYCLE)} with 1 worker and ${SMALL_CONNECTIONS} connections (${fmtInt(SMALL_CONNECTIONS * SESSIONS_PER_CONN)} sessions), otherwise as above: the machine is not over-committed (one worker process, the load generator, the primary and redis-server on ${info.cpus} cores), so the figures show what a request costs the worker itself. Medians over rounds.`,
      '',
    );
    p(
      '| store | req/s | per round | p50 ms | p99 ms | worker CPU ms per request | per round | server CPU ms/req (of it redis-server) | machine busy |',
    );
    p('|---|---:|---|---:|---:|---:|---|---:|---:|');
    for (const s of STORES) {
      const rs = S.smallOf(s.id);
      p(
        `| ${s.label} | ${fmtInt(sm(s.id, (r) => r.rps))} | ${rs.map((r) => fmtInt(r.rps)).join(', ')} | ${fmtMs(sm(s.id, (r) => r.all.p50))} | ${fmtMs(sm(s.id, (r) => r.all.p99))} | ${f3(sm(s.id, wMs))} | ${rs.map((r) => f3(wMs(r))).join(', ')} | ${f2(sm(s.id, (r) => r.cpuMsPerReq))} (${f3(sm(s.id, (r) => r.redisCpuMsPerReq))}) | ${f2(sm(s.id, (r) => r.cpu.machine))} |`,
      );
    }
    const rr = smallRounds('redis', 'connect-redis', (r) => r.rps);
    const wr = smallRounds('redis', 'connect-redis', wMs);
    p('');
    p(
      `Redis transport / connect-redis on 1 worker: req/s ${fmtRatio(sm('redis', (r) => r.rps) / sm('connect-redis', (r) => r.rps))} (per round ${rr.map(fmtRatio).join(', ')}), worker CPU per request ${fmtRatio(sm('redis', wMs) / sm('connect-redis', wMs))} (per round ${wr.map(fmtRatio).join(', ')}).`,
      '',
    );
  }

  // Where the CPU goes.
  p('### Where the CPU goes (throughput runs)', '');
  p(
    `Cores over the measured period, medians over rounds: the load generator (this bench process), the primary, the ${WORKERS} workers together and the busiest one, redis-server, and the whole machine's busy time (of ${info.cpus}).`,
    '',
  );
  p(
    '| workload | store | client | primary | workers (busiest) | redis-server | machine busy | workers ms per request | primary ms per write |',
  );
  p('|---|---|---:|---:|---:|---:|---:|---:|---:|');
  for (const c of MIXES)
    for (const s of STORES)
      p(
        `| ${mixShort(c)} | ${s.label} | ${f2(med(c, s.id, (r) => r.cpu.client))} | ${f2(med(c, s.id, (r) => r.cpu.clusters[0].primary))} | ${f2(med(c, s.id, (r) => sumW(r.cpu.clusters[0])))} (${f2(med(c, s.id, (r) => r.cpu.clusters[0].workers[0]))}) | ${s.redis ? f2(med(c, s.id, (r) => r.cpu.redis)) : '-'} | ${f2(med(c, s.id, (r) => r.cpu.machine))} | ${f2(med(c, s.id, (r) => (sumW(r.cpu.clusters[0]) * 1000) / r.rps))} | ${f2(med(c, s.id, (r) => (r.cpu.clusters[0].primary * 1000) / r.writesPerS))} |`,
      );
  p('');

  // Latency.
  p('### Cross-cluster write-to-visible latency', '');
  p(
    `${CLUSTERS} clusters x ${LAT_WORKERS} workers on one redis-server; cluster 1 writes. Per round: p50 / p99 / max in ms, and samples.`,
    '',
  );
  p(
    '| writes/s | round | what | p50 | p99 | max | samples |',
    '|---:|---:|---|---:|---:|---:|---:|',
  );
  for (const rate of RATES)
    for (const r of S.latOf(rate)) {
      const row = (what, d, n = d.n) =>
        p(
          `| ${fmtInt(rate)} | ${r.round} | ${what} | ${fmtMs(d.p50)} | ${fmtMs(d.p99)} | ${fmtMs(d.max)} | ${fmtInt(n)} |`,
        );
      row('**remote: applied on a worker of another cluster, from t0**', r.remote);
      row('all remote: applied on every worker of every other cluster, from t0', r.remoteAll);
      row("remote, from the writer's handler", r.fromHandler);
      row('published: message on the Redis channel (bench subscriber), from t0', r.published);
      if (LAT_WORKERS > 1)
        row('in-cluster: applied on the other workers of cluster 1, from t0', r.inCluster);
      row("writer's response, from t0", r.ack);
    }
  p('');
  p(
    "| writes/s | round | writes sent/s | visible on every remote worker before the writer's response | problems | converged | CPU cores: client / primaries / workers / redis-server / machine | foreign |",
  );
  p('|---:|---:|---:|---:|---|---|---|---:|');
  for (const rate of RATES)
    for (const r of S.latOf(rate))
      p(
        `| ${fmtInt(rate)} | ${r.round} | ${fmtInt(r.actualRate)} | ${pctOf(r.allBeforeAck, r.measured)} | ${problems(r)} | ${r.converged ? `yes (${r.convergeMs} ms)` : '**no**'} | ${f2(r.cpu.client)} / ${r.cpu.clusters.map((c) => f2(c.primary)).join(', ')} / ${r.cpu.clusters.map((c) => f2(sumW(c))).join(', ')} / ${f2(r.cpu.redis)} / ${f2(r.cpu.machine)} | ${f2(r.cpu.foreign)} |`,
      );
  p('');

  // Raw.
  p('### Per-run raw figures (throughput)', '');
  p(
    '| round | workload | store | req/s | p50 / p99 ms | problems | checks | CPU cores: client / primary / workers (busiest) / redis-server / machine | foreign | attempts |',
  );
  p('|---:|---|---|---:|---|---|---|---|---:|---:|');
  for (const r of [...S.tp, ...S.small])
    p(
      `| ${r.round} | ${mixShort(r.cycle)}${r.small ? `, ${r.workers} worker, ${r.connections} connections` : ''} | ${r.store} | ${fmtInt(r.rps)} | ${fmtMs(r.all.p50)} / ${fmtMs(r.all.p99)} | ${problems(r)} | ${r.converged ? 'converged' : '**not converged**'}; ${sumCheck(r)}${r.redisRecords ? `; Redis ${fmtInt(r.redisRecords.count)} records, sum n ${fmtInt(r.redisRecords.sum)}${r.redisRecords.agrees ? '' : ' **disagrees**'}; transport written ${fmtInt(r.transport?.redis?.written)}, stale ${fmtInt(r.transport?.redis?.stale)}` : ''} | ${fmtCpu(r.cpu)} | ${f2(r.cpu.foreign)} | ${r.attempts} |`,
    );
  p('');

  // History.
  const runs = [historyEntry(results, startedAt, info.commit), ...history].slice(0, HISTORY + 1);
  p('### Full runs (this one first)', '');
  p(
    `| run | commit | Redis delay each way | ${MIXES.map((c) => `${mixShort(c)}: ratio per round`).join(' | ')} | 1 worker, ${mixShort(READ_CYCLE)}: ratio per round | ${RATES.map((r) => `${fmtInt(r)}/s remote p50 / p99 per round (ms)`).join(' | ')} |`,
  );
  p(`|---|---|---|${MIXES.map(() => '---|').join('')}---|${RATES.map(() => '---|').join('')}`);
  for (const h of runs)
    p(
      `| ${h.date} | ${h.commit} | ${h.delayUs ? `${h.delayUs} µs relay` : 'none (loopback)'} | ${MIXES.map((c) => (h.mixes[c] ? h.mixes[c].ratio.map(f2).join(', ') : 'n/a')).join(' | ')} | ${h.small ? h.small.map(f2).join(', ') : 'n/a'} | ${RATES.map((rate) => (h.latency[rate] ? h.latency[rate].p50.map((x, i) => `${fmtMs(x)} / ${fmtMs(h.latency[rate].p99[i])}`).join(', ') : 'n/a')).join(' | ')} |`,
    );
  p('');
  p(`<!-- redis-runs ${JSON.stringify(runs)} -->`, '');

  // Observations.
  p('### Observations (generated from the figures above)', '');
  for (const o of observations(results, S, readC, info)) p(`- ${o}`);
  for (const r of results.filter((x) => x.serverStderr))
    p(
      `- server stderr, round ${r.round} ${r.kind === 'latency' ? `latency ${r.rate}/s` : `${mixShort(r.cycle)} ${r.store}`}: \`${r.serverStderr.slice(0, 300)}\``,
    );
  p('');

  // Caveats.
  const foreign = results.map((r) => r.cpu.foreign);
  const disturbed = foreign.filter((x) => x > FOREIGN_MAX).length;
  p('### Caveats', '');
  p(
    `- One machine, ${info.cpus} cores, shared by everything: the load generator (this process: autocannon, the open-loop writer, the channel subscriber), the primary and ${WORKERS} workers (in the latency runs ${CLUSTERS} primaries and ${CLUSTERS * LAT_WORKERS} workers) and redis-server. The throughput runs keep the machine busy (see "machine busy"), so req/s is bounded by total CPU per request, not by any one process, and latencies include run-queue waits of an over-committed machine. Absolute figures do not transfer to other machines; the ratios compare runs made seconds apart under the same conditions. ${DELAY_US ? `Redis behind the delay relay (see Method): every connect-redis read pays two round trips through it (GET, EXPIRE), a transport read none; the transport's writes pay it in the primary, after the write is acknowledged.` : "Redis on loopback: a real network adds its round trip to every connect-redis request (two per read) and to none of the transport's reads."}`,
  );
  p(
    `- The ReplicatedStore runs never touch: express-session touches every read, but ReplicatedStore skips a touch that moves the expiry by less than touchAfter (10 s) and every session here was written less than 10 s before (created just before the run). In steady state each session read more than 10 s after its last write costs one touch (a Lua call and a PUBLISH, forwarded to every machine); connect-redis sends an EXPIRE on every read.`,
  );
  p(
    `- The "machines" of the latency runs are processes on one host sharing its cores: no network between them, but every cluster's processes compete for the same ${info.cpus} cores, so a write's replication path waits for whatever else is runnable.`,
  );
  p(
    `- Foreign load (processes other than the bench's), measured per run: median ${f2(median(foreign))}, max ${f2(Math.max(...foreign))} cores (runs above ${FOREIGN_MAX} cores were repeated, up to ${MAX_ATTEMPTS} attempts, keeping the least disturbed)${disturbed ? `; **${disturbed} of ${results.length} kept runs still had more than ${FOREIGN_MAX} cores of foreign load** (raw tables), so their figures are lower than a quiet machine would give` : ''}.`,
  );
  p('<!-- END redis -->');
  return L.join('\n');
}

function observations(results, S, readC, info) {
  const out = [];
  const { med } = S;
  const bad = results.filter((r) => problems(r) !== '0');
  if (bad.length)
    out.push(
      `Runs with problems: ${bad.map((r) => `round ${r.round} ${r.kind === 'latency' ? `latency ${r.rate}/s` : `${mixShort(r.cycle)}${r.small ? ' (1 worker)' : ''} ${r.store}`}: ${problems(r)}`).join('; ')}.`,
    );
  else
    out.push(
      'No errors, non-2xx answers, wrong-slot answers or missing apply records in any run; after every throughput run all workers agreed, the write counters matched the writes acknowledged and, for the transport, Redis held the same records; the transport reported no errors, queued or dropped writes.',
    );
  const sumBad = S.tp.filter((r) => !sumCheck(r).startsWith('ok'));
  if (sumBad.length)
    out.push(
      `**Write counters do not match the acknowledged writes** in ${sumBad.map((r) => `round ${r.round} ${mixShort(r.cycle)} ${r.store}`).join(', ')}.`,
    );
  const rr = med(readC, 'redis', (r) => r.rps);
  const cr = med(readC, 'connect-redis', (r) => r.rps);
  const ratio = rr / cr;
  out.push(
    `${mixName(readC)}: the Redis transport ${fmtInt(rr)} req/s, connect-redis ${fmtInt(cr)} req/s: ${fmtRatio(ratio)}, ${ratio >= TARGET_RATIO ? `the ${TARGET_RATIO}x target is met` : `**the ${TARGET_RATIO}x target is missed**`}. Redis commands per request: transport ${f3(med(readC, 'redis', (r) => r.redisCallsPerReq))}, connect-redis ${f3(med(readC, 'connect-redis', (r) => r.redisCallsPerReq))}; server CPU per request ${f2(med(readC, 'redis', (r) => r.cpuMsPerReq))} ms vs ${f2(med(readC, 'connect-redis', (r) => r.cpuMsPerReq))} ms, of it redis-server ${f3(med(readC, 'redis', (r) => r.redisCpuMsPerReq))} vs ${f3(med(readC, 'connect-redis', (r) => r.redisCpuMsPerReq))} ms.`,
  );
  if (S.small.length) {
    const wMs = (r) => (sumW(r.cpu.clusters[0]) * 1000) / r.rps;
    const sm = (s, fn) => median(S.smallOf(s).map(fn).filter(Number.isFinite));
    out.push(
      `The same ${mixName(readC)} workload on 1 worker (${SMALL_CONNECTIONS} connections, the machine not over-committed): the transport ${fmtInt(sm('redis', (r) => r.rps))} req/s, connect-redis ${fmtInt(sm('connect-redis', (r) => r.rps))} req/s: ${fmtRatio(sm('redis', (r) => r.rps) / sm('connect-redis', (r) => r.rps))}; worker CPU per request ${f3(sm('redis', wMs))} ms vs ${f3(sm('connect-redis', wMs))} ms (${fmtRatio(sm('redis', wMs) / sm('connect-redis', wMs))})${REFERENCE ? `, without Redis ${f3(sm('memory', wMs))} ms` : ''}. With ${WORKERS} workers and the load generator on ${info.cpus} cores the workers' CPU per request was ${f3(med(readC, 'redis', wMs))} ms (transport) and ${f3(med(readC, 'connect-redis', wMs))} ms (connect-redis): ${f1(med(readC, 'redis', wMs) / sm('redis', wMs))}x and ${f1(med(readC, 'connect-redis', wMs) / sm('connect-redis', wMs))}x the 1-worker figures.`,
    );
  }
  for (const c of MIXES) {
    const machine = med(c, 'redis', (r) => r.cpu.machine);
    const busiest = Math.max(
      ...STORES.flatMap((s) => [
        med(c, s.id, (r) => r.cpu.clusters[0].workers[0]),
        med(c, s.id, (r) => r.cpu.clusters[0].primary),
        s.redis ? med(c, s.id, (r) => r.cpu.redis) : 0,
        med(c, s.id, (r) => r.cpu.client),
      ]),
    );
    out.push(
      `${mixName(c)}: the machine was ${pctOf(machine, info.cpus)} busy in the transport's runs; the busiest single process used ${f2(busiest)} cores (median)${busiest < 0.9 ? ', so no one process saturated a core and the limit is the machine' : ': one process close to a full core'}; the ${WORKERS} workers together took most of the CPU (transport ${f2(med(c, 'redis', (r) => sumW(r.cpu.clusters[0])))}, connect-redis ${f2(med(c, 'connect-redis', (r) => sumW(r.cpu.clusters[0])))} cores), the transport's primary ${f2(med(c, 'redis', (r) => r.cpu.clusters[0].primary))} cores, redis-server ${f2(med(c, 'redis', (r) => r.cpu.redis))} (transport) and ${f2(med(c, 'connect-redis', (r) => r.cpu.redis))} (connect-redis).`,
    );
  }
  const cap = med(1, 'redis', (r) => r.writesPerS);
  for (const rate of RATES) {
    const rs = S.latOf(rate);
    if (!rs.length) continue;
    if (Number.isFinite(cap))
      out.push(
        `Cross-cluster at ${fmtInt(rate)} writes/s: ${pctOf(rate, cap)} of the most the transport did in one cluster of ${WORKERS} workers in the write-only runs (${fmtInt(cap)} writes/s, the whole machine busy); here ${CLUSTERS} clusters apply every write (the remote ones in their primary and every worker), and the machine was busy ${rs.map((r) => f2(r.cpu.machine)).join(', ')} of ${info.cpus} cores per round${rs.some((r) => r.cpu.machine > 0.75 * info.cpus) ? ': close enough to saturation that writes queue at the writer (see its response times) and the tail is mostly queueing' : ''}.`,
      );
    out.push(
      `Cross-cluster at ${fmtInt(rate)} writes/s: remote p50 ${rs.map((r) => fmtMs(r.remote.p50)).join(', ')} ms, p99 ${rs.map((r) => fmtMs(r.remote.p99)).join(', ')} ms per round; from the writer's handler p50 ${rs.map((r) => fmtMs(r.fromHandler.p50)).join(', ')} ms; the message was on the channel at p50 ${rs.map((r) => fmtMs(r.published.p50)).join(', ')} ms; the writer's response at p50 ${rs.map((r) => fmtMs(r.ack.p50)).join(', ')} ms (the write is acknowledged once the hub has it, before Redis does: visible on every remote worker before the response in ${rs.map((r) => pctOf(r.allBeforeAck, r.measured)).join(', ')} of writes).`,
    );
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function logThroughput(r) {
  console.log(
    `round ${r.round} ${`${mixShort(r.cycle)}${r.small ? '/1w' : ''}`.padEnd(10)} ${r.store.padEnd(13)} ${fmtInt(r.rps).padStart(6)} req/s  p50/p99 ${fmtMs(r.all.p50)}/${fmtMs(r.all.p99)} ms  cpu ${f2(r.cpuMsPerReq)} ms/req  redis cmds/req ${r.commands ? f3(r.redisCallsPerReq) : '-'}  cpu client/primary/workers(max)/redis/machine ${fmtCpu(r.cpu)}  foreign ${f2(r.cpu.foreign)}  ${sumCheck(r)}${r.redisRecords ? ` redis ${r.redisRecords.agrees ? 'agrees' : 'DISAGREES'}` : ''}  problems: ${problems(r)}${r.commands ? `\n    redis commands per request: ${fmtCmds(r)}` : ''}${r.transport ? `; transport written ${r.transport.redis.written}` : ''}; timing ${r.timing.join(' / ')} s${r.relayHeld ? `; relay held p50/p99 ${f3(r.relayHeld.p50 / 1000)}/${f3(r.relayHeld.p99 / 1000)} ms, relay cpu ${f2(r.cpu.relay)}` : ''}${r.paced ? `\n    paced ${fmtInt(r.paced.rate)} req/s: p50/p99 ${fmtMs(r.paced.all.p50)}/${fmtMs(r.paced.all.p99)} ms (reads ${fmtMs(r.paced.reads.p50)}/${fmtMs(r.paced.reads.p99)}, writes ${fmtMs(r.paced.writes.p50)}/${fmtMs(r.paced.writes.p99)}), cpu ${f2(r.paced.cpuMsPerReq)} ms/req, problems ${r.paced.problems}, foreign ${f2(r.paced.foreign)}` : ''}`,
  );
}

function logLatency(r) {
  console.log(
    `round ${r.round} latency ${fmtInt(r.rate)}/s (sent ${fmtInt(r.actualRate)}/s)  remote p50/p99/max ${fmtMs(r.remote.p50)}/${fmtMs(r.remote.p99)}/${fmtMs(r.remote.max)} ms (${fmtInt(r.remote.n)})  all remote ${fmtMs(r.remoteAll.p50)}/${fmtMs(r.remoteAll.p99)}  from handler ${fmtMs(r.fromHandler.p50)}/${fmtMs(r.fromHandler.p99)}  published ${fmtMs(r.published.p50)}/${fmtMs(r.published.p99)}  in-cluster ${fmtMs(r.inCluster.p50)}/${fmtMs(r.inCluster.p99)}  response ${fmtMs(r.ack.p50)}/${fmtMs(r.ack.p99)}  cpu machine ${f2(r.cpu.machine)} client ${f2(r.cpu.client)} primaries ${r.cpu.clusters.map((c) => f2(c.primary)).join('/')} workers ${r.cpu.clusters.map((c) => f2(sumW(c))).join('/')} redis ${f2(r.cpu.redis)} relay ${f2(r.cpu.relay)}  foreign ${f2(r.cpu.foreign)}  converged ${r.converged}${r.relayHeld ? `  relay held p50/p99 ${f3(r.relayHeld.p50 / 1000)}/${f3(r.relayHeld.p99 / 1000)} ms` : ''}  problems: ${problems(r)}`,
  );
}

async function main() {
  if (!existsSync(path.join(lib.rootDir, 'dist', 'index.js'))) {
    console.error('dist/index.js is missing: run `npm run build` first.');
    process.exit(2);
  }
  const info = machineInfo();
  if (info.redisServer === 'not found') {
    console.error('redis-server is not on PATH: apt-get install redis-server');
    process.exit(2);
  }
  for (const name of ['ioredis', 'connect-redis', 'redis'])
    if (info[name === 'connect-redis' ? 'connectRedis' : name] === 'not installed') {
      console.error(`${name} is missing: npm install (devDependencies)`);
      process.exit(2);
    }
  const loaded = await import('ioredis');
  Redis = loaded.Redis ?? loaded.default;
  const startedAt = new Date();
  const keys = await buildKeys(WORKERS, Math.ceil(CONNECTIONS / WORKERS) + 2);
  const main = { keys, workers: WORKERS, connections: CONNECTIONS, small: false };
  const small = {
    keys: await buildKeys(1, SMALL_CONNECTIONS + 2),
    workers: 1,
    connections: SMALL_CONNECTIONS,
    small: true,
  };
  const latKeys = await buildKeys(LAT_WORKERS, 2);
  console.log(
    `redis bench${QUICK ? ' (--quick)' : ''}: ${ROUNDS} round(s), ${WORKERS} workers, workloads ${MIXES.map(mixShort).join(', ')}, ${WARMUP}+${DURATION} s x ${CONNECTIONS} connections, stores ${STORES.map((s) => s.id).join(', ')}; latency ${CLUSTERS} clusters x ${LAT_WORKERS} workers at ${RATES.join(', ')} writes/s, ${LAT_WARMUP}+${LAT_DURATION} s`,
  );
  console.log(
    `machine: ${info.cpus} x ${info.model}, Node ${info.node}, redis-server ${info.redisServer}, commit ${info.commit}`,
  );
  const relayCal = DELAY_US ? await measureRelay() : null;
  if (relayCal)
    console.log(
      `delay relay (${DELAY_US} µs each way): PING round trip direct p50/p99 ${f3(relayCal.direct.p50)}/${f3(relayCal.direct.p99)} ms, through the relay ${f3(relayCal.relayed.p50)}/${f3(relayCal.relayed.p99)} ms: adds ${f3(relayCal.relayed.p50 - relayCal.direct.p50)} ms per round trip (p50); chunks held p50/p99 ${f3(relayCal.held.p50 / 1000)}/${f3(relayCal.held.p99 / 1000)} ms`,
    );
  const results = [];
  for (let round = 1; round <= ROUNDS; round++) {
    if (ONLY !== 'latency') {
      // Rotate the stores' order, so each runs first in some round.
      const k = (round - 1) % STORES.length;
      const order = [...STORES.slice(k), ...STORES.slice(0, k)];
      for (const cycle of MIXES)
        for (const store of order) {
          const r = await measureThroughput(store, cycle, round, main);
          results.push(r);
          logThroughput(r);
        }
      if (SMALL)
        for (const store of order) {
          const r = await measureThroughput(store, READ_CYCLE, round, small);
          results.push(r);
          logThroughput(r);
        }
    }
    if (ONLY !== 'throughput') {
      const ctx = await startLatencyClusters(latKeys);
      try {
        const rates = round % 2 ? RATES : [...RATES].reverse();
        for (const rate of rates) {
          const r = await measureLatency(ctx, rate, round);
          results.push(r);
          logLatency(r);
        }
      } finally {
        await stopLatencyClusters(ctx);
      }
    }
  }
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const distNow = lib.distStamp();
  if (distNow !== info.distBuilt) {
    info.distChanged = distNow;
    console.log(`WARNING: dist/ was rebuilt during the run (${info.distBuilt} -> ${distNow})`);
  }
  const S = summarize(results);
  if (ONLY !== 'latency') {
    console.log(`\nMedians over ${ROUNDS} round(s) (${WORKERS} workers):`);
    const table = [
      [
        'workload',
        'store',
        'req/s',
        'p50 ms',
        'p99 ms',
        'CPU ms/req',
        'redis cmds/req',
        'vs connect-redis',
        'paced p50/p99 ms',
      ],
    ];
    for (const c of MIXES)
      for (const s of STORES)
        table.push([
          mixShort(c),
          s.id,
          fmtInt(S.med(c, s.id, (r) => r.rps)),
          fmtMs(S.med(c, s.id, (r) => r.all.p50)),
          fmtMs(S.med(c, s.id, (r) => r.all.p99)),
          f2(S.med(c, s.id, (r) => r.cpuMsPerReq)),
          s.redis ? f3(S.med(c, s.id, (r) => r.redisCallsPerReq)) : '-',
          fmtRatio(S.med(c, s.id, (r) => r.rps) / S.med(c, 'connect-redis', (r) => r.rps)),
          S.of(c, s.id).some((r) => r.paced)
            ? `${fmtMs(S.med(c, s.id, (r) => r.paced?.all.p50))}/${fmtMs(S.med(c, s.id, (r) => r.paced?.all.p99))}`
            : '-',
        ]);
    for (const s of S.small.length ? STORES : []) {
      const rs = S.smallOf(s.id);
      table.push([
        `${mixShort(READ_CYCLE)}, 1 worker`,
        s.id,
        fmtInt(median(rs.map((r) => r.rps))),
        fmtMs(median(rs.map((r) => r.all.p50))),
        fmtMs(median(rs.map((r) => r.all.p99))),
        f2(median(rs.map((r) => r.cpuMsPerReq))),
        s.redis ? f3(median(rs.map((r) => r.redisCallsPerReq))) : '-',
        fmtRatio(
          median(rs.map((r) => r.rps)) / median(S.smallOf('connect-redis').map((r) => r.rps)),
        ),
        '-',
      ]);
    }
    for (const line of lib.formatTable(table)) console.log(line);
  }
  if (ONLY) {
    console.log(`BENCH_ONLY=${ONLY}: partial run, bench/RESULTS.md not written`);
    return;
  }
  if (WRITE) {
    // Read the file again just before writing: other scripts may have written their sections.
    const text = renderSection(results, info, startedAt, elapsedS, readHistory(), relayCal);
    lib.writeResults('redis', text);
  } else console.log('\nbench/RESULTS.md not written (--quick or BENCH_WRITE=0)');
}

for (const [sig, code] of [
  ['SIGINT', 130],
  ['SIGTERM', 143],
  ['SIGHUP', 129],
]) {
  process.on(sig, () => {
    console.error(`bench/redis.mjs: ${sig}: stopping, every server and redis-server killed`);
    killAll();
    process.exit(code);
  });
}
main().then(
  () => {
    killAll();
    process.exit(0);
  },
  (err) => {
    console.error(err);
    killAll();
    process.exit(1);
  },
);
