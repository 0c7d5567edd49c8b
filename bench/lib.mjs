// Shared code of the benchmark scripts (bench/*.mjs). Each script keeps its own header describing
// its method, its environment knobs and its report; this module holds the machinery they have in
// common:
//   - environment knobs (intEnv, intListEnv);
//   - server lifecycle: a bench/servers/*.mjs child process started detached (own process group,
//     env PORT, WORKERS and any a script adds), its READY line awaited, a probe request, and the
//     whole group killed afterwards (startServer, stopServer, killGroup, measureOnFreshServer;
//     runMain kills the running server when the bench is interrupted or fails);
//   - client side: autocannon with a per-client loopback source address (connectFrom, called from
//     a script's setupClient), per-response accounting helpers, and plain HTTP requests (request,
//     requestJson, pool; nowNs and ms for their hrtime stamps);
//   - CPU accounting and background load from /proc (cpuSnapshot, cpuBetween, cpuPerUnit,
//     procStat, busyTicks, waitQuiet, measureQuietly, measureQuietlyByCpu);
//   - figures and report helpers (median, dist, formatting, shares, errorSummary, formatTable,
//     machine, writeSection for one marked section of bench/RESULTS.md, writeResults for a
//     script's own section of resultsFile).
// Linux only (/proc).

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
export const benchDir = path.dirname(fileURLToPath(import.meta.url));
export const rootDir = path.resolve(benchDir, '..');
// Where writeResults writes: BENCH_RESULTS_FILE, else bench/RESULTS.md.
export const resultsFile = path.resolve(
  process.env.BENCH_RESULTS_FILE || path.join(benchDir, 'RESULTS.md'),
);

const READY_TIMEOUT_MS = 30_000;

export const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// An integer environment knob: dflt when unset or empty, otherwise an integer >= min.
export function intEnv(name, dflt, min = 1) {
  const v = process.env[name];
  if (v === undefined || v === '') return dflt;
  const n = Number(v);
  if (!Number.isInteger(n) || n < min)
    throw new Error(`${name} must be an integer >= ${min}, got ${v}`);
  return n;
}

// A list knob: comma-separated integers >= 1, dflt (the same form) when unset or empty.
export function intListEnv(name, dflt) {
  return (process.env[name] || dflt).split(',').map((x) => {
    const n = Number(x.trim());
    if (!Number.isInteger(n) || n < 1) throw new Error(`${name}: integers >= 1, got ${x}`);
    return n;
  });
}

// ---------------------------------------------------------------------------------------------
// Client side.

// Loopback source address of autocannon client i: 127.0.0.(2 + i), wrapping after 253 clients
// (Linux routes all of 127.0.0.0/8 to lo).
export const sourceAddress = (i) => `127.0.0.${2 + (i % 253)}`;

// For use in autocannon's `setupClient(client)`, which autocannon 8 calls in the Client
// constructor before the first connect. autocannon connects through `net.connect(port, host)`
// (lib/httpClient.js, Client.prototype._connect) and has no option to bind a local address, so
// this replaces the client's `_connect` with a wrapper that, for the duration of the synchronous
// original `_connect` call only, swaps `net.connect` for
// `(port, host) => net.connect({ port, host, localAddress })` (no swap when localAddress is
// undefined). Reconnects (after `connection: close`, errors, timeouts) go through the same
// wrapper, so a client keeps its address for the whole run. onConnect(client) runs after every
// (re)connect, with `client.conn` the new connection.
export function connectFrom(client, localAddress, onConnect) {
  const protoConnect = Object.getPrototypeOf(client)._connect;
  client._connect = function connectFromAddress() {
    const original = net.connect;
    if (localAddress) net.connect = (port, host) => original({ port, host, localAddress });
    try {
      protoConnect.call(this);
    } finally {
      net.connect = original;
    }
    onConnect?.(this);
  };
}

// Per-run counters filled by a script's setupClient (extra: script-specific fields).
export function newCounters(extra = {}) {
  return {
    active: false,
    connects: 0,
    byWorker: new Map(),
    noWorkerHeader: 0,
    connErrors: new Map(),
    ...extra,
  };
}

// The value of header `name` (lower case) in a response's raw header list, or undefined.
export function rawHeader(rawHeaders, name) {
  for (let i = 0; i < rawHeaders.length; i += 2)
    if (rawHeaders[i] === name) return rawHeaders[i + 1];
  return undefined;
}

// The `x-worker` header (pid of the answering process) of a response's raw header list, or
// undefined.
export const workerHeader = (rawHeaders) => rawHeader(rawHeaders, 'x-worker');

// Counts a client's connection errors by code while the counters are active.
export function countConnErrors(client, counters) {
  client.on('connError', (err) => {
    if (!counters.active) return;
    const code = err?.code || err?.message || 'unknown';
    counters.connErrors.set(code, (counters.connErrors.get(code) || 0) + 1);
  });
}

export function runAutocannon({ port, connections, seconds, headers, setupClient }) {
  return autocannon({
    url: `http://127.0.0.1:${port}/`,
    connections,
    pipelining: 1,
    duration: seconds,
    headers,
    setupClient,
  });
}

export const nowNs = () => process.hrtime.bigint();
export const ms = (ns) => Number(ns) / 1e6; // hrtime ns (bigint) -> ms

// One request to 127.0.0.1:port; resolves with { status, headers, body, end } (end: hrtime of the
// last byte), rejects on an error or after 10 s.
export function request(port, { method = 'GET', path: p = '/', headers = {}, agent = false }) {
  return new Promise((resolve, reject) => {
    const req = http.request(
      { host: '127.0.0.1', port, method, path: p, headers, agent, timeout: 10_000 },
      (res) => {
        let body = '';
        res.setEncoding('utf8');
        res.on('data', (d) => {
          body += d;
        });
        res.on('end', () =>
          resolve({ status: res.statusCode, headers: res.headers, body, end: nowNs() }),
        );
        res.on('error', reject);
      },
    );
    req.on('timeout', () => req.destroy(new Error(`${method} ${p}: timed out`)));
    req.on('error', reject);
    req.end();
  });
}

// request() that must answer 200 with JSON: its result plus `json`, the parsed body.
export async function requestJson(port, opts) {
  const r = await request(port, opts);
  if (r.status !== 200)
    throw new Error(
      `${opts.method ?? 'GET'} ${opts.path}: HTTP ${r.status} ${r.body.slice(0, 200)}`,
    );
  return { ...r, json: JSON.parse(r.body) };
}

// Runs fn(item, index) over items, at most `limit` at a time; resolves with the results in order.
export async function pool(items, limit, fn) {
  const out = new Array(items.length);
  let next = 0;
  const worker = async () => {
    while (next < items.length) {
      const i = next++;
      out[i] = await fn(items[i], i);
    }
  };
  await Promise.all(Array.from({ length: Math.min(limit, items.length) }, worker));
  return out;
}

// ---------------------------------------------------------------------------------------------
// Server lifecycle: spawn detached (own process group), wait for READY, kill the group.

let current = null; // { child, pgid } of the running server, for cleanup on abort

// Starts bench/servers/<file> with env PORT and WORKERS (and env, more variables for it);
// resolves once it prints a line starting with `READY `. name labels the error messages. When it
// fails to get there (exit, timeout, spawn error) its process group is killed before the promise
// rejects, so a caller that goes on after the error leaves nothing running.
// BENCH_NODE_ARGS: Node flags for the server (its workers inherit them), e.g. a CPU profile:
// BENCH_NODE_ARGS='--cpu-prof --cpu-prof-dir=/tmp/prof'.
export function startServer({ file, name, workers, port, env = {} }) {
  const nodeArgs = (process.env.BENCH_NODE_ARGS ?? '').split(' ').filter(Boolean);
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [...nodeArgs, path.join(benchDir, 'servers', file)], {
      cwd: rootDir,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: { ...process.env, ...env, PORT: String(port), WORKERS: String(workers) },
    });
    current = { child, pgid: child.pid };
    let out = '';
    let err = '';
    let done = false;
    const timer = setTimeout(() => {
      finish(
        new Error(
          `${name}: no READY line within ${READY_TIMEOUT_MS} ms\nstdout: ${out}\nstderr: ${err}`,
        ),
      );
    }, READY_TIMEOUT_MS);
    const finish = (e) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      if (!e) {
        resolve({ child, pgid: child.pid, stderr: () => err, stdout: () => out });
        return;
      }
      if (!child.pid) {
        current = null;
        reject(e);
        return;
      }
      killGroup(child.pid, child).then(
        () => {
          current = null;
          reject(e);
        },
        () => reject(e),
      );
    };
    child.stdout.setEncoding('utf8');
    child.stderr.setEncoding('utf8');
    child.stdout.on('data', (d) => {
      out += d;
      if (/^READY /m.test(out)) finish();
    });
    child.stderr.on('data', (d) => {
      err += d;
    });
    child.on('exit', (code, signal) => {
      finish(
        new Error(
          `${name}: exited before READY (code ${code}, signal ${signal})\nstdout: ${out}\nstderr: ${err}`,
        ),
      );
    });
    child.on('error', finish);
  });
}

// Live (non-zombie) processes whose process group is pgid, read from /proc.
function groupMembers(pgid) {
  const members = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = procStat(entry);
    if (st && st.pgrp === pgid && st.state !== 'Z' && st.state !== 'X') members.push(entry);
  }
  return members;
}

// Kills process group pgid (led by child, a ChildProcess spawned detached) and waits until the
// child has exited and no live member of the group is left (up to 5 s, then it throws).
export async function killGroup(pgid, child) {
  const exited = new Promise((r) => {
    if (child.exitCode !== null || child.signalCode !== null) r();
    else child.once('exit', r);
  });
  try {
    process.kill(-pgid, 'SIGKILL');
  } catch (e) {
    if (e.code !== 'ESRCH') throw e;
  }
  await exited;
  for (let i = 0; i < 200; i++) {
    if (groupMembers(pgid).length === 0) break;
    try {
      process.kill(-pgid, 'SIGKILL');
    } catch {}
    await sleep(25);
  }
  const left = groupMembers(pgid);
  if (left.length) throw new Error(`processes of group ${pgid} still alive: ${left.join(', ')}`);
}

export async function stopServer(srv) {
  await killGroup(srv.pgid, srv.child);
  current = null;
}

function killCurrent() {
  if (current) {
    try {
      process.kill(-current.pgid, 'SIGKILL');
    } catch {}
  }
}

// Runs a script's main(): on SIGINT (exit 130), SIGTERM (143) or an error (printed, exit 1) the
// running server's process group is killed first.
export function runMain(main) {
  const abort = (code) => {
    killCurrent();
    process.exit(code);
  };
  process.on('SIGINT', () => abort(130));
  process.on('SIGTERM', () => abort(143));
  main().catch((err) => {
    console.error(err);
    abort(1);
  });
}

function canListen(port, host) {
  return new Promise((resolve) => {
    const s = net.createServer();
    s.once('error', () => resolve(false));
    s.listen({ port, host }, () => s.close(() => resolve(true)));
  });
}

// hosts: the addresses the servers under test bind (each must be free).
async function portFree(port, hosts) {
  for (const host of hosts) if (!(await canListen(port, host))) return false;
  return true;
}

export async function waitPortFree(port, hosts) {
  for (let i = 0; i < 200; i++) {
    if (await portFree(port, hosts)) return;
    await sleep(50);
  }
  throw new Error(`port ${port} still in use 10 s after the server was killed`);
}

// BENCH_PORT, else a port the system hands out on 127.0.0.1 that is also free on all hosts.
export async function findPort(hosts) {
  if (process.env.BENCH_PORT) return intEnv('BENCH_PORT', 0);
  for (let i = 0; i < 50; i++) {
    const port = await new Promise((resolve, reject) => {
      const s = net.createServer();
      s.once('error', reject);
      s.listen(0, '127.0.0.1', () => {
        const p = s.address().port;
        s.close(() => resolve(p));
      });
    });
    if (await portFree(port, hosts)) return port;
  }
  throw new Error('no free port found');
}

// One GET / that must answer 200 (the server is serving), from localAddress with headers.
export function probe(port, { localAddress, headers } = {}) {
  return new Promise((resolve, reject) => {
    const req = http.get(
      {
        host: '127.0.0.1',
        port,
        path: '/',
        localAddress,
        headers,
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

// One run on a freshly started server: wait until the port is free, start the server, probe it,
// run(warmup, false) unless warmup is 0, then run(duration, true) between two CPU snapshots; the
// server's process group is killed afterwards (and, with freeAfter, the port awaited free).
// Returns run's result of the measured period, the snapshots, the CPU split (cpuBetween) and the
// server's stderr.
export async function measureOnFreshServer(
  { file, name, workers, port, hosts, env, probe: probeOpts, warmup, duration, freeAfter = false },
  run,
) {
  await waitPortFree(port, hosts);
  const srv = await startServer({ file, name, workers, port, env });
  try {
    await probe(port, probeOpts);
    if (warmup > 0) await run(warmup, false);
    const before = cpuSnapshot(srv.pgid);
    const result = await run(duration, true);
    const after = cpuSnapshot(srv.pgid);
    return { result, before, after, cpu: cpuBetween(before, after), stderr: srv.stderr().trim() };
  } finally {
    await stopServer(srv);
    if (freeAfter) await waitPortFree(port, hosts);
  }
}

// ---------------------------------------------------------------------------------------------
// CPU accounting and background load. Busy CPU time comes from /proc/stat (user + nice + system,
// all CPUs); the CPU time of this process (the load generator) and of the server's process group
// from /proc/<pid>/stat; what is left is foreign load (other processes), in cores.

// Clock ticks per second, the unit of the CPU times in /proc.
export let CLK_TCK = 100;
try {
  CLK_TCK = Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
} catch {}

// { comm, state, pgrp, cpu (user + system, ticks) } of process pid, or null when it is gone.
export function procStat(pid) {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    const rest = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
    const comm = stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')'));
    return {
      comm,
      state: rest[0],
      pgrp: Number(rest[2]),
      cpu: Number(rest[11]) + Number(rest[12]),
    };
  } catch {
    return null;
  }
}

// Busy CPU time of the machine so far: user + nice + system of /proc/stat, ticks, all CPUs.
export function busyTicks() {
  const f = readFileSync('/proc/stat', 'utf8')
    .split('\n')[0]
    .trim()
    .split(/\s+/)
    .slice(1)
    .map(Number);
  return f[0] + f[1] + f[2];
}

// CPU ticks so far: busy (all CPUs), self (this process), group (server group pgid, 0: none),
// ours (self + group), primary (the process pgid), others (pid -> procStat of everything else).
export function cpuSnapshot(pgid) {
  const busy = busyTicks();
  let self = 0;
  let group = 0;
  let primary = 0;
  const others = new Map(); // pid -> { comm, cpu } of every other process, to name the load
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = procStat(entry);
    if (!st) continue;
    const pid = Number(entry);
    if (pid === pgid) primary = st.cpu;
    if (pid === process.pid) self = st.cpu;
    else if (pgid && st.pgrp === pgid) group += st.cpu;
    else others.set(entry, st);
  }
  return { t: process.hrtime.bigint(), busy, self, group, ours: self + group, primary, others };
}

// Cores used between two snapshots: client (this process), server (its group), primary, ours
// (client + server) and foreign (everything else).
export function cpuBetween(a, b) {
  const secs = Number(b.t - a.t) / 1e9;
  const cores = (x) => x / CLK_TCK / secs;
  return {
    client: cores(b.self - a.self),
    server: cores(b.group - a.group),
    primary: cores(b.primary - a.primary),
    ours: cores(b.ours - a.ours),
    foreign: Math.max(0, cores(b.busy - a.busy - (b.ours - a.ours))),
  };
}

// Server CPU time per unit of work (a request, a session) between two snapshots of the server's
// group, in microseconds: total (primary + workers, i.e. the whole process group), primary and
// workers. NaN when count is 0. Resolution: one clock tick (1/CLK_TCK s) per process over the
// whole period, so measured periods should hold hundreds of ticks.
export function cpuPerUnit(a, b, count) {
  const us = (ticks) => (count > 0 ? (ticks / CLK_TCK / count) * 1e6 : Number.NaN);
  const group = b.group - a.group;
  const primary = b.primary - a.primary;
  return { total: us(group), primary: us(primary), workers: us(group - primary) };
}

// The busiest other processes between two snapshots, e.g. "node 1.20s, tsc 0.40s".
export function foreignTop(a, b) {
  const d = [];
  for (const [pid, st] of b.others) {
    const cpu = st.cpu - (a.others.get(pid)?.cpu ?? 0);
    if (cpu > 0) d.push([st.comm, cpu / CLK_TCK]);
  }
  d.sort((x, y) => y[1] - x[1]);
  return d
    .slice(0, 3)
    .map(([c, t]) => `${c} ${t.toFixed(2)}s`)
    .join(', ');
}

// Waits (up to quietWaitS) until other processes use <= foreignMax cores over half a second;
// returns the last such figure.
export async function waitQuiet(quietWaitS, foreignMax) {
  const deadline = Date.now() + quietWaitS * 1000;
  for (;;) {
    const a = cpuSnapshot(0);
    await sleep(500);
    const load = cpuBetween(a, cpuSnapshot(0)).foreign;
    if (load <= foreignMax || Date.now() >= deadline) return load;
  }
}

// A measurement repeated while it had more than foreignMax cores of foreign load (foreignOf), up
// to maxAttempts, each after waitQuiet; keeps the least disturbed attempt and sets its
// `attempts` to the number made. once(attempt, idleLoad) measures; retryNote(r) is logged
// before a repetition.
export async function measureQuietly({
  maxAttempts,
  quietWaitS,
  foreignMax,
  foreignOf,
  once,
  retryNote,
}) {
  let best = null;
  for (let attempt = 1; attempt <= maxAttempts; attempt++) {
    const idleLoad = await waitQuiet(quietWaitS, foreignMax);
    const r = await once(attempt, idleLoad);
    if (!best || foreignOf(r) < foreignOf(best)) best = r;
    best.attempts = attempt;
    if (foreignOf(r) <= foreignMax || attempt === maxAttempts) break;
    console.log(retryNote(r));
  }
  return best;
}

// measureQuietly for results that carry their foreign load in cpu.foreign (cores), with the
// usual retry note; quiet: { maxAttempts, quietWaitS, foreignMax }.
export function measureQuietlyByCpu(quiet, once) {
  return measureQuietly({
    ...quiet,
    foreignOf: (r) => r.cpu.foreign,
    once,
    retryNote: (r) => `  (${r.cpu.foreign.toFixed(2)} cores of foreign load during the run; again)`,
  });
}

// ---------------------------------------------------------------------------------------------
// Figures and report.

export function median(xs) {
  const s = [...xs].sort((a, b) => a - b);
  if (s.length === 0) return Number.NaN;
  const m = Math.floor(s.length / 2);
  return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2;
}

// Nearest-rank percentile p (0..100) of an ascending array; NaN when empty.
function percentile(sorted, p) {
  if (!sorted.length) return Number.NaN;
  return sorted[Math.min(sorted.length - 1, Math.ceil((p / 100) * sorted.length) - 1)];
}

// Count, p50, p99 and max of a list of numbers.
export function dist(values) {
  const s = Float64Array.from(values).sort();
  return { n: s.length, p50: percentile(s, 50), p99: percentile(s, 99), max: s[s.length - 1] };
}

export const fmtInt = (n) => (Number.isFinite(n) ? Math.round(n).toLocaleString('en-US') : 'n/a');
export const fmtRatio = (x) => (Number.isFinite(x) ? `${x.toFixed(3)}x` : 'n/a');
export const pct = (x) => `${(x * 100).toFixed(1)}%`;
export const f1 = (x) => (Number.isFinite(x) ? x.toFixed(1) : 'n/a');
export const f2 = (x) => (Number.isFinite(x) ? x.toFixed(2) : 'n/a');
export const f3 = (x) => (Number.isFinite(x) ? x.toFixed(3) : 'n/a');
export const fmtMs = (x) => (Number.isFinite(x) ? (x < 10 ? x.toFixed(2) : x.toFixed(1)) : 'n/a');
export const pctOf = (a, b) => (b ? `${((100 * a) / b).toFixed(1)}%` : 'n/a');
export const fmtCpu = (c) =>
  `${c.client.toFixed(2)} / ${c.primary.toFixed(2)} / ${c.workers.toFixed(2)}`;

// Responses per worker, busiest first, padded with zeros to `expected` workers.
export function shares(byWorker, expected) {
  const counts = Object.values(byWorker).sort((a, b) => b - a);
  while (counts.length < expected) counts.push(0);
  const total = counts.reduce((a, b) => a + b, 0);
  return { counts, total, shares: counts.map((c) => (total ? c / total : 0)) };
}

export function errorSummary(r) {
  const parts = [];
  if (r.errors) parts.push(`errors ${r.errors}`);
  if (r.timeouts) parts.push(`timeouts ${r.timeouts}`);
  if (r.non2xx) parts.push(`non-2xx ${r.non2xx}`);
  if (r.resets) parts.push(`resets ${r.resets}`);
  if (r.mismatches) parts.push(`mismatches ${r.mismatches}`);
  if (r.noWorkerHeader) parts.push(`no x-worker ${r.noWorkerHeader}`);
  const ce = Object.entries(r.connErrors);
  if (ce.length) parts.push(`conn errors: ${ce.map(([k, v]) => `${k} ${v}`).join(', ')}`);
  return parts.length ? parts.join('; ') : '0';
}

// Text table lines, columns two spaces apart; with rightAlign the columns after the first are
// right-aligned.
export function formatTable(rows, { rightAlign = false } = {}) {
  const widths = rows[0].map((_, i) => Math.max(...rows.map((r) => r[i].length)));
  return rows.map((r) =>
    r.map((c, i) => (rightAlign && i > 0 ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  '),
  );
}

// The machine as the reports describe it: CPUs (count, model), memory, Node, the OS.
export function machine() {
  const cpus = os.cpus();
  return {
    cpus: cpus.length,
    model: cpus[0]?.model?.trim() || 'unknown',
    memGiB: (os.totalmem() / 2 ** 30).toFixed(1),
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
  };
}

export function packageVersion(name) {
  try {
    return require(`${name}/package.json`).version;
  } catch {
    return 'not installed';
  }
}

// Short HEAD commit, with a note when src/ has uncommitted changes; 'unknown' without git.
export function gitCommit() {
  let commit = 'unknown';
  try {
    const git = (...args) => execFileSync('git', args, { cwd: rootDir, encoding: 'utf8' }).trim();
    commit = git('rev-parse', '--short', 'HEAD');
    if (git('status', '--porcelain', '--', 'src')) commit += ' (src/ has uncommitted changes)';
  } catch {}
  return commit;
}

// Newest modification time of dist/ (ISO): the build the sticky-mesh servers load. Compared at
// the end of a run, because a rebuild during the run would mix two builds in one report.
export function distStamp() {
  const dist = path.join(rootDir, 'dist');
  const times = readdirSync(dist, { recursive: true }).map(
    (f) => statSync(path.join(dist, f)).mtimeMs,
  );
  return new Date(Math.max(...times)).toISOString();
}

// Replaces the section between `<!-- BEGIN marker` and `<!-- END marker -->` of file (appended
// if absent; the file is created if missing); the rest of the file is left as it is.
export function writeSection(file, marker, section) {
  const begin = `<!-- BEGIN ${marker}`;
  const end = `<!-- END ${marker} -->`;
  let doc = existsSync(file)
    ? readFileSync(file, 'utf8')
    : '# sticky-mesh benchmark results\n\nEach section is written by its own script; re-running a script replaces only its section.\n';
  const i = doc.indexOf(begin);
  const j = doc.indexOf(end);
  if (i !== -1 && j > i) doc = doc.slice(0, i) + section + doc.slice(j + end.length);
  else doc = `${doc.replace(/\s*$/, '')}\n\n${section}\n`;
  writeFileSync(file, doc);
}

// Writes a script's section of resultsFile (writeSection) and says so on stdout.
export function writeResults(marker, section) {
  writeSection(resultsFile, marker, section);
  console.log(`\nwrote ${path.relative(process.cwd(), resultsFile) || resultsFile}`);
}
