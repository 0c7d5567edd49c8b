#!/usr/bin/env node
// Proxy-mode benchmark (issue 3).
//
//   node bench/proxy.mjs        (needs dist/; `npm run build` once if dist/index.js is missing)
//
// Two measurements, each in interleaved rounds. Every run starts its server afresh as a child
// process (bench/servers/*.mjs, own process group, env PORT and WORKERS), waits for its READY
// line, sends a probe, runs autocannon (pipelining 1) for a warm-up and then the measured
// period, and kills the whole process group. Within a round the two servers of a measurement
// alternate which one goes first (odd rounds: the first listed; even rounds: the other).
//
// 1. new-conn: new-connection rate, proxy mode vs IP mode. Every request carries
//    `connection: close`, so every request is a new TCP connection.
//      ip     bench/servers/sticky-mesh.mjs        sticky({ num }): keyed by the TCP peer
//      proxy  bench/servers/sticky-mesh-proxy.mjs  sticky({ num, proxy: true }): keyed by
//                                                  the left-most X-Forwarded-For address
//    autocannon client i (i = 0 .. CONNECTIONS-1) connects from its own loopback source address
//    127.0.0.(2+i) and sends `x-forwarded-for: 198.51.100.(1+i)` on every request, in BOTH runs,
//    so the client and the request bytes are identical and either balancer sees CONNECTIONS
//    distinct clients (IP mode ignores the header, proxy mode the source address). The source
//    address is bound as bench/http.mjs does it: setupClient wraps the client's `_connect` and,
//    for that synchronous call only, makes `net.connect(port, host)` pass `localAddress`
//    (Linux routes all of 127.0.0.0/8 to lo). Target: proxy / ip >= 0.90 (ratio of medians).
//
// 2. mixed: keep-alive connections carrying many keys, as a reverse proxy's upstream keep-alive
//    pool does. CONNECTIONS keep-alive connections, all from 127.0.0.1 (one proxy); consecutive
//    requests on a connection carry different client addresses: client i cycles through
//    `x-forwarded-for: 198.51.100.1 .. 198.51.100.KEYS`, starting at key (i mod KEYS) + 1
//    (KEYS prebuilt requests per client, set with autocannon's public `client.setRequests`).
//      sticky-mesh      bench/servers/sticky-mesh-proxy.mjs (as above)
//      socketio-sticky  bench/servers/socketio-sticky.mjs: @socket.io/sticky 2.0.1 set up as its
//                       README says (setupMaster with least-connection, workers forked with
//                       serialization 'advanced', setupWorker(io) on a socket.io Server)
//    Target: sticky-mesh / socketio-sticky >= 2 (ratio of medians).
//    How @socket.io/sticky 2.0.1 treats these keep-alive clients (node_modules/@socket.io/sticky/
//    index.js): setupWorker prepends a 'request' listener to the worker's http server that sets
//    `Connection: close` on EVERY response ("disable HTTP keep-alive to prevent connection reuse
//    for another session"), so Node's http server ends each connection after its first response
//    whatever the client asked for: a keep-alive client gets one response per TCP connection.
//    (autocannon writes its next request on that connection right after the response, gets the
//    FIN, reconnects and sends a fresh request on the new connection; the request written on the
//    closing connection is never answered and not counted.) In the primary, setupMaster takes
//    each new connection's first 'data' chunk, looks for an engine.io `sid=` in it (none here)
//    and otherwise picks a worker with the configured method; least-connection compares
//    `worker.clientsCount`, which counts engine.io sessions only, so with plain HTTP every worker
//    stays at 0, `c1 < c2` never holds and the first worker in `cluster.workers` gets every
//    connection (see the worker shares in the report). A head without `content-length:` /
//    `transfer-encoding:` (all of ours) is sent with the socket handle to that worker, which
//    unshifts the chunk and serves it; the primary never reads that connection again. It never
//    looks at X-Forwarded-For. The existing server file already has exactly this behaviour (it is
//    the library's own), so no separate "close every response" variant is needed.
//    sticky-mesh proxy mode is measured as built in dist/: while its worker answers every
//    proxied request with `Connection: close` (README: "for now each proxy connection carries
//    one request") its figure is a new-connection rate too; once connections are kept open
//    (and moved to the right worker when the next request's key belongs elsewhere) it is not.
//    The report gives each run's requests per TCP connection, so which case was measured is
//    visible in the data.
//    Correctness (both measurements, every server): each response's `x-worker` header (pid of the
//    answering process, bench/servers/handler.mjs) is attributed to the x-forwarded-for value of
//    the request it answers: per TCP connection the bench keeps the values of the requests
//    written on it, oldest first (a wrapped `client._doRequest`), and a listener prepended to the
//    connection's 'data' tells which connection the response parser is reading. Counted over the
//    warm-up and the measured period of a run; a key answered by more than one worker is "split".
//    For sticky-mesh the count must be 0; for @socket.io/sticky (which does not claim
//    X-Forwarded-For stickiness) it is informational.
//
// Background load: the load generator (autocannon, in this process) shares the machine's cores
// with the servers (2 on the reference box), so absolute rates are bounded by the client's own
// CPU; ratios compare runs made under the same conditions. Before each run the bench waits (up
// to QUIET_WAIT s) until other processes use <= FOREIGN_MAX cores; during the run it estimates
// foreign CPU (busy time in /proc/stat minus the CPU time of this process and of the server's
// process group). A run with more than FOREIGN_MAX cores of foreign load is repeated (up to
// MAX_ATTEMPTS, keeping the least disturbed attempt). Linux only (/proc).
//
// Output: a table on stdout, and the section "Proxy mode (issue 3)" of bench/RESULTS.md (between
// its BEGIN/END proxy-mode markers; appended if absent; other sections untouched), all figures
// from this run's measurements.
//
// Environment knobs [defaults]: BENCH_ROUNDS [3], BENCH_DURATION seconds [3], BENCH_WARMUP
// seconds [1], BENCH_CONNECTIONS [50] (<= 253), BENCH_WORKERS [2], BENCH_KEYS [64] (<= 254,
// client addresses in the mixed runs), BENCH_PORT [a free one], BENCH_WRITE [1] (0: print only,
// bench/RESULTS.md is left alone, e.g. for trial runs), BENCH_RESULTS_FILE [bench/RESULTS.md]
// (where the section is written), BENCH_FOREIGN_MAX cores [0.2],
// BENCH_MAX_ATTEMPTS [2], BENCH_QUIET_WAIT seconds [30].
// Defaults take about a minute on a quiet machine (3 rounds x 4 runs of ~5.5 s).

import { execFileSync, spawn } from 'node:child_process';
import { existsSync, readdirSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { createRequire } from 'node:module';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import autocannon from 'autocannon';

const require = createRequire(import.meta.url);
const benchDir = path.dirname(fileURLToPath(import.meta.url));
const rootDir = path.resolve(benchDir, '..');
const resultsFile = path.resolve(
  process.env.BENCH_RESULTS_FILE || path.join(benchDir, 'RESULTS.md'),
);

function intEnv(name, dflt, min = 1) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min) throw new Error(`${name}: integer >= ${min}, got ${v}`);
  return n;
}

const ROUNDS = intEnv('BENCH_ROUNDS', 3);
const DURATION = intEnv('BENCH_DURATION', 3);
const WARMUP = intEnv('BENCH_WARMUP', 1, 0);
const CONNECTIONS = intEnv('BENCH_CONNECTIONS', 50);
const WORKERS = intEnv('BENCH_WORKERS', 2);
const KEYS = intEnv('BENCH_KEYS', 64);
const MAX_ATTEMPTS = intEnv('BENCH_MAX_ATTEMPTS', 2);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', 30, 0);
const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.2);
const WRITE = (process.env.BENCH_WRITE ?? '1') !== '0';
const READY_TIMEOUT_MS = 30_000;
if (CONNECTIONS > 253) throw new Error('BENCH_CONNECTIONS: at most 253 (127.0.0.2..254)');
if (KEYS > 254) throw new Error('BENCH_KEYS: at most 254 (198.51.100.1..254)');

const MEASUREMENTS = [
  {
    id: 'newconn',
    short: 'new-conn',
    keepAlive: false,
    runs: [
      { id: 'ip', label: 'sticky-mesh IP mode', file: 'sticky-mesh.mjs' },
      { id: 'proxy', label: 'sticky-mesh proxy mode', file: 'sticky-mesh-proxy.mjs' },
    ],
    target: { text: 'new-conn: proxy mode / IP mode', num: 'proxy', den: 'ip', min: 0.9 },
  },
  {
    id: 'mixed',
    short: 'mixed keep-alive',
    keepAlive: true,
    runs: [
      { id: 'sticky-mesh', label: 'sticky-mesh proxy mode', file: 'sticky-mesh-proxy.mjs' },
      { id: 'socketio-sticky', label: '@socket.io/sticky 2.0.1', file: 'socketio-sticky.mjs' },
    ],
    target: {
      text: 'mixed keep-alive: sticky-mesh / @socket.io/sticky',
      num: 'sticky-mesh',
      den: 'socketio-sticky',
      min: 2,
    },
  },
];

const sourceAddress = (i) => `127.0.0.${2 + i}`;
const clientKey = (k) => `198.51.100.${1 + k}`;

// ---------------------------------------------------------------------------------------------
// Client side (see the header): per-client source address or key rotation, and accounting.

function newCounters(keyWorkers) {
  return {
    active: false,
    connects: 0,
    byWorker: new Map(),
    noWorkerHeader: 0,
    connErrors: new Map(),
    keyWorkers,
  };
}

function makeSetupClient(meas, c) {
  let index = 0;
  return function setupClient(client) {
    const i = index++;
    const proto = Object.getPrototypeOf(client);
    if (meas.keepAlive) {
      client.setRequests(
        Array.from({ length: KEYS }, (_, j) => ({
          headers: { 'x-forwarded-for': clientKey((i + j) % KEYS) },
        })),
      );
    } else {
      client.setHeaders({ 'x-forwarded-for': clientKey(i) });
    }
    const localAddress = meas.keepAlive ? undefined : sourceAddress(i);
    const sent = new WeakMap(); // connection -> x-forwarded-for of its unanswered requests
    let reading = null; // the connection whose bytes the response parser is reading
    client._connect = function connect() {
      const original = net.connect;
      if (localAddress) net.connect = (port, host) => original({ port, host, localAddress });
      try {
        proto._connect.call(this);
      } finally {
        net.connect = original;
      }
      const conn = this.conn;
      conn.prependListener('data', () => {
        reading = conn;
      });
      if (c.active) c.connects += 1;
    };
    client._doRequest = function doRequest() {
      const before = this.reqsMade;
      proto._doRequest.call(this);
      if (this.reqsMade === before) return;
      if (!sent.has(this.conn)) sent.set(this.conn, []);
      sent.get(this.conn).push(this.requestIterator.currentRequest.headers['x-forwarded-for']);
    };
    client.on('headers', (info) => {
      const key = sent.get(reading)?.shift();
      const h = info.headers;
      let pid;
      for (let j = 0; j < h.length; j += 2) {
        if (h[j] === 'x-worker') {
          pid = h[j + 1];
          break;
        }
      }
      if (pid === undefined) {
        if (c.active) c.noWorkerHeader += 1;
        return;
      }
      if (key !== undefined) {
        if (!c.keyWorkers.has(key)) c.keyWorkers.set(key, new Set());
        c.keyWorkers.get(key).add(pid);
      }
      if (c.active) c.byWorker.set(pid, (c.byWorker.get(pid) || 0) + 1);
    });
    client.on('connError', (err) => {
      if (!c.active) return;
      const code = err?.code || err?.message || 'unknown';
      c.connErrors.set(code, (c.connErrors.get(code) || 0) + 1);
    });
  };
}

function runAutocannon(port, meas, seconds, c) {
  return autocannon({
    url: `http://127.0.0.1:${port}/`,
    connections: CONNECTIONS,
    pipelining: 1,
    duration: seconds,
    headers: meas.keepAlive ? {} : { connection: 'close' },
    setupClient: makeSetupClient(meas, c),
  });
}

// ---------------------------------------------------------------------------------------------
// Server lifecycle (as in bench/http.mjs): spawn detached, wait for READY, kill the group.

let current = null; // the running server, for cleanup on abort
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

function startServer(run, port) {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [path.join(benchDir, 'servers', run.file)], {
      cwd: rootDir,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, PORT: String(port), WORKERS: String(WORKERS) },
    });
    current = { child, pgid: child.pid };
    let out = '';
    let err = '';
    let done = false;
    const finish = (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (e) reject(e);
      else resolve({ child, pgid: child.pid, stderr: () => err });
    };
    const timer = setTimeout(
      () => finish(new Error(`${run.file}: no READY line within ${READY_TIMEOUT_MS} ms\n${err}`)),
      READY_TIMEOUT_MS,
    );
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      out += d;
      if (/^READY /m.test(out)) finish();
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code, signal) =>
      finish(new Error(`${run.file}: exited before READY (${code ?? signal})\n${out}\n${err}`)),
    );
    child.on('error', finish);
  });
}

function groupMembers(pgid) {
  const members = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = procStat(entry);
    if (st && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') members.push(entry);
  }
  return members;
}

async function stopServer(srv) {
  const exited = new Promise((r) => {
    if (srv.child.exitCode !== null || srv.child.signalCode !== null) r();
    else srv.child.once('exit', r);
  });
  const kill = () => {
    try {
      process.kill(-srv.pgid, 'SIGKILL');
    } catch {}
  };
  kill();
  await exited;
  for (let i = 0; i < 200 && groupMembers(srv.pgid).length; i++) {
    kill();
    await sleep(25);
  }
  const left = groupMembers(srv.pgid);
  if (left.length) throw new Error(`group ${srv.pgid} still alive: ${left.join(', ')}`);
  current = null;
}

function canListen(port) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen(port, '127.0.0.1', () => s.close(() => resolve(true)));
  });
}

async function waitPortFree(port) {
  for (let i = 0; i < 200; i++) {
    if (await canListen(port)) return;
    await sleep(50);
  }
  throw new Error(`port ${port} still in use 10 s after the server was killed`);
}

async function findPort() {
  if (process.env.BENCH_PORT) return intEnv('BENCH_PORT', 0);
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

function probe(port) {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        localAddress: sourceAddress(0),
        headers: { 'x-forwarded-for': clientKey(0) },
        agent: false,
        timeout: 5000,
      },
      (res) => {
        res.resume();
        res.on('end', () =>
          res.statusCode === 200 ? resolve() : reject(new Error(`probe: HTTP ${res.statusCode}`)),
        );
      },
    );
    req.on('timeout', () => req.destroy(new Error('probe timed out')));
    req.on('error', reject);
  });
}

// ---------------------------------------------------------------------------------------------
// CPU accounting and background load (see the header).

let CLK_TCK = 100;
try {
  CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {}

function procStat(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    return { state: rest[0], pgrp: Number(rest[2]), cpu: Number(rest[11]) + Number(rest[12]) };
  } catch {
    return null;
  }
}

function cpuSnapshot(pgid) {
  const f = readFileSync('/proc/stat', 'utf8').split('\n')[0].trim().split(/\s+/).slice(1);
  const busy = Number(f[0]) + Number(f[1]) + Number(f[2]); // user + nice + system, all CPUs
  let self = 0;
  let group = 0;
  let primary = 0;
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = procStat(entry);
    if (!st) continue;
    if (Number(entry) === process.pid) self = st.cpu;
    else if (pgid && st.pgrp === pgid) group += st.cpu;
    if (pgid && Number(entry) === pgid) primary = st.cpu;
  }
  return { t: process.hrtime.bigint(), busy, self, group, primary };
}

function cpuBetween(a, b) {
  const secs = Number(b.t - a.t) / 1e9;
  const cores = (x) => x / CLK_TCK / secs;
  return {
    client: cores(b.self - a.self),
    server: cores(b.group - a.group),
    primary: cores(b.primary - a.primary),
    foreign: Math.max(0, cores(b.busy - a.busy - (b.self - a.self) - (b.group - a.group))),
  };
}

async function waitQuiet() {
  const deadline = Date.now() + QUIET_WAIT_S * 1000;
  for (;;) {
    const a = cpuSnapshot(0);
    await sleep(500);
    const load = cpuBetween(a, cpuSnapshot(0)).foreign;
    if (load <= FOREIGN_MAX || Date.now() >= deadline) return load;
  }
}

// ---------------------------------------------------------------------------------------------
// One run: a fresh server, warm-up, measured period, kill.

async function measure(meas, run, port, round) {
  let best = null;
  for (let attempt = 1; attempt <= MAX_ATTEMPTS; attempt++) {
    await waitQuiet();
    const r = await measureOnce(meas, run, port, round);
    if (!best || r.cpu.foreign < best.cpu.foreign) best = r;
    best.attempts = attempt;
    if (r.cpu.foreign <= FOREIGN_MAX) break;
    if (attempt < MAX_ATTEMPTS)
      console.log(`  (${r.cpu.foreign.toFixed(2)} cores of foreign load during the run; again)`);
  }
  return best;
}

async function measureOnce(meas, run, port, round) {
  await waitPortFree(port);
  const srv = await startServer(run, port);
  try {
    await probe(port);
    const c = newCounters(new Map());
    if (WARMUP > 0) await runAutocannon(port, meas, WARMUP, c);
    c.active = true;
    const before = cpuSnapshot(srv.pgid);
    const r = await runAutocannon(port, meas, DURATION, c);
    const cpu = cpuBetween(before, cpuSnapshot(srv.pgid));
    const split = [...c.keyWorkers.values()].filter((s) => s.size > 1).length;
    const stderr = srv.stderr().trim();
    return {
      round,
      measurement: meas.id,
      server: run.id,
      rps: r.duration > 0 ? r.requests.total / r.duration : 0,
      requests: r.requests.total,
      connects: c.connects,
      errors: r.errors,
      timeouts: r.timeouts,
      non2xx: r.non2xx,
      resets: r.resets,
      noWorkerHeader: c.noWorkerHeader,
      connErrors: Object.fromEntries(c.connErrors),
      byWorker: Object.fromEntries(c.byWorker),
      keys: c.keyWorkers.size,
      split,
      cpu,
      attempts: 1,
      serverStderr: stderr ? stderr.split('\n').slice(0, 3).join(' | ') : '',
    };
  } finally {
    await stopServer(srv);
  }
}

// ---------------------------------------------------------------------------------------------
// Figures and report.

function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}
const fmtInt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(3)}x` : 'n/a');
const pct = (x) => `${(x * 100).toFixed(1)}%`;
const fmtCpu = (c) =>
  [c.client, c.primary, c.server - c.primary].map((x) => Math.max(0, x).toFixed(2)).join(' / ');
const perConn = (reqs, conns) => (conns ? (reqs / conns).toFixed(2) : 'n/a');

function shares(byWorker) {
  const counts = Object.values(byWorker).sort((a, b) => b - a);
  while (counts.length < WORKERS) counts.push(0);
  const total = counts.reduce((a, b) => a + b, 0);
  return counts.map((n) => pct(total ? n / total : 0)).join(' / ');
}

function errorSummary(r) {
  const parts = [];
  if (r.errors) parts.push(`errors ${r.errors}`);
  if (r.timeouts) parts.push(`timeouts ${r.timeouts}`);
  if (r.non2xx) parts.push(`non-2xx ${r.non2xx}`);
  if (r.resets) parts.push(`resets ${r.resets}`);
  if (r.noWorkerHeader) parts.push(`no x-worker ${r.noWorkerHeader}`);
  const ce = Object.entries(r.connErrors);
  if (ce.length) parts.push(`conn errors: ${ce.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  return parts.length ? parts.join('; ') : '0';
}

function machineInfo() {
  const version = (name) => {
    try {
      return require(`${name}/package.json`).version;
    } catch {
      return 'not installed';
    }
  };
  let commit = 'unknown';
  try {
    const git = (...args) => execFileSync('git', args, { cwd: rootDir, encoding: 'utf8' }).trim();
    commit = git('rev-parse', '--short', 'HEAD');
    if (git('status', '--porcelain', '--', 'src')) commit += ' (src/ has uncommitted changes)';
  } catch {}
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model?.trim() || 'unknown',
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    autocannon: version('autocannon'),
    socketioSticky: version('@socket.io/sticky'),
    commit,
    distBuilt: distStamp(),
  };
}

// Newest modification time of dist/ (ISO): the build the sticky-mesh servers load. Compared at
// the end of the run, because a rebuild during the run would mix two builds in one report.
function distStamp() {
  const dist = path.join(rootDir, 'dist');
  const times = readdirSync(dist, { recursive: true }).map(
    (f) => statSync(path.join(dist, f)).mtimeMs,
  );
  return new Date(Math.max(...times)).toISOString();
}

function summarize(results) {
  const of = (m, s) => results.filter((r) => r.measurement === m && r.server === s);
  const rows = [];
  for (const meas of MEASUREMENTS) {
    for (const run of meas.runs) {
      const rs = of(meas.id, run.id);
      const sum = (k) => rs.reduce((a, r) => a + r[k], 0);
      rows.push({
        meas,
        run,
        rs,
        med: median(rs.map((r) => r.rps)),
        perConn: perConn(sum('requests'), sum('connects')),
        errors: rs.some((r) => errorSummary(r) !== '0')
          ? rs.map((r) => `r${r.round}: ${errorSummary(r)}`).join('; ')
          : '0',
        split: rs.map((r) => `${r.split}/${r.keys}`).join(', '),
      });
    }
  }
  const checks = MEASUREMENTS.map((meas) => {
    const { text, num, den, min } = meas.target;
    const med = (id) => rows.find((x) => x.meas === meas && x.run.id === id).med;
    const value = med(num) / med(den);
    const perRound = [];
    for (let round = 1; round <= ROUNDS; round++) {
      const a = of(meas.id, num).find((r) => r.round === round);
      const b = of(meas.id, den).find((r) => r.round === round);
      if (a && b) perRound.push(a.rps / b.rps);
    }
    return { text: `${text} >= ${min}`, value, perRound, met: value >= min };
  });
  return { rows, checks };
}

function renderSection(results, info, startedAt, elapsedS) {
  const { rows, checks } = summarize(results);
  const L = [];
  const p = (...xs) => L.push(...xs);
  p('<!-- BEGIN proxy-mode (written by bench/proxy.mjs; do not edit by hand) -->');
  p('## Proxy mode (issue 3)', '');
  p(
    `Run: ${startedAt.toISOString()} (${elapsedS.toFixed(0)} s), \`node bench/proxy.mjs\`, sticky-mesh commit ${info.commit}; sticky-mesh measured as built in dist/ (newest file ${info.distBuilt})${info.distChanged ? `; **dist/ was rebuilt during the run (newest file ${info.distChanged} at the end), so the sticky-mesh figures may mix two builds**` : ''}.`,
    '',
  );
  p(
    `Machine: ${info.cpus} CPUs (os.cpus), ${info.model}; Node ${info.node}; ${info.os}; autocannon ${info.autocannon}; @socket.io/sticky ${info.socketioSticky}.`,
    '',
  );
  p('Settings and method:', '');
  p(
    `- ${ROUNDS} interleaved round${ROUNDS > 1 ? 's' : ''}; per run ${WARMUP} s warm-up (not counted) + ${DURATION} s measured; ${CONNECTIONS} autocannon connections, pipelining 1; ${WORKERS} workers; every run on a freshly started server (\`bench/servers/*.mjs\`, the handler of \`bench/servers/handler.mjs\`) killed with its process group afterwards. The two servers of a measurement alternate which runs first from round to round. req/s = completed responses / measured duration; figures are medians over rounds.`,
  );
  p(
    `- **new-conn**: every request carries \`connection: close\` (one TCP connection per request). IP mode = \`sticky-mesh.mjs\` (\`sticky({ num })\`), proxy mode = \`sticky-mesh-proxy.mjs\` (\`sticky({ num, proxy: true })\`). In both runs client i connects from 127.0.0.${2}..127.0.0.${1 + CONNECTIONS} (its own source address) and sends \`x-forwarded-for: 198.51.100.${1}..${CONNECTIONS}\` (its own value), so the requests are byte-identical and each balancer sees ${CONNECTIONS} clients.`,
  );
  p(
    `- **mixed keep-alive**: keep-alive connections from 127.0.0.1, as a reverse proxy's upstream pool; consecutive requests on a connection carry different \`x-forwarded-for\` values (client i cycles through 198.51.100.1..${KEYS}, starting at its own offset). sticky-mesh proxy mode against @socket.io/sticky set up as its README says (\`socketio-sticky.mjs\`). @socket.io/sticky's \`setupWorker\` sets \`Connection: close\` on every response, so it serves one request per TCP connection whatever the client asks for; its least-connection method counts only engine.io sessions, so plain HTTP all goes to one worker; it never reads X-Forwarded-For (details in the header of \`bench/proxy.mjs\`).`,
  );
  p(
    "- Key stickiness: each response's `x-worker` pid is attributed to the `x-forwarded-for` of the request it answers (per TCP connection, in order), over warm-up and measured period; a key answered by more than one worker counts as split. Shown as split/keys seen.",
    '',
  );
  p('### Median requests/s', '');
  p(
    '| measurement | server | median req/s | per round | requests per TCP connection | errors / timeouts / non-2xx | split keys / keys, per round |',
  );
  p('|---|---|---:|---|---:|---|---|');
  for (const x of rows)
    p(
      `| ${x.meas.short} | ${x.run.label} | ${fmtInt(x.med)} | ${x.rs.map((r) => fmtInt(r.rps)).join(', ')} | ${x.perConn} | ${x.errors} | ${x.split} |`,
    );
  p('', '### Targets', '');
  p('Evaluated on the ratio of medians; per-round ratios (same round, seconds apart) beside it.');
  p('', '| target | ratio of medians | per-round ratios | result |', '|---|---:|---|---|');
  for (const c of checks)
    p(
      `| ${c.text} | ${fmtRatio(c.value)} | ${c.perRound.map(fmtRatio).join(', ')} | ${c.met ? 'MET' : '**NOT MET**'} |`,
    );
  const sm = results.filter((r) => r.measurement === 'mixed' && r.server === 'sticky-mesh');
  const splitTotal = sm.reduce((a, r) => a + r.split, 0);
  p('', '### Key stickiness (sticky-mesh, mixed keep-alive)', '');
  p(
    `Keys answered by more than one worker: ${sm.map((r) => `round ${r.round}: ${r.split} of ${r.keys}`).join('; ')} (total over runs: ${splitTotal}; expected 0${splitTotal ? ': **some clients were answered by more than one worker**' : ''}).`,
  );
  p('', '### Per-run raw figures', '');
  p(
    '| round | measurement | server | req/s | requests | TCP connections | req/conn | worker shares | errors / timeouts / non-2xx | split / keys | CPU cores: client / primary / workers | foreign CPU (cores) | attempts |',
  );
  p('|---:|---|---|---:|---:|---:|---:|---|---|---:|---|---:|---:|');
  for (const r of results) {
    const meas = MEASUREMENTS.find((m) => m.id === r.measurement);
    p(
      `| ${r.round} | ${meas.short} | ${r.server} | ${fmtInt(r.rps)} | ${fmtInt(r.requests)} | ${fmtInt(r.connects)} | ${perConn(r.requests, r.connects)} | ${shares(r.byWorker)} | ${errorSummary(r)} | ${r.split}/${r.keys} | ${fmtCpu(r.cpu)} | ${r.cpu.foreign.toFixed(2)} | ${r.attempts} |`,
    );
  }
  p('', '### Observations (generated from the figures above)', '');
  for (const o of observations(rows)) p(`- ${o}`);
  for (const r of results.filter((x) => x.serverStderr))
    p(`- server stderr, round ${r.round} ${r.measurement} ${r.server}: \`${r.serverStderr}\``);
  const foreign = results.map((r) => r.cpu.foreign);
  const disturbed = foreign.filter((x) => x > FOREIGN_MAX).length;
  const client = (m) =>
    median(results.filter((r) => r.measurement === m).map((r) => r.cpu.client)).toFixed(2);
  p('', '### Background load', '');
  p(
    `This machine has ${info.cpus} CPUs and the load generator (autocannon, in the bench process) runs on them alongside the servers: it used a median of ${client('newconn')} cores in the new-conn runs and ${client('mixed')} in the mixed keep-alive runs, so the servers had what was left. Absolute rates are bounded by that and do not transfer to other machines; the ratios compare runs made under the same conditions. Load from other processes, measured per run: median ${median(foreign).toFixed(2)}, max ${Math.max(...foreign).toFixed(2)} cores (runs above ${FOREIGN_MAX} cores were repeated, up to ${MAX_ATTEMPTS} attempts, keeping the least disturbed)${disturbed ? `; **${disturbed} of ${results.length} kept runs still had more than ${FOREIGN_MAX} cores of foreign load** (raw table), so their figures are lower than a quiet machine would give` : ''}.`,
  );
  p('<!-- END proxy-mode -->');
  return { text: L.join('\n'), rows, checks };
}

function observations(rows) {
  const out = [];
  for (const x of rows) {
    const reqs = x.rs.reduce((a, r) => a + r.requests, 0);
    const conns = x.rs.reduce((a, r) => a + r.connects, 0);
    if (x.meas.keepAlive && conns && reqs / conns < 1.5)
      out.push(
        `${x.run.label}: ${fmtInt(reqs)} responses over ${fmtInt(conns)} TCP connections in the mixed keep-alive runs (${perConn(reqs, conns)} per connection): it closed the connections after (about) every response, so its keep-alive figure is a new-connection rate.`,
      );
    if (x.meas.keepAlive && conns && reqs / conns >= 1.5)
      out.push(
        `${x.run.label}: ${perConn(reqs, conns)} responses per TCP connection in the mixed keep-alive runs: connections were reused across keys.`,
      );
    const top = x.rs.map((r) => {
      const v = Object.values(r.byWorker);
      const t = v.reduce((a, b) => a + b, 0);
      return t ? Math.max(...v) / t : 0;
    });
    if (WORKERS > 1 && top.length && Math.min(...top) > 0.99)
      out.push(
        `${x.run.label} (${x.meas.short}): one worker answered more than 99% of the responses in every run.`,
      );
  }
  return out;
}

function writeResults(section) {
  const begin = '<!-- BEGIN proxy-mode';
  const end = '<!-- END proxy-mode -->';
  let doc = existsSync(resultsFile)
    ? readFileSync(resultsFile, 'utf8')
    : '# sticky-mesh benchmark results\n\nEach section is written by its own script; re-running a script replaces only its section.\n';
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i !== -1 && j > i) doc = doc.slice(0, i) + section + doc.slice(j + end.length);
  else doc = `${doc.replace(/\s*$/, '')}\n\n${section}\n`;
  writeFileSync(resultsFile, doc);
}

function printTable(rows, checks) {
  const table = [['measurement', 'server', 'median req/s', 'req/conn', 'split keys', 'errors']];
  for (const x of rows)
    table.push([x.meas.short, x.run.label, fmtInt(x.med), x.perConn, x.split, x.errors]);
  const w = table[0].map((_, i) => Math.max(...table.map((r) => r[i].length)));
  console.log(`\nMedian over ${ROUNDS} rounds (${CONNECTIONS} connections, ${WORKERS} workers):`);
  for (const r of table) console.log(r.map((c, i) => c.padEnd(w[i])).join('  '));
  console.log('');
  for (const c of checks)
    console.log(
      `target ${c.text}: ${fmtRatio(c.value)} (rounds ${c.perRound.map(fmtRatio).join(', ')}) -> ${c.met ? 'MET' : 'NOT MET'}`,
    );
}

async function main() {
  if (!existsSync(path.join(rootDir, 'dist', 'index.js'))) {
    console.error('dist/index.js is missing: run `npm run build` first.');
    process.exit(2);
  }
  const startedAt = new Date();
  const info = machineInfo();
  const port = await findPort();
  console.log(
    `proxy-mode bench: ${ROUNDS} rounds x ${WARMUP}+${DURATION} s, ${CONNECTIONS} connections, ${WORKERS} workers, ${KEYS} keys, port ${port}`,
  );
  console.log(`machine: ${info.cpus} x ${info.model}, Node ${info.node}, commit ${info.commit}`);
  const results = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const meas of MEASUREMENTS) {
      const order = round % 2 ? meas.runs : [...meas.runs].reverse();
      for (const run of order) {
        const r = await measure(meas, run, port, round);
        results.push(r);
        console.log(
          `round ${round} ${meas.short.padEnd(16)} ${run.id.padEnd(15)} ${fmtInt(r.rps).padStart(7)} req/s  conns ${fmtInt(r.connects).padStart(6)}  workers ${shares(r.byWorker)}  split ${r.split}/${r.keys}  cpu client/primary/workers ${fmtCpu(r.cpu)}  foreign ${r.cpu.foreign.toFixed(2)}  errors: ${errorSummary(r)}`,
        );
      }
    }
  }
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const distNow = distStamp();
  if (distNow !== info.distBuilt) {
    info.distChanged = distNow;
    console.log(`WARNING: dist/ was rebuilt during the run (${info.distBuilt} -> ${distNow})`);
  }
  const { text, rows, checks } = renderSection(results, info, startedAt, elapsedS);
  printTable(rows, checks);
  if (WRITE) {
    writeResults(text);
    console.log(`\nwrote ${path.relative(process.cwd(), resultsFile) || resultsFile}`);
  } else console.log('\nBENCH_WRITE=0: bench/RESULTS.md not written');
}

function abort(code) {
  if (current) {
    try {
      process.kill(-current.pgid, 'SIGKILL');
    } catch {}
  }
  process.exit(code);
}
process.on('SIGINT', () => abort(130));
process.on('SIGTERM', () => abort(143));
main().catch((err) => {
  console.error(err);
  abort(1);
});
