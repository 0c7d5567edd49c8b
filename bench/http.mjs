#!/usr/bin/env node
// HTTP balancer benchmark (issue 2).
//
//   node bench/http.mjs            (npm run bench builds dist/ first, then runs this)
//
// Measures, for seven servers answering with the same trivial handler (bench/servers/handler.mjs):
//   (a) sticky-mesh   sticky({ num: 2 }, () => http.createServer(h)).listen(port, '127.0.0.1')
//   (b) cluster-rr    node:cluster, SCHED_RR, each worker calls server.listen (not sticky)
//   (c) sticky-session 1.1.2, as its README says
//   (d) @socket.io/sticky 2.0.1, as its README says (least-connection)
//   (e) plain         one process, no cluster
//   (a1) sticky-mesh-1, (b1) cluster-rr-1: (a) and (b) with ONE worker (a server descriptor's
//       own `workers` overrides BENCH_WORKERS for the spawn env and every per-worker figure).
//       With one worker both balancers must send every connection to the same process, so the
//       routing policy is out of the picture and a1/b1 compares the handoff alone. Their "vs RR"
//       ratios are against (b1) (descriptor field `ref`); they never count toward the targets,
//       which stay (a) against (b) and (c). The report's "Why sticky routing costs throughput
//       here" paragraph tests the routing explanation of the 2-worker gap with these rows.
// two rates with autocannon (50 connections):
//   close      every request carries `connection: close`, so each request is a new TCP connection
//   keepalive  HTTP/1.1 keep-alive, connections reused
// in interleaved rounds (round 1: close a..e a1 b1, keepalive the same; round 2: ...), each
// measurement on a freshly started server that is killed (whole process group) afterwards.
// It prints a table and writes the "HTTP balancer (issue 2)" section of bench/RESULTS.md from
// what it measured; nothing in the output is hard-coded.
//
// Load spreading (why the client binds source addresses): on loopback every connection comes
// from 127.0.0.1, so any IP-keyed balancer (sticky-mesh IP mode, sticky-session) would send the
// whole load to one worker. autocannon 8 has no option to bind a local address, but it calls
// `opts.setupClient(client)` in the Client constructor before the first connect, and connects
// through `net.connect(port, host)` (lib/httpClient.js, Client.prototype._connect). setupClient
// below gives client i the fixed source address 127.0.0.(2 + i) (i = 0..connections-1; Linux
// routes all of 127.0.0.0/8 to lo) by replacing that client's `_connect` with a wrapper that,
// for the duration of the synchronous original `_connect` call only, swaps `net.connect` for
// `(port, host) => net.connect({ port, host, localAddress })` (that wrapper is `connectFrom` in
// bench/lib.mjs, shared with bench/proxy.mjs). Reconnects (after `connection: close`, errors,
// timeouts) go through the same wrapper, so a client keeps its address for the whole run, like
// 50 distinct users. The same client setup is used for every server and mode. setupClient also
// counts connections opened and the `x-worker` header of every response (the pid that
// answered), giving the per-worker distribution for every server.
// Server start/stop, CPU and background-load accounting and the report helpers are in
// bench/lib.mjs as well; what they do is described here and in the sections below.
//
// Environment knobs (defaults in brackets): BENCH_ROUNDS [5], BENCH_DURATION seconds [3],
// BENCH_WARMUP seconds [2], BENCH_CONNECTIONS [50], BENCH_WORKERS [2] (workers of (a)-(d);
// (a1) and (b1) always run 1), BENCH_PORT [a free one],
// BENCH_ONLY comma-separated server ids (partial run; RESULTS.md is then not written unless
// BENCH_WRITE=1), BENCH_MODES comma-separated mode ids, BENCH_ORDER fixed|rotate|reverse [fixed]
// (server order within a round), BENCH_FOREIGN_MAX cores [0.2], BENCH_MAX_ATTEMPTS [3] and
// BENCH_QUIET_WAIT seconds [60] (background-load handling, see "Background load" below),
// BENCH_SAVE file [$TMPDIR/sticky-mesh-bench-http.json when RESULTS.md is written] (raw
// measurements as JSON) and BENCH_REPLAY file (render the report from such a file, no measuring;
// the other BENCH_* settings must match the saved run's).
// With the defaults (5 rounds x 2 modes x 7 servers, 2 s warm-up + 3 s measured, ~5.9 s per
// measurement with start and stop) a run on a quiet machine takes about 7 minutes; repeated
// measurements (background load) add to that.

import { execFileSync } from 'node:child_process';
import { existsSync, readFileSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import * as lib from './lib.mjs';
import { errorSummary, fmtCpu, fmtInt, fmtRatio, intEnv, median, pct, shares } from './lib.mjs';

const resultsFile = path.join(lib.benchDir, 'RESULTS.md');

const ROUNDS = intEnv('BENCH_ROUNDS', 5);
const DURATION = intEnv('BENCH_DURATION', 3);
const WARMUP = intEnv('BENCH_WARMUP', 2);
const CONNECTIONS = intEnv('BENCH_CONNECTIONS', 50);
const WORKERS = intEnv('BENCH_WORKERS', 2);
const MIN_SHARE = 0.3;

const TARGETS = { close: 0.95, keepalive: 0.97 };

const ALL_SERVERS = [
  { id: 'sticky-mesh', label: '(a) sticky-mesh', file: 'sticky-mesh.mjs', clustered: true },
  { id: 'cluster-rr', label: '(b) cluster round-robin', file: 'cluster-rr.mjs', clustered: true },
  {
    id: 'sticky-session',
    label: '(c) sticky-session 1.1.2',
    file: 'sticky-session.mjs',
    clustered: true,
  },
  {
    id: 'socketio-sticky',
    label: '(d) @socket.io/sticky 2.0.1',
    file: 'socketio-sticky.mjs',
    clustered: true,
  },
  { id: 'plain', label: '(e) plain, one process', file: 'plain.mjs', clustered: false },
  // The same two servers with one worker: every connection goes to the only worker whatever the
  // balancer, so the routing policy is taken out and what is left is the cost of accepting a
  // connection in the primary and handing it to a worker. Compared with each other (`ref`), not
  // with the 2-worker round-robin, and never part of the issue targets.
  {
    id: 'sticky-mesh-1',
    label: '(a1) sticky-mesh, 1 worker',
    file: 'sticky-mesh.mjs',
    clustered: true,
    workers: 1,
    ref: 'cluster-rr-1',
  },
  {
    id: 'cluster-rr-1',
    label: '(b1) cluster round-robin, 1 worker',
    file: 'cluster-rr.mjs',
    clustered: true,
    workers: 1,
    ref: 'cluster-rr-1',
  },
];
// Worker processes a server runs (its own `workers`, else BENCH_WORKERS; 1 for plain), and the
// round-robin server its "vs RR" ratios are taken against (the one with the same worker count).
const workersOf = (s) => (s.clustered ? (s.workers ?? WORKERS) : 1);
const refOf = (s) => s.ref ?? 'cluster-rr';
const serverById = (id) => ALL_SERVERS.find((s) => s.id === id);
const ALL_MODES = [
  {
    id: 'close',
    label: 'new connection (`connection: close`)',
    short: 'new-conn',
    headers: { connection: 'close' },
  },
  { id: 'keepalive', label: 'keep-alive', short: 'keep-alive', headers: {} },
];

const SERVERS = pick(ALL_SERVERS, 'BENCH_ONLY');
const MODES = pick(ALL_MODES, 'BENCH_MODES');
const FULL_RUN = SERVERS.length === ALL_SERVERS.length && MODES.length === ALL_MODES.length;
const WRITE = FULL_RUN || process.env.BENCH_WRITE === '1';

function pick(all, envName) {
  const v = process.env[envName];
  if (!v) return all;
  const ids = v
    .split(',')
    .map((s) => s.trim())
    .filter(Boolean);
  for (const id of ids) {
    if (!all.some((x) => x.id === id)) throw new Error(`${envName}: unknown id ${id}`);
  }
  return all.filter((x) => ids.includes(x.id));
}

// ---------------------------------------------------------------------------------------------
// Client side: source-address spreading and per-response accounting (see header comment).

function makeClientSetup(counters) {
  let index = 0;
  return function setupClient(client) {
    const localAddress = lib.sourceAddress(index % CONNECTIONS);
    index += 1;
    lib.connectFrom(client, localAddress, () => {
      counters.connects += 1;
    });
    client.on('headers', (info) => {
      if (!counters.active) return;
      const pid = lib.workerHeader(info.headers);
      if (pid === undefined) counters.noWorkerHeader += 1;
      else counters.byWorker.set(pid, (counters.byWorker.get(pid) || 0) + 1);
    });
    lib.countConnErrors(client, counters);
  };
}

// ---------------------------------------------------------------------------------------------
// Server lifecycle (bench/lib.mjs): each measurement spawns the server detached (own process
// group), waits for its READY line and a probe, and kills the group afterwards.
// sticky-session's master binds all interfaces (::, dual stack); the others bind 127.0.0.1: the
// port must be free on both before a server starts.
const PORT_HOSTS = ['127.0.0.1', '::'];

// ---------------------------------------------------------------------------------------------
// Background load. This machine may be shared (builds and test runs of other work): CPU used by
// processes that are neither the bench nor the server under test skews a measurement. Before
// each measurement the bench waits (up to QUIET_WAIT_S) until the machine is quiet; during the
// measured run it estimates the foreign CPU as busy CPU time from /proc/stat (user + nice +
// system) minus the CPU time of the bench process and of the server's process group, in cores.
// A measurement with more than FOREIGN_MAX cores of foreign load is repeated (up to
// MAX_ATTEMPTS, keeping the attempt with the least foreign load); the figure is reported.

const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.2);
const MAX_ATTEMPTS = intEnv('BENCH_MAX_ATTEMPTS', 3);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', 60);

// ---------------------------------------------------------------------------------------------
// One measurement.

function measure(server, mode, port, round) {
  return lib.measureQuietly({
    maxAttempts: MAX_ATTEMPTS,
    quietWaitS: QUIET_WAIT_S,
    foreignMax: FOREIGN_MAX,
    foreignOf: (r) => r.foreign,
    once: async (attempt, idleLoad) => ({
      ...(await measureOnce(server, mode, port, round)),
      attempt,
      idleLoad,
    }),
    retryNote: (r) =>
      `  (round ${round} ${mode.id} ${server.id}: ${r.foreign.toFixed(2)} cores of foreign CPU load during the run [${r.foreignBy}], ${fmtInt(r.rps)} req/s, retrying)`,
  });
}

async function measureOnce(server, mode, port, round) {
  const warm = lib.newCounters();
  const c = lib.newCounters({ active: true });
  const m = await lib.measureOnFreshServer(
    {
      file: server.file,
      name: server.id,
      workers: workersOf(server),
      port,
      hosts: PORT_HOSTS,
      probe: { localAddress: lib.sourceAddress(0) },
      warmup: WARMUP,
      duration: DURATION,
      freeAfter: true,
    },
    (seconds, measured) =>
      lib.runAutocannon({
        port,
        connections: CONNECTIONS,
        seconds,
        headers: mode.headers,
        setupClient: makeClientSetup(measured ? c : warm),
      }),
  );
  const r = m.result;
  const cpu = { client: m.cpu.client, primary: m.cpu.primary };
  cpu.workers = Math.max(0, m.cpu.ours - cpu.client - cpu.primary);
  const rps = r.duration > 0 ? r.requests.total / r.duration : 0;
  return {
    round,
    server: server.id,
    mode: mode.id,
    rps,
    requests: r.requests.total,
    duration: r.duration,
    ok2xx: r['2xx'],
    non2xx: r.non2xx,
    errors: r.errors,
    timeouts: r.timeouts,
    resets: r.resets,
    mismatches: r.mismatches,
    connects: c.connects,
    connErrors: Object.fromEntries(c.connErrors),
    byWorker: Object.fromEntries(c.byWorker),
    noWorkerHeader: c.noWorkerHeader,
    foreign: m.cpu.foreign,
    foreignBy: lib.foreignTop(m.before, m.after),
    oursCores: m.cpu.ours,
    cpu,
    serverStderr: m.stderr ? m.stderr.split('\n').slice(0, 5).join(' | ') : '',
  };
}

// ---------------------------------------------------------------------------------------------
// Figures and report (median, formatting, shares, errorSummary: bench/lib.mjs).

const spread = (xs) => (Math.max(...xs) - Math.min(...xs)) / median(xs);

function machineInfo() {
  let cpu = 'unknown';
  try {
    const m = readFileSync('/proc/cpuinfo', 'utf8').match(/^model name\s*:\s*(.+)$/m);
    if (m) cpu = m[1].trim();
  } catch {}
  let mem = `${(os.totalmem() / 2 ** 30).toFixed(1)} GiB`;
  try {
    const m = readFileSync('/proc/meminfo', 'utf8').match(/^MemTotal:\s*(\d+) kB/m);
    if (m) mem = `${(Number(m[1]) / 2 ** 20).toFixed(1)} GiB (MemTotal ${m[1]} kB)`;
  } catch {}
  let nproc = String(os.availableParallelism());
  try {
    nproc = execFileSync('nproc', { encoding: 'utf8' }).trim();
  } catch {}
  return {
    nproc,
    cpu,
    mem,
    node: process.version,
    os: `${os.type()} ${os.release()} ${os.arch()}`,
    autocannon: lib.packageVersion('autocannon'),
    stickySession: lib.packageVersion('sticky-session'),
    socketioSticky: lib.packageVersion('@socket.io/sticky'),
    socketio: lib.packageVersion('socket.io'),
    commit: lib.gitCommit(),
  };
}

function summarize(results) {
  const med = {};
  for (const s of SERVERS) {
    med[s.id] = {};
    for (const m of MODES) {
      med[s.id][m.id] = median(
        results.filter((r) => r.server === s.id && r.mode === m.id).map((r) => r.rps),
      );
    }
  }
  const ratio = (sid, mid) =>
    (med[sid]?.[mid] ?? Number.NaN) / (med[refOf(serverById(sid))]?.[mid] ?? Number.NaN);
  return { med, ratio };
}

function targetChecks(med, ratio) {
  const checks = [];
  const has = (id) => SERVERS.some((s) => s.id === id);
  for (const m of MODES) {
    if (has('sticky-mesh') && has('cluster-rr')) {
      const v = ratio('sticky-mesh', m.id);
      checks.push({
        text: `sticky-mesh ${m.short} rate >= ${TARGETS[m.id].toFixed(2)}x cluster round-robin`,
        value: fmtRatio(v),
        met: v >= TARGETS[m.id],
      });
    }
  }
  for (const m of MODES) {
    if (has('sticky-mesh') && has('sticky-session')) {
      const a = med['sticky-mesh'][m.id];
      const c = med['sticky-session'][m.id];
      checks.push({
        text: `sticky-mesh ${m.short} rate >= sticky-session`,
        value: `${fmtInt(a)} vs ${fmtInt(c)} req/s (${fmtRatio(a / c)})`,
        met: a >= c,
      });
    }
  }
  return checks;
}

function distributionWarnings(results) {
  const warnings = [];
  for (const r of results) {
    if (r.server !== 'sticky-mesh') continue;
    const { shares: sh } = shares(r.byWorker, workersOf(serverById(r.server)));
    const low = Math.min(...sh);
    if (low < MIN_SHARE) {
      warnings.push(
        `WARNING: sticky-mesh round ${r.round} ${r.mode}: one worker got ${pct(low)} of the requests (< ${pct(MIN_SHARE)}); the load was not spread across both workers.`,
      );
    }
  }
  return warnings;
}

// Per-round ratios of server sid to another server (its round-robin reference by default).
function perRoundRatios(results, sid, mid, refId = refOf(serverById(sid))) {
  const xs = [];
  for (let round = 1; round <= ROUNDS; round++) {
    const rr = results.find((r) => r.round === round && r.mode === mid && r.server === refId);
    const x = results.find((r) => r.round === round && r.mode === mid && r.server === sid);
    if (rr && x) xs.push(x.rps / rr.rps);
  }
  return xs;
}

function perRoundRatioMedian(results, sid, mid, refId) {
  return median(perRoundRatios(results, sid, mid, refId));
}

// Facts worth a line of their own, derived from the measurements (nothing here is hard-coded).
function observations(results) {
  const out = [];
  const modeShort = (id) => MODES.find((m) => m.id === id).short;
  for (const s of SERVERS) {
    const rs = results.filter((r) => r.server === s.id);
    // keep-alive mode but (nearly) one TCP connection per request: the server closes them
    const ka = rs.filter((r) => r.mode === 'keepalive');
    const kaConns = ka.reduce((a, r) => a + r.connects, 0);
    const kaReqs = ka.reduce((a, r) => a + r.requests, 0);
    if (ka.length && kaConns > 4 * CONNECTIONS * ka.length) {
      out.push(
        `${s.id}: in keep-alive mode it opened ${fmtInt(kaConns)} TCP connections for ${fmtInt(kaReqs)} requests (${(kaReqs / kaConns).toFixed(2)} requests per connection): the server closes connections, so its keep-alive figure is a new-connection rate.`,
      );
    }
    if (s.clustered) {
      for (const m of MODES) {
        const low = rs
          .filter((r) => r.mode === m.id)
          .map((r) => Math.min(...shares(r.byWorker, workersOf(s)).shares));
        if (low.length && Math.max(...low) < MIN_SHARE) {
          out.push(
            `${s.id} ${modeShort(m.id)}: one worker got at most ${pct(Math.max(...low))} of the requests in every round (the load was not spread).`,
          );
        }
      }
    }
    const bad = rs.filter((r) => errorSummary(r) !== '0');
    for (const r of bad)
      out.push(`${s.id} round ${r.round} ${modeShort(r.mode)}: ${errorSummary(r)}.`);
    const noisy = rs.filter((r) => r.foreign > FOREIGN_MAX);
    for (const r of noisy) {
      out.push(
        `${s.id} round ${r.round} ${modeShort(r.mode)}: still ${r.foreign.toFixed(2)} cores of foreign CPU load after ${r.attempts} attempts (${r.foreignBy}); that figure is less reliable.`,
      );
    }
  }
  for (const ref of SERVERS.filter((s) => SERVERS.some((x) => refOf(x) === s.id))) {
    for (const m of MODES) {
      const xs = results.filter((r) => r.mode === m.id && r.server === ref.id).map((r) => r.rps);
      if (xs.length > 1) {
        out.push(
          `${ref.label} ${modeShort(m.id)} varied by ${pct(spread(xs))} of its median between rounds (min ${fmtInt(Math.min(...xs))}, max ${fmtInt(Math.max(...xs))} req/s): read ratios with that noise in mind.`,
        );
      }
    }
  }
  return out;
}

// The 1-worker comparison and the routing explanation it tests (see "Why sticky routing costs
// throughput here" in the report). Everything is computed from the measurements; the verdict
// follows fixed rules stated in the text. Returns null unless a, b, a1 and b1 were all measured.
const ROUTING_IDS = ['sticky-mesh', 'cluster-rr', 'sticky-mesh-1', 'cluster-rr-1'];
const EQUAL_TOL = 0.05; // |ratio - 1| within this counts as "equal"
const CPU_TOL = 0.1; // server CPU per request within this (relative) counts as "the same"
const IDLE_TOL = 0.05; // cores of idle CPU difference that count as a difference

function routingAnalysis(results, med, ratio) {
  if (!ROUTING_IDS.every((id) => SERVERS.some((s) => s.id === id))) return null;
  const nproc = os.availableParallelism();
  const rows = (sid, mid) => results.filter((r) => r.server === sid && r.mode === mid);
  // medians over rounds of: server CPU (primary + workers) per request in microseconds, and
  // idle CPU (cores not used by anyone: nproc - bench - server group - foreign)
  const usPerReq = (sid, mid, part) =>
    median(
      rows(sid, mid).map((r) => {
        const cores = part === 'server' ? r.cpu.primary + r.cpu.workers : r.cpu[part];
        return (cores / r.rps) * 1e6;
      }),
    );
  const idle = (sid, mid) =>
    median(rows(sid, mid).map((r) => Math.max(0, nproc - r.oursCores - r.foreign)));
  const per = {};
  for (const m of MODES) {
    const one = perRoundRatios(results, 'sticky-mesh-1', m.id);
    per[m.id] = {
      two: ratio('sticky-mesh', m.id),
      twoRounds: perRoundRatioMedian(results, 'sticky-mesh', m.id),
      session: SERVERS.some((s) => s.id === 'sticky-session')
        ? ratio('sticky-session', m.id)
        : Number.NaN,
      one: ratio('sticky-mesh-1', m.id),
      oneRounds: median(one),
      oneMin: Math.min(...one),
      oneMax: Math.max(...one),
      scaleRR: med['cluster-rr'][m.id] / med['cluster-rr-1'][m.id],
      scaleSM: med['sticky-mesh'][m.id] / med['sticky-mesh-1'][m.id],
      scaleRRRounds: perRoundRatioMedian(results, 'cluster-rr', m.id, 'cluster-rr-1'),
      scaleSMRounds: perRoundRatioMedian(results, 'sticky-mesh', m.id, 'sticky-mesh-1'),
      us: Object.fromEntries(
        ROUTING_IDS.map((id) => [
          id,
          Object.fromEntries(
            ['server', 'primary', 'workers', 'client'].map((k) => [k, usPerReq(id, m.id, k)]),
          ),
        ]),
      ),
      idle: Object.fromEntries(ROUTING_IDS.map((id) => [id, idle(id, m.id)])),
      // CPU of the load generator (the bench process) in the 2-worker runs of a and b
      client: median(
        [...rows('sticky-mesh', m.id), ...rows('cluster-rr', m.id)].map((r) => r.cpu.client),
      ),
    };
  }
  const oneWorkerLine = `Routing taken out (1 worker each, not a target): sticky-mesh (a1) / cluster round-robin (b1) = ${MODES.map(
    (m) =>
      `${m.short} ${fmtRatio(per[m.id].one)} (median of per-round ratios ${fmtRatio(per[m.id].oneRounds)}, rounds ${fmtRatio(per[m.id].oneMin)}..${fmtRatio(per[m.id].oneMax)})`,
  ).join(
    '; ',
  )}. With 2 workers: ${MODES.map((m) => `${m.short} ${fmtRatio(per[m.id].two)}`).join(', ')}.`;

  // Verdict, on new-connection mode (the only mode with a handoff per request), by fixed
  // rules applied to both ratio figures (ratio of medians, median of per-round ratios): with
  // one worker >= 1 - EQUAL_TOL and less than half the 2-worker gap left: supported; the
  // 1-worker ratio no more than EQUAL_TOL above the 2-worker one: contradicted (the gap is
  // there without any routing choice); in between: supported in part. When the two figures
  // fall in different classes the run is called inconclusive.
  const c = per.close;
  let verdict = 'not evaluated (new-conn mode was not measured)';
  let supported = null;
  if (c) {
    const classify = (one, two) => {
      const gap2 = 1 - two;
      const gap1 = 1 - one;
      if (gap2 <= EQUAL_TOL) return { cls: 'no-gap', one, two };
      if (one >= 1 - EQUAL_TOL && gap1 <= gap2 / 2) return { cls: 'support', one, two };
      if (one <= two + EQUAL_TOL) return { cls: 'contradict', one, two };
      return { cls: 'partial', one, two, left: Math.max(0, gap1) / gap2 };
    };
    const say = (v) =>
      ({
        'no-gap': `no 2-worker gap to explain (sticky-mesh at ${fmtRatio(v.two)} of round-robin)`,
        support: `sticky-mesh at ${fmtRatio(v.one)} of round-robin with one worker against ${fmtRatio(v.two)} with two: the handoff does not account for the 2-worker gap, routing does`,
        contradict: `sticky-mesh at ${fmtRatio(v.one)} of round-robin with one worker, where routing cannot matter, and ${fmtRatio(v.two)} with two: the gap is there without any routing choice, so it comes from the per-connection handoff`,
        partial: `sticky-mesh at ${fmtRatio(v.one)} of round-robin with one worker and ${fmtRatio(v.two)} with two: about ${pct(v.left)} of the 2-worker gap remains without any routing choice (handoff cost, contrary to "the same cost"); the rest appears only with two workers, consistent with routing`,
      })[v.cls];
    const a = classify(c.one, c.two);
    const b = classify(c.oneRounds, c.twoRounds);
    const word = {
      'no-gap': 'nothing to explain in this run',
      support: 'the data support it',
      contradict: 'the data contradict it',
      partial: 'the data support it only in part',
    };
    if (a.cls === b.cls) {
      supported = a.cls === 'support' ? true : a.cls === 'no-gap' ? null : false;
      verdict = `${word[a.cls]}: by the ratio of medians, ${say(a)}; by the median of per-round ratios, ${say(b)}`;
    } else {
      const short = {
        'no-gap': 'finds no gap to explain',
        support: 'supports it',
        contradict: 'contradicts it',
        partial: 'supports it only in part',
      };
      verdict = `inconclusive in this run, the two figures disagree: the ratio of medians ${short[a.cls]} (${say(a)}); the median of per-round ratios ${short[b.cls]} (${say(b)})`;
    }
  }
  return { per, oneWorkerLine, verdict, supported, nproc };
}

function renderRoutingSection(L, a) {
  const c = a.per.close;
  L.push('### Why sticky routing costs throughput here');
  L.push('');
  L.push(
    "Explanation (a hypothesis, tested by the 1-worker rows): the per-connection handoff (primary accepts, passes the handle to a worker over IPC) costs the same in sticky-mesh and in cluster round-robin; the 2-worker new-conn gap comes from routing itself. Node's round-robin hands each new connection to whichever worker is free (`RoundRobinHandle` only sends to a worker that has acknowledged its previous handle), while any sticky balancer must send a client to its own worker even when that worker is momentarily descheduled on this " +
      `${a.nproc}-core box, where the load generator itself takes ${c ? `${c.client.toFixed(2)} core (measured, new-conn)` : 'a large part of a core'}; that worker's clients then wait while the other worker idles. sticky-session (same design) should then show the same gap, and with one worker (every connection goes to the only worker under either balancer) the gap should disappear.`,
  );
  L.push('');
  if (c) {
    L.push(
      `- new-conn with 2 workers: sticky-mesh ${fmtRatio(c.two)} of round-robin (median of per-round ratios ${fmtRatio(c.twoRounds)})${Number.isFinite(c.session) ? `, sticky-session ${fmtRatio(c.session)}` : ''}.`,
    );
    L.push(
      `- new-conn with 1 worker: sticky-mesh ${fmtRatio(c.one)} of round-robin (median of per-round ratios ${fmtRatio(c.oneRounds)}, rounds ${fmtRatio(c.oneMin)}..${fmtRatio(c.oneMax)}).`,
    );
    L.push(
      `- Gain from the second worker (2-worker / 1-worker rate, new-conn; ratio of medians, median of per-round ratios in brackets): round-robin ${fmtRatio(c.scaleRR)} (${fmtRatio(c.scaleRRRounds)}), sticky-mesh ${fmtRatio(c.scaleSM)} (${fmtRatio(c.scaleSMRounds)}). The explanation predicts that sticky-mesh gains less${c.scaleSM < c.scaleRR && c.scaleSMRounds < c.scaleRRRounds ? '; it does by both figures' : c.scaleSM >= c.scaleRR && c.scaleSMRounds >= c.scaleRRRounds ? '; it does not, by either figure' : '; the two figures disagree'}.`,
    );
    const us = c.us;
    const q = us['sticky-mesh-1'].server / us['cluster-rr-1'].server;
    const qp = us['sticky-mesh-1'].primary / us['cluster-rr-1'].primary;
    const cpuSame = `${
      Math.abs(q - 1) <= CPU_TOL
        ? `within ${pct(CPU_TOL)} (${fmtRatio(q)}): the same total, as the explanation assumes`
        : `${fmtRatio(q)} of round-robin's, outside ${pct(CPU_TOL)}: the handoff costs ${q > 1 ? 'more' : 'less'} CPU in sticky-mesh than the explanation assumes`
    }; the primary alone (where the handoff is sent) ${fmtRatio(qp)}${Math.abs(qp - 1) <= CPU_TOL ? '' : ` of round-robin's, ${qp > 1 ? 'more' : 'less'} than "the same cost"`}`;
    const cpuCell = (id) =>
      `${us[id].server.toFixed(0)} µs (primary ${us[id].primary.toFixed(0)} + workers ${us[id].workers.toFixed(0)}; client ${us[id].client.toFixed(0)})`;
    L.push(
      `- CPU per new-conn request, median over rounds (server = primary + workers; the client's figure is the same code for every server, so it shows how much of a difference is mere efficiency loss at a lower rate): 1 worker sticky-mesh ${cpuCell('sticky-mesh-1')} vs round-robin ${cpuCell('cluster-rr-1')}, server ${cpuSame}; 2 workers sticky-mesh ${cpuCell('sticky-mesh')} vs round-robin ${cpuCell('cluster-rr')}.`,
    );
    L.push(
      `- Idle CPU during the 2-worker new-conn runs (${a.nproc} cores minus everything measured), median: sticky-mesh ${c.idle['sticky-mesh'].toFixed(2)} cores, round-robin ${c.idle['cluster-rr'].toFixed(2)} cores${c.idle['sticky-mesh'] > c.idle['cluster-rr'] + IDLE_TOL ? ` (sticky-mesh leaves more than ${IDLE_TOL} cores more unused while doing less work: its clients wait rather than compute)` : ` (within ${IDLE_TOL} cores or less for sticky-mesh: no sign of clients waiting on an idle machine; the box is ${Math.min(c.idle['sticky-mesh'], c.idle['cluster-rr']) < 0.25 ? 'close to saturated' : 'not saturated'})`}.`,
    );
  }
  const k = a.per.keepalive;
  if (k) {
    L.push(
      `- keep-alive (one handoff per connection, then none): 1 worker ${fmtRatio(k.one)}, 2 workers ${fmtRatio(k.two)}.`,
    );
  }
  L.push('');
  L.push(`Verdict (rules: see \`routingAnalysis\` in \`bench/http.mjs\`): ${a.verdict}.`);
  L.push('');
}

function renderSection(results, info, startedAt, elapsedS, replayedAt = null) {
  const { med, ratio } = summarize(results);
  const checks = targetChecks(med, ratio);
  const warnings = distributionWarnings(results);
  const routing = routingAnalysis(results, med, ratio);
  const own = SERVERS.filter((s) => s.clustered && s.workers !== undefined);
  const L = [];
  L.push('<!-- BEGIN http-balancer (written by bench/http.mjs; do not edit by hand) -->');
  L.push('## HTTP balancer (issue 2)');
  L.push('');
  L.push(
    `Run: ${startedAt.toISOString()} (${elapsedS.toFixed(0)} s), \`node bench/http.mjs\`, sticky-mesh commit ${info.commit}.${replayedAt ? ` Report re-rendered ${replayedAt.toISOString()} from that run's saved measurements (\`BENCH_REPLAY\`); nothing was re-measured${info.replayNote ? `; ${info.replayNote}` : ''}.` : ''}`,
  );
  L.push('');
  L.push('Machine:');
  L.push('');
  L.push(`- nproc: ${info.nproc}; CPU: ${info.cpu}; memory: ${info.mem}`);
  L.push(`- Node ${info.node}; ${info.os}`);
  L.push(
    `- autocannon ${info.autocannon}; sticky-session ${info.stickySession}; @socket.io/sticky ${info.socketioSticky}; socket.io ${info.socketio}`,
  );
  L.push('');
  L.push('Method:');
  L.push('');
  L.push(
    `- ${WORKERS} workers for every clustered server${own.length ? ` except ${own.map((s) => `${s.label.split(' ')[0]} with ${workersOf(s)}`).join(' and ')} (the same server files, started with that worker count)` : ''}; the same handler everywhere (\`bench/servers/handler.mjs\`: 200, 2-byte body, an \`x-worker\` pid header). Each server is its own child process (\`bench/servers/*.mjs\`), started fresh for every measurement and killed with its whole process group afterwards; the port is checked free before the next start.`,
  );
  L.push(
    `- autocannon (programmatic, in the bench process), ${CONNECTIONS} connections, pipelining 1, ${WARMUP} s warm-up (not counted) then ${DURATION} s measured; req/s = completed requests / measured duration.`,
  );
  L.push(
    '- Modes: **new-conn** sends `connection: close` on every request, so each request is a new TCP connection (autocannon reconnects); **keep-alive** reuses connections.',
  );
  L.push(
    `- Load spreading: autocannon client i connects from source address 127.0.0.${2}..127.0.0.${1 + Math.min(CONNECTIONS, 253)} (one fixed address per connection, via a \`setupClient\` shim that passes \`localAddress\` to \`net.connect\`; see the header of \`bench/http.mjs\`). Applied identically to all servers.`,
  );
  L.push(
    `- ${ROUNDS} interleaved rounds; in each round, for each mode, the servers run in the order ${roundOrder(
      1,
    )
      .map((s) => s.id)
      .join(
        ', ',
      )}${ORDER === 'rotate' ? ' (rotated by one server each round)' : ''}. Figures are medians over rounds; ratios are median / median of cluster round-robin from this same run.`,
  );
  L.push(
    `- Background load: before each measurement the bench waits (up to ${QUIET_WAIT_S} s) until processes other than itself use <= ${FOREIGN_MAX} cores; during the measured run it estimates foreign CPU (busy time from /proc/stat minus the bench's and the server group's own CPU time). A run with more than ${FOREIGN_MAX} cores of foreign load is repeated, up to ${MAX_ATTEMPTS} attempts, keeping the least disturbed one (see the raw table).`,
  );
  L.push(
    '- (d) follows its README: `setupMaster(httpServer, { loadBalancingMethod: "least-connection" })`, workers forked with `serialization: "advanced"`, `setupWorker(io)` on a socket.io Server attached to the handler\'s http server. `@socket.io/cluster-adapter` (broadcast relay, no part in routing) is not used.',
  );
  L.push('');
  L.push('### Median requests/s');
  L.push('');
  if (own.length) {
    L.push(
      `"vs RR" is the ratio to cluster round-robin with the same worker count: ${SERVERS.filter(
        (s) => SERVERS.some((x) => refOf(x) === s.id),
      )
        .map(
          (ref) =>
            `${ref.label.split(' ')[0]} for ${SERVERS.filter((x) => refOf(x) === ref.id)
              .map((x) => x.label.split(' ')[0])
              .join(', ')}`,
        )
        .join('; ')}.`,
    );
    L.push('');
  }
  const head = ['server'];
  for (const m of MODES)
    head.push(
      `${m.short} req/s`,
      `${m.short} vs RR`,
      `${m.short} vs RR (median of per-round ratios)`,
    );
  L.push(`| ${head.join(' | ')} |`);
  L.push(`|${head.map((_, i) => (i === 0 ? '---' : '---:')).join('|')}|`);
  for (const s of SERVERS) {
    const row = [s.label];
    for (const m of MODES) {
      row.push(
        fmtInt(med[s.id][m.id]),
        fmtRatio(ratio(s.id, m.id)),
        fmtRatio(perRoundRatioMedian(results, s.id, m.id)),
      );
    }
    L.push(`| ${row.join(' | ')} |`);
  }
  L.push('');
  L.push('### Targets');
  L.push('');
  L.push(
    'Evaluated on the ratio of medians (the "vs RR" column). The median of per-round ratios is shown beside it because a pair measured seconds apart shares the machine\'s drift.',
  );
  L.push('');
  if (checks.length === 0)
    L.push('(not evaluated: sticky-mesh or a reference was not part of this run)');
  else {
    L.push('| target | measured | met |');
    L.push('|---|---|---|');
    for (const c of checks) L.push(`| ${c.text} | ${c.value} | ${c.met ? 'yes' : '**NO**'} |`);
  }
  L.push('');
  if (routing) {
    L.push(routing.oneWorkerLine);
    L.push('');
    renderRoutingSection(L, routing);
  }
  L.push('### Per-worker distribution (responses per worker, all rounds)');
  L.push('');
  L.push(
    'Counted from the `x-worker` header of every measured response; shares sorted high to low.',
  );
  L.push('');
  L.push('| server | mode | requests | worker shares |');
  L.push('|---|---|---:|---|');
  for (const s of SERVERS) {
    for (const m of MODES) {
      const agg = {};
      for (const r of results.filter((x) => x.server === s.id && x.mode === m.id)) {
        // pids differ per measurement: aggregate by rank (busiest worker first)
        const { counts } = shares(r.byWorker, workersOf(s));
        counts.forEach((c, i) => {
          agg[i] = (agg[i] || 0) + c;
        });
      }
      const { total, shares: sh } = shares(agg, workersOf(s));
      L.push(`| ${s.id} | ${m.short} | ${fmtInt(total)} | ${sh.map(pct).join(' / ')} |`);
    }
  }
  L.push('');
  if (warnings.length) {
    for (const w of warnings) L.push(`**${w}**`, '');
  } else if (SERVERS.some((s) => s.id === 'sticky-mesh')) {
    L.push(
      `sticky-mesh: every measurement gave each worker at least ${pct(MIN_SHARE)} of the requests.`,
    );
    L.push('');
  }
  L.push('### Per-round raw figures');
  L.push('');
  L.push(
    '| round | mode | server | req/s | requests | TCP connections opened | worker shares | errors / timeouts / non-2xx | CPU cores: client / primary / workers | foreign CPU (cores) | attempts |',
  );
  L.push('|---:|---|---|---:|---:|---:|---|---|---|---:|---:|');
  for (const r of results) {
    const { shares: sh } = shares(r.byWorker, workersOf(serverById(r.server)));
    const mode = MODES.find((m) => m.id === r.mode);
    L.push(
      `| ${r.round} | ${mode.short} | ${r.server} | ${fmtInt(r.rps)} | ${fmtInt(r.requests)} | ${fmtInt(r.connects)} | ${sh.map(pct).join(' / ')} | ${errorSummary(r)} | ${fmtCpu(r.cpu)} | ${r.foreign.toFixed(2)} | ${r.attempts} |`,
    );
  }
  L.push('');
  L.push(
    `Per-round ratio to cluster round-robin (same round, same mode${own.length ? '; each server against the round-robin with its own worker count, as in "vs RR"' : ''}):`,
  );
  L.push('');
  L.push(`| round | mode | ${SERVERS.map((s) => s.id).join(' | ')} |`);
  L.push(`|---:|---|${SERVERS.map(() => '---:').join('|')}|`);
  for (let round = 1; round <= ROUNDS; round++) {
    for (const m of MODES) {
      const cells = SERVERS.map((s) => {
        const at = (id) =>
          results.find((x) => x.round === round && x.mode === m.id && x.server === id);
        const r = at(s.id);
        const rr = at(refOf(s));
        return r && rr ? fmtRatio(r.rps / rr.rps) : 'n/a';
      });
      L.push(`| ${round} | ${m.short} | ${cells.join(' | ')} |`);
    }
  }
  for (const m of MODES) {
    const cells = SERVERS.map((s) => fmtRatio(perRoundRatioMedian(results, s.id, m.id)));
    L.push(`| median | ${m.short} | ${cells.join(' | ')} |`);
  }
  const obs = observations(results);
  if (obs.length) {
    L.push('');
    L.push('### Observations (generated from the figures above)');
    L.push('');
    for (const o of obs) L.push(`- ${o}`);
  }
  const stderrNotes = results.filter((r) => r.serverStderr);
  if (stderrNotes.length) {
    L.push('');
    L.push('Server stderr (first lines) during measurements:');
    L.push('');
    for (const r of stderrNotes)
      L.push(`- round ${r.round} ${r.mode} ${r.server}: \`${r.serverStderr.replace(/`/g, "'")}\``);
  }
  L.push('<!-- END http-balancer -->');
  return { text: L.join('\n'), checks, warnings, med, ratio, routing };
}

function printTable(med, ratio, checks, warnings, results, routing) {
  const rows = [['server', ...MODES.flatMap((m) => [`${m.short} req/s`, 'vs RR'])]];
  for (const s of SERVERS)
    rows.push([
      s.label,
      ...MODES.flatMap((m) => [fmtInt(med[s.id][m.id]), fmtRatio(ratio(s.id, m.id))]),
    ]);
  console.log('');
  console.log(
    `Median over ${ROUNDS} rounds (${CONNECTIONS} connections, ${DURATION} s each, ${WORKERS} workers unless the label says otherwise; vs RR = vs round-robin with the same worker count):`,
  );
  for (const line of lib.formatTable(rows, { rightAlign: true })) console.log(line);
  console.log('');
  for (const c of checks)
    console.log(`target: ${c.text}: ${c.value} -> ${c.met ? 'met' : 'NOT MET'}`);
  if (routing) {
    console.log(routing.oneWorkerLine);
    console.log(`Routing explanation: ${routing.verdict}.`);
  }
  for (const w of warnings) console.log(w);
  const bad = results.filter((r) => errorSummary(r) !== '0');
  for (const r of bad) console.log(`round ${r.round} ${r.mode} ${r.server}: ${errorSummary(r)}`);
}

// ---------------------------------------------------------------------------------------------

// Order of the servers within a round. 'fixed' (default): a, b, c, d, e in every round.
// 'rotate': round r starts at server r-1 (a..e, b..a, c..b, ...) so no server always runs first.
const ORDER = process.env.BENCH_ORDER || 'fixed';
if (!['fixed', 'rotate', 'reverse'].includes(ORDER))
  throw new Error(`BENCH_ORDER: fixed, rotate or reverse, got ${ORDER}`);
function roundOrder(round) {
  if (ORDER === 'reverse') return [...SERVERS].reverse();
  if (ORDER === 'fixed') return SERVERS;
  const k = (round - 1) % SERVERS.length;
  return [...SERVERS.slice(k), ...SERVERS.slice(0, k)];
}

// Everything a report depends on besides the measurements; a replay must run with the same.
function runConfig() {
  return {
    ROUNDS,
    DURATION,
    WARMUP,
    CONNECTIONS,
    WORKERS,
    FOREIGN_MAX,
    MAX_ATTEMPTS,
    QUIET_WAIT_S,
    ORDER,
    servers: SERVERS.map((s) => s.id),
    modes: MODES.map((m) => m.id),
  };
}

async function measureAll(info) {
  const port = await lib.findPort(PORT_HOSTS);
  console.log(
    `HTTP balancer bench: ${SERVERS.map((s) => s.id).join(', ')}; modes ${MODES.map((m) => m.id).join(', ')}; ${ROUNDS} rounds x ${WARMUP}+${DURATION} s; ${CONNECTIONS} connections from 127.0.0.2..127.0.0.${1 + Math.min(CONNECTIONS, 253)}; port ${port}`,
  );
  console.log(`machine: nproc ${info.nproc}, ${info.cpu}, ${info.mem}, Node ${info.node}`);
  const results = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const mode of MODES) {
      for (const server of roundOrder(round)) {
        const r = await measure(server, mode, port, round);
        results.push(r);
        const { shares: sh } = shares(r.byWorker, workersOf(server));
        console.log(
          `round ${round} ${mode.short.padEnd(10)} ${server.id.padEnd(16)} ${fmtInt(r.rps).padStart(7)} req/s  conns ${fmtInt(r.connects).padStart(7)}  workers ${sh.map(pct).join('/')}  cpu c/p/w ${fmtCpu(r.cpu)}  foreign ${r.foreign.toFixed(2)}  errors: ${errorSummary(r)}`,
        );
      }
    }
  }
  return results;
}

// BENCH_REPLAY=file: render (and, for a full run, write) the report from measurements saved by
// an earlier run instead of measuring; the BENCH_* settings must be the ones of that run.
function loadReplay(file) {
  const saved = JSON.parse(readFileSync(file, 'utf8'));
  const want = JSON.stringify(runConfig());
  const got = JSON.stringify(saved.config);
  if (want !== got)
    throw new Error(
      `BENCH_REPLAY ${file}: saved with settings ${got}, this run has ${want}; set the same BENCH_* variables`,
    );
  return saved;
}

async function main() {
  const replayFile = process.env.BENCH_REPLAY;
  if (
    !replayFile &&
    SERVERS.some((s) => s.id.startsWith('sticky-mesh')) &&
    !existsSync(path.join(lib.rootDir, 'dist', 'index.js'))
  ) {
    console.error(
      'dist/index.js is missing: run `npm run build` first (or `npm run bench`), or set BENCH_ONLY to skip sticky-mesh.',
    );
    process.exit(2);
  }
  let startedAt;
  let elapsedS;
  let info;
  let results;
  let replayedAt = null;
  if (replayFile) {
    const saved = loadReplay(replayFile);
    ({ info, results, elapsedS } = saved);
    if (saved.note) info = { ...info, replayNote: saved.note };
    startedAt = new Date(saved.startedAt);
    replayedAt = new Date();
    console.log(`replaying ${results.length} measurements from ${replayFile}`);
  } else {
    startedAt = new Date();
    const t0 = Date.now();
    info = machineInfo();
    results = await measureAll(info);
    elapsedS = (Date.now() - t0) / 1000;
    const saveFile =
      process.env.BENCH_SAVE ||
      (WRITE ? path.join(os.tmpdir(), 'sticky-mesh-bench-http.json') : null);
    if (saveFile) {
      const data = { startedAt: startedAt.toISOString(), elapsedS, info, config: runConfig() };
      writeFileSync(saveFile, `${JSON.stringify({ ...data, results }, null, 1)}\n`);
      console.log(`measurements saved to ${saveFile} (BENCH_REPLAY=${saveFile} re-renders them)`);
    }
  }
  const { text, checks, warnings, med, ratio, routing } = renderSection(
    results,
    info,
    startedAt,
    elapsedS,
    replayedAt,
  );
  printTable(med, ratio, checks, warnings, results, routing);
  if (WRITE) {
    lib.writeSection(resultsFile, 'http-balancer', text);
    console.log(
      `\nwrote ${path.relative(process.cwd(), resultsFile) || resultsFile} (${elapsedS.toFixed(0)} s)`,
    );
  } else {
    console.log(
      '\npartial run (BENCH_ONLY/BENCH_MODES): bench/RESULTS.md not written (set BENCH_WRITE=1 to write it)',
    );
  }
}

lib.runMain(main);
