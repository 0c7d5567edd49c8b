#!/usr/bin/env node
// Proxy-mode benchmark: sticky-mesh behind a keep-alive reverse proxy (issue 16; it also keeps
// issue 3's new-connection comparison).
//
//   node bench/proxy.mjs [--quick]   (needs dist/; `npm run build` once if dist/index.js is missing)
//
// Every case reports requests/s AND the servers' CPU time per request: (CPU time of the primary
// + all workers, i.e. the server's whole process group, read from /proc/<pid>/stat over the
// measured period) / responses completed in that period, in microseconds, split into primary
// and workers. The load generator's own CPU is not in it. Each case is compared with its
// reference (ratio of medians over rounds, per-round ratios beside it).
//
// Cases (2 workers unless BENCH_WORKERS says otherwise; handler bench/servers/handler.mjs for
// all, a 2-byte 200 with an `x-worker` pid header):
//
//   Keep-alive group: CONNECTIONS keep-alive connections from 127.0.0.1, as a reverse proxy's
//   upstream pool.
//     rr-ka              bench/servers/cluster-rr.mjs: Node's cluster module, round-robin
//                        (SCHED_RR); not sticky. THE REFERENCE of the keep-alive group. Same
//                        requests as ka-one-key (connection i sends 198.51.100.(1+i)), so its
//                        handler parses the same header; cluster-rr ignores it.
//     ka-one-key         bench/servers/sticky-mesh-proxy.mjs, sticky({ num, proxy: true }):
//                        connection i always sends `x-forwarded-for: 198.51.100.(1+i)` (a proxy
//                        that keeps one upstream connection per client).
//                        Target: CPU/request <= 1.15x rr-ka.
//     ka-64-keys         sticky-mesh-proxy.mjs; consecutive requests on a connection carry
//                        different keys: client i cycles through 198.51.100.1 .. .KEYS, starting
//                        at key (i mod KEYS) + 1 (KEYS prebuilt requests per client, set with
//                        autocannon's public `client.setRequests`), so most requests belong to
//                        another worker than the previous one on their connection.
//                        Targets: CPU/request <= 3x rr-ka; req/s >= 3x socketio-sticky-64.
//     ka-64-keys-scope   as ka-64-keys, with env STICKY_SCOPE=engine.io, which the server file
//                        passes to sticky() as `scope` (issue 16's routing scope: plain requests
//                        stay on the worker their connection is on). Until src/ has that option,
//                        sticky() rejects it, the server exits before READY and the case is
//                        reported as failed (n/a) with the server's error; the bench goes on.
//                        Target: CPU/request <= 1.2x rr-ka. Stickiness is informational here:
//                        with plain requests kept where they arrive, a key sent on connections
//                        of two workers is answered by both.
//     socketio-sticky-64 bench/servers/socketio-sticky.mjs: @socket.io/sticky 2.0.1 set up as
//                        its README says (setupMaster with least-connection, workers forked with
//                        serialization 'advanced', setupWorker(io) on a socket.io Server), the
//                        ka-64-keys load. The req/s reference of ka-64-keys.
//   New-connection group: every request carries `connection: close` (one TCP connection per
//   request); autocannon client i (i = 0 .. CONNECTIONS-1) connects from its own loopback source
//   address 127.0.0.(2+i) and sends `x-forwarded-for: 198.51.100.(1+i)`, in every case, so the
//   requests are byte-identical and each balancer sees CONNECTIONS distinct clients (IP mode
//   ignores the header, proxy mode the source address). The source address is bound as in
//   bench/http.mjs (`connectFrom` in bench/lib.mjs): setupClient wraps the client's `_connect`
//   and, for that synchronous call only, makes `net.connect(port, host)` pass `localAddress`
//   (Linux routes all of 127.0.0.0/8 to lo).
//     nc-rr              cluster-rr.mjs (reference of nc-ip, informational)
//     nc-ip              bench/servers/sticky-mesh.mjs, sticky({ num }): keyed by the TCP peer
//     nc-proxy           sticky-mesh-proxy.mjs: keyed by the left-most X-Forwarded-For address.
//                        Target: CPU/request <= 1.05x nc-ip; issue 3's req/s >= 0.9x nc-ip.
//
// How @socket.io/sticky 2.0.1 treats keep-alive clients (node_modules/@socket.io/sticky/
// index.js): setupWorker prepends a 'request' listener to the worker's http server that sets
// `Connection: close` on EVERY response ("disable HTTP keep-alive to prevent connection reuse
// for another session"), so Node's http server ends each connection after its first response
// whatever the client asked for: a keep-alive client gets one response per TCP connection.
// (autocannon writes its next request on that connection right after the response, gets the
// FIN, reconnects and sends a fresh request on the new connection; the request written on the
// closing connection is never answered and not counted.) In the primary, setupMaster takes each
// new connection's first 'data' chunk, looks for an engine.io `sid=` in it (none here) and
// otherwise picks a worker with the configured method; least-connection compares
// `worker.clientsCount`, which counts engine.io sessions only, so with plain HTTP every worker
// stays at 0, `c1 < c2` never holds and the first worker in `cluster.workers` gets every
// connection (see the worker shares in the report). It never looks at X-Forwarded-For.
// The report gives each case's requests per TCP connection, so whether a server kept its
// connections open is visible in the data.
//
// Rounds: every case runs once per round; within a round the keep-alive group runs first, then
// the new-connection group, each in the order listed above in odd rounds and reversed in even
// rounds. Every run starts its server afresh as a child process (bench/servers/*.mjs, own process
// group, env PORT and WORKERS), waits for its READY line, sends a probe, runs autocannon
// (pipelining 1) for a warm-up and then the measured period between two CPU snapshots, and kills
// the whole process group. A run whose server fails (exits before READY, probe refused, ...) is
// recorded as failed with the error's first lines; the bench goes on with the next one.
//
// Correctness (every case): each response's `x-worker` header (pid of the answering process) is
// attributed to the x-forwarded-for value of the request it answers: per TCP connection the bench
// keeps the values of the requests written on it, oldest first (a wrapped `client._doRequest`),
// and a listener prepended to the connection's 'data' tells which connection the response parser
// is reading. Counted over the warm-up and the measured period of a run; a key answered by more
// than one worker is "split". Must be 0 for ka-one-key, ka-64-keys, nc-ip and nc-proxy;
// informational for the others. Errors (autocannon errors, timeouts, non-2xx, connection errors
// by code, responses without `x-worker`) and per-worker shares of the responses are reported
// per run.
//
// Background load: the load generator (autocannon, in this process) shares the machine's cores
// with the servers (2 on the reference box), so absolute rates are bounded by the client's own
// CPU; CPU per request counts the servers' work only and moves less with that, but a saturated
// server batches more per event-loop turn than an idle one, so compare cases run under the same
// conditions (they are, within a round). Before each run the bench waits (up to QUIET_WAIT s)
// until other processes use <= FOREIGN_MAX cores; during the run it estimates foreign CPU (busy
// time in /proc/stat minus the CPU time of this process and of the server's process group). A
// run with more than FOREIGN_MAX cores of foreign load is repeated (up to MAX_ATTEMPTS, keeping
// the least disturbed attempt). Linux only (/proc). Server lifecycle, CPU and background-load
// accounting and the report helpers are shared with the other benches in bench/lib.mjs.
//
// Output: a table on stdout, and the section "Behind a keep-alive proxy (issue 16)" of
// bench/RESULTS.md (between its BEGIN/END proxy-mode markers, the section issue 3's layout used;
// appended if absent; other sections untouched), all figures from this run's measurements.
//
// Environment knobs [defaults; --quick]: BENCH_ROUNDS [5; 1], BENCH_DURATION seconds [3; 2],
// BENCH_WARMUP seconds [1], BENCH_CONNECTIONS [32] (every case; <= 253), BENCH_WORKERS [2],
// BENCH_KEYS [64] (<= 254, keys of the *-64-keys cases), BENCH_CASES [all] (comma-separated case
// ids, for trial runs; targets whose cases did not run read n/a), BENCH_PORT [a free one],
// BENCH_WRITE [1; 0, and 0 with BENCH_CASES] (0: print only, bench/RESULTS.md is left alone),
// BENCH_RESULTS_FILE [bench/RESULTS.md] (where the section is written), BENCH_FOREIGN_MAX cores
// [0.2], BENCH_MAX_ATTEMPTS [2], BENCH_QUIET_WAIT seconds [30].
// Defaults take about 3-4 minutes on a quiet machine (5 rounds x 8 runs of ~5 s each: quiet
// check, server start, 1 s warm-up, 3 s measured, kill); --quick about 30 s.

import { existsSync } from 'node:fs';
import path from 'node:path';
import * as lib from './lib.mjs';
import {
  errorSummary,
  f1,
  f2,
  fmtCpu,
  fmtInt,
  fmtRatio,
  intEnv,
  median,
  pct,
  shares,
} from './lib.mjs';

const QUICK = process.argv.includes('--quick');
const ROUNDS = intEnv('BENCH_ROUNDS', QUICK ? 1 : 5);
const DURATION = intEnv('BENCH_DURATION', QUICK ? 2 : 3);
const WARMUP = intEnv('BENCH_WARMUP', 1, 0);
const CONNECTIONS = intEnv('BENCH_CONNECTIONS', 32);
const WORKERS = intEnv('BENCH_WORKERS', 2);
const KEYS = intEnv('BENCH_KEYS', 64);
const MAX_ATTEMPTS = intEnv('BENCH_MAX_ATTEMPTS', 2);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', 30, 0);
const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.2);
const ONLY = (process.env.BENCH_CASES || '')
  .split(',')
  .map((x) => x.trim())
  .filter(Boolean);
const WRITE = (process.env.BENCH_WRITE ?? (QUICK || ONLY.length ? '0' : '1')) !== '0';
if (CONNECTIONS > 253) throw new Error('BENCH_CONNECTIONS: at most 253 (127.0.0.2..254)');
if (KEYS > 254) throw new Error('BENCH_KEYS: at most 254 (198.51.100.1..254)');

// load: 'one-key' (keep-alive, one key per connection), 'keys' (keep-alive, KEYS keys rotating
// per connection) or 'close' (connection: close, own source address and key per client).
// ref: the case its ratios are taken against. mustStick: a split key is an error.
const ALL_CASES = [
  {
    id: 'rr-ka',
    group: 'keep-alive',
    label: 'Node cluster round-robin',
    file: 'cluster-rr.mjs',
    load: 'one-key',
  },
  {
    id: 'ka-one-key',
    group: 'keep-alive',
    label: 'sticky-mesh proxy mode',
    file: 'sticky-mesh-proxy.mjs',
    load: 'one-key',
    ref: 'rr-ka',
    mustStick: true,
  },
  {
    id: 'ka-64-keys',
    group: 'keep-alive',
    label: 'sticky-mesh proxy mode',
    file: 'sticky-mesh-proxy.mjs',
    load: 'keys',
    ref: 'rr-ka',
    mustStick: true,
  },
  {
    id: 'ka-64-keys-scope',
    group: 'keep-alive',
    label: "sticky-mesh proxy mode, scope 'engine.io'",
    file: 'sticky-mesh-proxy.mjs',
    env: { STICKY_SCOPE: 'engine.io' },
    load: 'keys',
    ref: 'rr-ka',
  },
  {
    id: 'socketio-sticky-64',
    group: 'keep-alive',
    label: '@socket.io/sticky 2.0.1',
    file: 'socketio-sticky.mjs',
    load: 'keys',
    ref: 'rr-ka',
  },
  {
    id: 'nc-rr',
    group: 'new-conn',
    label: 'Node cluster round-robin',
    file: 'cluster-rr.mjs',
    load: 'close',
  },
  {
    id: 'nc-ip',
    group: 'new-conn',
    label: 'sticky-mesh IP mode',
    file: 'sticky-mesh.mjs',
    load: 'close',
    ref: 'nc-rr',
    mustStick: true,
  },
  {
    id: 'nc-proxy',
    group: 'new-conn',
    label: 'sticky-mesh proxy mode',
    file: 'sticky-mesh-proxy.mjs',
    load: 'close',
    ref: 'nc-ip',
    mustStick: true,
  },
];
for (const id of ONLY)
  if (!ALL_CASES.some((c) => c.id === id))
    throw new Error(`BENCH_CASES: unknown case ${id} (${ALL_CASES.map((c) => c.id).join(', ')})`);
const CASES = ONLY.length ? ALL_CASES.filter((c) => ONLY.includes(c.id)) : ALL_CASES;
const GROUPS = ['keep-alive', 'new-conn'];

// metric 'cpu': CPU us/request of case / of ref <= max; 'rps': req/s of case / of ref >= min.
const TARGETS = [
  { issue: 16, id: 'ka-one-key', ref: 'rr-ka', metric: 'cpu', max: 1.15 },
  { issue: 16, id: 'ka-64-keys', ref: 'rr-ka', metric: 'cpu', max: 3 },
  { issue: 16, id: 'ka-64-keys', ref: 'socketio-sticky-64', metric: 'rps', min: 3 },
  { issue: 16, id: 'ka-64-keys-scope', ref: 'rr-ka', metric: 'cpu', max: 1.2 },
  { issue: 16, id: 'nc-proxy', ref: 'nc-ip', metric: 'cpu', max: 1.05 },
  { issue: 3, id: 'nc-proxy', ref: 'nc-ip', metric: 'rps', min: 0.9 },
];

const clientKey = (k) => `198.51.100.${1 + k}`;

// ---------------------------------------------------------------------------------------------
// Client side (see the header): per-client source address, key or key rotation, and accounting.

function makeSetupClient(kase, c) {
  let index = 0;
  return function setupClient(client) {
    const i = index++;
    const proto = Object.getPrototypeOf(client);
    if (kase.load === 'keys') {
      client.setRequests(
        Array.from({ length: KEYS }, (_, j) => ({
          headers: { 'x-forwarded-for': clientKey((i + j) % KEYS) },
        })),
      );
    } else {
      client.setHeaders({
        'x-forwarded-for': clientKey(i),
        ...(kase.load === 'close' ? { connection: 'close' } : {}),
      });
    }
    const localAddress = kase.load === 'close' ? lib.sourceAddress(i) : undefined;
    const sent = new WeakMap(); // connection -> x-forwarded-for of its unanswered requests
    let reading = null; // the connection whose bytes the response parser is reading
    lib.connectFrom(client, localAddress, (self) => {
      const conn = self.conn;
      conn.prependListener('data', () => {
        reading = conn;
      });
      if (c.active) c.connects += 1;
    });
    client._doRequest = function doRequest() {
      const before = this.reqsMade;
      proto._doRequest.call(this);
      if (this.reqsMade === before) return;
      if (!sent.has(this.conn)) sent.set(this.conn, []);
      sent.get(this.conn).push(this.requestIterator.currentRequest.headers['x-forwarded-for']);
    };
    client.on('headers', (info) => {
      const key = sent.get(reading)?.shift();
      const pid = lib.workerHeader(info.headers);
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
    lib.countConnErrors(client, c);
  };
}

// The servers measured here all bind 127.0.0.1 only: the port must be free there.
const PORT_HOSTS = ['127.0.0.1'];

// ---------------------------------------------------------------------------------------------
// One run: a fresh server, warm-up, measured period, kill (server lifecycle, CPU accounting and
// background load: bench/lib.mjs, see the header). A failed run is returned as { failed }.

async function measure(kase, port, round) {
  try {
    return await lib.measureQuietlyByCpu(
      { maxAttempts: MAX_ATTEMPTS, quietWaitS: QUIET_WAIT_S, foreignMax: FOREIGN_MAX },
      () => measureOnce(kase, port, round),
    );
  } catch (e) {
    return { round, case: kase.id, failed: failureText(e) };
  }
}

// The first line of an error, plus the first `...Error: ...` line and `code: '...'` of the
// server's output it quotes (startServer puts its stdout and stderr in the message).
function failureText(e) {
  const text = String(e?.message ?? e);
  const lines = text.split('\n');
  const parts = [lines[0]];
  const thrown = lines.slice(1).find((l) => /^\s*(\w*Error|Error)\b.*:/.test(l));
  if (thrown) parts.push(thrown.trim());
  const code = /\bcode: '([A-Z0-9_]+)'/.exec(text);
  if (code) parts.push(code[1]);
  return parts.join(': ');
}

async function measureOnce(kase, port, round) {
  const c = lib.newCounters({ keyWorkers: new Map() });
  const m = await lib.measureOnFreshServer(
    {
      file: kase.file,
      name: `${kase.id} (${kase.file})`,
      workers: WORKERS,
      port,
      hosts: PORT_HOSTS,
      env: kase.env,
      probe: { localAddress: lib.sourceAddress(0), headers: { 'x-forwarded-for': clientKey(0) } },
      warmup: WARMUP,
      duration: DURATION,
    },
    (seconds, measured) => {
      c.active = measured;
      return lib.runAutocannon({
        port,
        connections: CONNECTIONS,
        seconds,
        headers: {},
        setupClient: makeSetupClient(kase, c),
      });
    },
  );
  const r = m.result;
  const { client, server, primary, foreign } = m.cpu;
  return {
    round,
    case: kase.id,
    rps: r.duration > 0 ? r.requests.total / r.duration : 0,
    requests: r.requests.total,
    cpuPer: lib.cpuPerUnit(m.before, m.after, r.requests.total),
    connects: c.connects,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: r.non2xx,
    resets: r.resets,
    noWorkerHeader: c.noWorkerHeader,
    connErrors: Object.fromEntries(c.connErrors),
    byWorker: Object.fromEntries(c.byWorker),
    keys: c.keyWorkers.size,
    split: [...c.keyWorkers.values()].filter((s) => s.size > 1).length,
    cpu: { client, server, primary, foreign },
    attempts: 1,
    serverStderr: m.stderr ? m.stderr.split('\n').slice(0, 3).join(' | ') : '',
  };
}

// ---------------------------------------------------------------------------------------------
// Figures (median, formatting, errorSummary: bench/lib.mjs).

// client / primary / workers cores, each at least 0
const fmtRunCpu = (c) =>
  fmtCpu({
    client: Math.max(0, c.client),
    primary: Math.max(0, c.primary),
    workers: Math.max(0, c.server - c.primary),
  });
const perConn = (reqs, conns) => (conns ? (reqs / conns).toFixed(2) : 'n/a');
const workerShares = (byWorker) => shares(byWorker, WORKERS).shares.map(pct).join(' / ');
const fmtPer = (p) => `${f1(p.total)} (${f1(p.primary)} / ${f1(p.workers)})`;
const caseById = (id) => CASES.find((k) => k.id === id);

function machineInfo() {
  return {
    ...lib.machine(),
    autocannon: lib.packageVersion('autocannon'),
    socketioSticky: lib.packageVersion('@socket.io/sticky'),
    commit: lib.gitCommit(),
    distBuilt: lib.distStamp(),
  };
}

// Per case: its runs, the failed ones, medians (req/s, CPU us/request total / primary /
// workers), requests per TCP connection, error and split summaries.
function caseRows(results) {
  const rows = new Map();
  for (const kase of CASES) {
    const all = results.filter((r) => r.case === kase.id);
    const rs = all.filter((r) => !r.failed);
    const sum = (k) => rs.reduce((a, r) => a + r[k], 0);
    const splitTotal = sum('split');
    rows.set(kase.id, {
      kase,
      rs,
      failed: all.filter((r) => r.failed),
      rps: median(rs.map((r) => r.rps)),
      cpu: {
        total: median(rs.map((r) => r.cpuPer.total)),
        primary: median(rs.map((r) => r.cpuPer.primary)),
        workers: median(rs.map((r) => r.cpuPer.workers)),
      },
      perConn: perConn(sum('requests'), sum('connects')),
      errors: rs.some((r) => errorSummary(r) !== '0')
        ? rs.map((r) => `r${r.round}: ${errorSummary(r)}`).join('; ')
        : '0',
      split: rs.map((r) => `${r.split}/${r.keys}`).join(', ') || 'n/a',
      splitTotal,
      stickOk: !kase.mustStick || splitTotal === 0,
    });
  }
  return rows;
}

const metricOf = (metric) => (metric === 'cpu' ? (r) => r.cpuPer.total : (r) => r.rps);

// Ratio of medians of a metric between two cases, and the per-round ratios (both runs ok).
function compare(rows, id, ref, metric) {
  const a = rows.get(id);
  const b = rows.get(ref);
  if (!a || !b) return { value: Number.NaN, perRound: [] };
  const value = metric === 'cpu' ? a.cpu.total / b.cpu.total : a.rps / b.rps;
  const f = metricOf(metric);
  const perRound = [];
  for (const x of a.rs) {
    const y = b.rs.find((r) => r.round === x.round);
    if (y) perRound.push(f(x) / f(y));
  }
  return { value, perRound };
}

function evaluate(rows) {
  return TARGETS.map((t) => {
    const { value, perRound } = compare(rows, t.id, t.ref, t.metric);
    const what = t.metric === 'cpu' ? 'CPU/request' : 'req/s';
    const bound = t.metric === 'cpu' ? `<= ${t.max}x` : `>= ${t.min}x`;
    const ok = t.metric === 'cpu' ? value <= t.max : value >= t.min;
    return {
      ...t,
      text: `${t.id} ${what} ${bound} ${t.ref} (issue ${t.issue})`,
      short: `${what} ${bound} ${t.ref}`,
      value,
      perRound,
      result: Number.isFinite(value) ? (ok ? 'met' : 'missed') : 'n/a',
    };
  });
}

function summarize(results) {
  const rows = caseRows(results);
  for (const row of rows.values()) {
    const ref = row.kase.ref;
    row.vsRef = ref ? compare(rows, row.kase.id, ref, 'rps').value : Number.NaN;
    row.cpuVsRef = ref ? compare(rows, row.kase.id, ref, 'cpu').value : Number.NaN;
  }
  return { rows, checks: evaluate(rows) };
}

const targetsOf = (checks, id) => checks.filter((t) => t.id === id);
const fmtTargets = (checks, id, mark = (s) => s) =>
  targetsOf(checks, id)
    .map((t) => `${t.short}: ${mark(t.result)}`)
    .join('; ') || '-';

// ---------------------------------------------------------------------------------------------
// Report: stdout table and the RESULTS.md section.

function printTable(rows, checks) {
  const table = [
    [
      'case',
      'req/s',
      'vs ref',
      'CPU us/req (primary / workers)',
      'vs ref',
      'ref',
      'req/conn',
      'split',
      'targets',
    ],
  ];
  for (const x of rows.values()) {
    const failed = x.rs.length === 0 && x.failed.length > 0;
    table.push([
      x.kase.id,
      failed ? 'failed' : fmtInt(x.rps),
      fmtRatio(x.vsRef),
      failed ? 'n/a' : fmtPer(x.cpu),
      fmtRatio(x.cpuVsRef),
      x.kase.ref ?? '-',
      x.perConn,
      `${x.splitTotal}${x.kase.mustStick ? (x.stickOk ? ' ok' : ' BAD') : ' (info)'}`,
      fmtTargets(checks, x.kase.id),
    ]);
  }
  console.log(
    `\nMedians over ${ROUNDS} round${ROUNDS > 1 ? 's' : ''} (${CONNECTIONS} connections, ${WORKERS} workers):`,
  );
  for (const line of lib.formatTable(table)) console.log(line);
  console.log('');
  for (const c of checks)
    console.log(
      `target ${c.text}: ${fmtRatio(c.value)} (rounds ${c.perRound.map(fmtRatio).join(', ') || 'n/a'}) -> ${c.result}`,
    );
  for (const x of rows.values())
    for (const r of x.failed) console.log(`failed: round ${r.round} ${x.kase.id}: ${r.failed}`);
}

function methodLines(p) {
  p(
    `- ${ROUNDS} interleaved round${ROUNDS > 1 ? 's' : ''}; per run ${WARMUP} s warm-up (not counted) + ${DURATION} s measured; ${CONNECTIONS} autocannon connections, pipelining 1; ${WORKERS} workers; every run on a freshly started server (\`bench/servers/*.mjs\`, the handler of \`bench/servers/handler.mjs\`) killed with its process group afterwards. Each round runs the keep-alive cases, then the new-connection cases, in the listed order in odd rounds and reversed in even ones. Figures are medians over rounds.`,
  );
  p(
    '- req/s = completed responses / measured duration. **CPU us/request** = CPU time (user + system, /proc/<pid>/stat) of the server\'s whole process group (primary + workers) over the measured period / responses completed in it; split into primary / workers. The load generator\'s CPU is not in it. "vs ref": ratio of medians to the case named in "ref".',
  );
  p(
    `- **Keep-alive cases**: ${CONNECTIONS} keep-alive connections from 127.0.0.1, as a reverse proxy's upstream pool. \`rr-ka\`: Node cluster round-robin (\`cluster-rr.mjs\`), the reference. \`ka-one-key\`: sticky-mesh proxy mode (\`sticky-mesh-proxy.mjs\`, \`sticky({ num, proxy: true })\`), connection i always sends \`x-forwarded-for: 198.51.100.(1+i)\` (rr-ka sends the same). \`ka-64-keys\`: the same server, consecutive requests on a connection carry different keys (client i cycles through 198.51.100.1..${KEYS}, starting at its own offset). \`ka-64-keys-scope\`: as ka-64-keys with \`scope: 'engine.io'\` passed to sticky() (env STICKY_SCOPE; plain requests stay on the worker their connection is on). \`socketio-sticky-64\`: @socket.io/sticky set up as its README says (\`socketio-sticky.mjs\`) with the ${KEYS}-key load; its \`setupWorker\` sets \`Connection: close\` on every response, so it serves one request per TCP connection whatever the client asks for, and its least-connection method counts only engine.io sessions, so plain HTTP all goes to one worker (details in the header of \`bench/proxy.mjs\`).`,
  );
  p(
    `- **New-connection cases**: every request carries \`connection: close\`; client i connects from 127.0.0.${2}..${1 + CONNECTIONS} (its own source address) and sends \`x-forwarded-for: 198.51.100.${1}..${CONNECTIONS}\` (its own value), so the requests are byte-identical and each balancer sees ${CONNECTIONS} clients. \`nc-rr\`: Node cluster round-robin; \`nc-ip\`: sticky-mesh IP mode (\`sticky-mesh.mjs\`, \`sticky({ num })\`); \`nc-proxy\`: sticky-mesh proxy mode.`,
  );
  p(
    "- Key stickiness: each response's `x-worker` pid is attributed to the `x-forwarded-for` of the request it answers (per TCP connection, in order), over warm-up and measured period; a key answered by more than one worker counts as split. Must be 0 for ka-one-key, ka-64-keys, nc-ip and nc-proxy; informational for the others (round-robin places a client's warm-up and measured connections independently; ka-64-keys-scope keeps plain requests where they arrive, so its keys may split by design).",
    '',
  );
}

function renderSection(results, info, startedAt, elapsedS) {
  const { rows, checks } = summarize(results);
  const L = [];
  const p = (...xs) => L.push(...xs);
  const mark = (s) => (s === 'met' ? 'met' : s === 'missed' ? '**missed**' : 'n/a');
  p('<!-- BEGIN proxy-mode (written by bench/proxy.mjs; do not edit by hand) -->');
  p('## Behind a keep-alive proxy (issue 16)', '');
  p(
    `Run: ${startedAt.toISOString()} (${elapsedS.toFixed(0)} s), \`node bench/proxy.mjs\`${ONLY.length ? ` with BENCH_CASES=${ONLY.join(',')} (a subset)` : ''}, sticky-mesh commit ${info.commit}; sticky-mesh measured as built in dist/ (newest file ${info.distBuilt})${info.distChanged ? `; **dist/ was rebuilt during the run (newest file ${info.distChanged} at the end), so the sticky-mesh figures may mix two builds**` : ''}. This section replaces issue 3's "Proxy mode" one; issue 3's new-connection target is among the targets below.`,
    '',
  );
  p(
    `Machine: ${info.cpus} CPUs (os.cpus), ${info.model}; Node ${info.node}; ${info.os}; autocannon ${info.autocannon}; @socket.io/sticky ${info.socketioSticky}.`,
    '',
  );
  p('Settings and method:', '');
  methodLines(p);
  p('### Cases (medians over rounds)', '');
  p(
    '| case | server | req/s | req/s per round | req/s vs ref | CPU us/request (primary / workers) | CPU us/request per round | CPU vs ref | ref | targets |',
  );
  p('|---|---|---:|---|---:|---:|---|---:|---|---|');
  for (const x of rows.values()) {
    const none = x.rs.length === 0;
    p(
      `| ${x.kase.id} | ${x.kase.label} | ${none ? 'n/a' : fmtInt(x.rps)} | ${x.rs.map((r) => fmtInt(r.rps)).join(', ') || 'n/a'} | ${fmtRatio(x.vsRef)} | ${none ? 'n/a' : fmtPer(x.cpu)} | ${x.rs.map((r) => f1(r.cpuPer.total)).join(', ') || 'n/a'} | ${fmtRatio(x.cpuVsRef)} | ${x.kase.ref ?? '-'} | ${fmtTargets(checks, x.kase.id, mark)} |`,
    );
  }
  p('', '### Targets', '');
  p(
    'Evaluated on the ratio of medians; per-round ratios (same round, seconds apart) beside it. n/a: a case of the pair has no successful run.',
  );
  p('', '| target | ratio of medians | per-round ratios | result |', '|---|---:|---|---|');
  for (const c of checks)
    p(
      `| ${c.text} | ${fmtRatio(c.value)} | ${c.perRound.map(fmtRatio).join(', ') || 'n/a'} | ${mark(c.result)} |`,
    );
  p('', '### Correctness and spread', '');
  p(
    '| case | requests per TCP connection | split keys / keys, per round | split expected | worker shares, per round | errors / timeouts / non-2xx | failed runs |',
  );
  p('|---|---:|---|---|---|---|---|');
  for (const x of rows.values())
    p(
      `| ${x.kase.id} | ${x.perConn} | ${x.split} | ${x.kase.mustStick ? (x.stickOk ? '0: ok' : '0: **some keys were answered by more than one worker**') : 'informational'} | ${x.rs.map((r) => workerShares(r.byWorker)).join('; ') || 'n/a'} | ${x.errors} | ${failedRuns(x.failed)} |`,
    );
  p('', '### Per-run raw figures', '');
  p(
    '| round | case | req/s | requests | TCP connections | req/conn | CPU us/request (primary / workers) | worker shares | errors / timeouts / non-2xx | split / keys | CPU cores: client / primary / workers | foreign CPU (cores) | attempts |',
  );
  p('|---:|---|---:|---:|---:|---:|---:|---|---|---:|---|---:|---:|');
  for (const r of results) {
    if (r.failed) {
      p(
        `| ${r.round} | ${r.case} | failed | - | - | - | - | - | \`${r.failed}\` | - | - | - | - |`,
      );
      continue;
    }
    p(
      `| ${r.round} | ${r.case} | ${fmtInt(r.rps)} | ${fmtInt(r.requests)} | ${fmtInt(r.connects)} | ${perConn(r.requests, r.connects)} | ${fmtPer(r.cpuPer)} | ${workerShares(r.byWorker)} | ${errorSummary(r)} | ${r.split}/${r.keys} | ${fmtRunCpu(r.cpu)} | ${r.cpu.foreign.toFixed(2)} | ${r.attempts} |`,
    );
  }
  p('', '### Observations (generated from the figures above)', '');
  const notes = [
    ...observations(rows),
    ...results
      .filter((x) => x.serverStderr)
      .map((r) => `server stderr, round ${r.round} ${r.case}: \`${r.serverStderr}\``),
  ];
  for (const o of notes.length ? notes : ['none']) p(`- ${o}`);
  const ok = results.filter((r) => !r.failed);
  const foreign = ok.map((r) => r.cpu.foreign);
  const disturbed = foreign.filter((x) => x > FOREIGN_MAX).length;
  const client = (g) =>
    f2(median(ok.filter((r) => caseById(r.case).group === g).map((r) => r.cpu.client)));
  p('', '### Background load', '');
  p(
    `This machine has ${info.cpus} CPUs and the load generator (autocannon, in the bench process) runs on them alongside the servers: it used a median of ${client('keep-alive')} cores in the keep-alive runs and ${client('new-conn')} in the new-connection runs, so the servers had what was left. Absolute rates are bounded by that and do not transfer to other machines; CPU per request counts the servers' work only. Load from other processes, measured per run: median ${median(foreign).toFixed(2)}, max ${Math.max(...foreign).toFixed(2)} cores (runs above ${FOREIGN_MAX} cores were repeated, up to ${MAX_ATTEMPTS} attempts, keeping the least disturbed)${disturbed ? `; **${disturbed} of ${ok.length} kept runs still had more than ${FOREIGN_MAX} cores of foreign load** (raw table), so their figures are lower than a quiet machine would give` : ''}.`,
  );
  p('<!-- END proxy-mode -->');
  return { text: L.join('\n'), rows, checks };
}

// Failed runs by error text: "r1, r2: `error`", or 0.
function failedRuns(failed) {
  const byText = new Map();
  for (const r of failed) byText.set(r.failed, [...(byText.get(r.failed) ?? []), `r${r.round}`]);
  return [...byText].map(([text, rounds]) => `${rounds.join(', ')}: \`${text}\``).join('; ') || '0';
}

function observations(rows) {
  const out = [];
  for (const x of rows.values()) {
    if (x.rs.length === 0) continue;
    const reqs = x.rs.reduce((a, r) => a + r.requests, 0);
    const conns = x.rs.reduce((a, r) => a + r.connects, 0);
    if (x.kase.load !== 'close' && conns && reqs / conns < 1.5)
      out.push(
        `${x.kase.id}: ${fmtInt(reqs)} responses over ${fmtInt(conns)} TCP connections (${perConn(reqs, conns)} per connection): the server closed the connections after (about) every response, so its keep-alive figure is a new-connection rate.`,
      );
    const top = x.rs.map((r) => {
      const v = Object.values(r.byWorker);
      const t = v.reduce((a, b) => a + b, 0);
      return t ? Math.max(...v) / t : 0;
    });
    if (WORKERS > 1 && Math.min(...top) > 0.99)
      out.push(`${x.kase.id}: one worker answered more than 99% of the responses in every run.`);
  }
  return out;
}

// ---------------------------------------------------------------------------------------------

function logRun(r) {
  if (r.failed) {
    console.log(`round ${r.round} ${r.case.padEnd(18)} FAILED: ${r.failed}`);
    return;
  }
  console.log(
    `round ${r.round} ${r.case.padEnd(18)} ${fmtInt(r.rps).padStart(7)} req/s  cpu/req ${fmtPer(r.cpuPer)} us  conns ${fmtInt(r.connects).padStart(6)}  workers ${workerShares(r.byWorker)}  split ${r.split}/${r.keys}  cpu client/primary/workers ${fmtRunCpu(r.cpu)}  foreign ${r.cpu.foreign.toFixed(2)}  errors: ${errorSummary(r)}`,
  );
}

async function main() {
  if (!existsSync(path.join(lib.rootDir, 'dist', 'index.js'))) {
    console.error('dist/index.js is missing: run `npm run build` first.');
    process.exit(2);
  }
  const startedAt = new Date();
  const info = machineInfo();
  const port = await lib.findPort(PORT_HOSTS);
  console.log(
    `proxy bench: ${ROUNDS} rounds x ${WARMUP}+${DURATION} s, cases ${CASES.map((c) => c.id).join(', ')}; ${CONNECTIONS} connections, ${WORKERS} workers, ${KEYS} keys, port ${port}`,
  );
  console.log(`machine: ${info.cpus} x ${info.model}, Node ${info.node}, commit ${info.commit}`);
  const results = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const group of GROUPS) {
      const inGroup = CASES.filter((c) => c.group === group);
      for (const kase of round % 2 ? inGroup : inGroup.reverse()) {
        const r = await measure(kase, port, round);
        results.push(r);
        logRun(r);
      }
    }
  }
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const distNow = lib.distStamp();
  if (distNow !== info.distBuilt) {
    info.distChanged = distNow;
    console.log(`WARNING: dist/ was rebuilt during the run (${info.distBuilt} -> ${distNow})`);
  }
  const { text, rows, checks } = renderSection(results, info, startedAt, elapsedS);
  printTable(rows, checks);
  console.log(`\n${elapsedS.toFixed(0)} s in all`);
  if (WRITE) lib.writeResults('proxy-mode', text);
  else console.log('\nBENCH_WRITE=0: bench/RESULTS.md not written');
}

lib.runMain(main);
