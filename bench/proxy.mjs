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
//    address is bound as in bench/http.mjs (`connectFrom` in bench/lib.mjs, shared by both):
//    setupClient wraps the client's `_connect` and, for that synchronous call only, makes
//    `net.connect(port, host)` pass `localAddress` (Linux routes all of 127.0.0.0/8 to lo).
//    Target: proxy / ip >= 0.90 (ratio of medians).
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
// Server lifecycle, CPU and background-load accounting and the report helpers are shared with
// bench/http.mjs in bench/lib.mjs.
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

import { existsSync } from 'node:fs';
import path from 'node:path';
import * as lib from './lib.mjs';
import { errorSummary, fmtCpu, fmtInt, fmtRatio, intEnv, median, pct, shares } from './lib.mjs';

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

const clientKey = (k) => `198.51.100.${1 + k}`;

// ---------------------------------------------------------------------------------------------
// Client side (see the header): per-client source address or key rotation, and accounting.

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
    const localAddress = meas.keepAlive ? undefined : lib.sourceAddress(i);
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
// background load: bench/lib.mjs, see the header).

function measure(meas, run, port, round) {
  return lib.measureQuietlyByCpu(
    { maxAttempts: MAX_ATTEMPTS, quietWaitS: QUIET_WAIT_S, foreignMax: FOREIGN_MAX },
    () => measureOnce(meas, run, port, round),
  );
}

async function measureOnce(meas, run, port, round) {
  const c = lib.newCounters({ keyWorkers: new Map() });
  const m = await lib.measureOnFreshServer(
    {
      file: run.file,
      name: run.file,
      workers: WORKERS,
      port,
      hosts: PORT_HOSTS,
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
        headers: meas.keepAlive ? {} : { connection: 'close' },
        setupClient: makeSetupClient(meas, c),
      });
    },
  );
  const r = m.result;
  const { client, server, primary, foreign } = m.cpu;
  const split = [...c.keyWorkers.values()].filter((s) => s.size > 1).length;
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
    cpu: { client, server, primary, foreign },
    attempts: 1,
    serverStderr: m.stderr ? m.stderr.split('\n').slice(0, 3).join(' | ') : '',
  };
}

// ---------------------------------------------------------------------------------------------
// Figures and report (median, formatting, errorSummary: bench/lib.mjs).

// client / primary / workers cores, each at least 0
const fmtRunCpu = (c) =>
  fmtCpu({
    client: Math.max(0, c.client),
    primary: Math.max(0, c.primary),
    workers: Math.max(0, c.server - c.primary),
  });
const perConn = (reqs, conns) => (conns ? (reqs / conns).toFixed(2) : 'n/a');
const workerShares = (byWorker) => shares(byWorker, WORKERS).shares.map(pct).join(' / ');

function machineInfo() {
  return {
    ...lib.machine(),
    autocannon: lib.packageVersion('autocannon'),
    socketioSticky: lib.packageVersion('@socket.io/sticky'),
    commit: lib.gitCommit(),
    distBuilt: lib.distStamp(),
  };
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
      `| ${r.round} | ${meas.short} | ${r.server} | ${fmtInt(r.rps)} | ${fmtInt(r.requests)} | ${fmtInt(r.connects)} | ${perConn(r.requests, r.connects)} | ${workerShares(r.byWorker)} | ${errorSummary(r)} | ${r.split}/${r.keys} | ${fmtRunCpu(r.cpu)} | ${r.cpu.foreign.toFixed(2)} | ${r.attempts} |`,
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

function printTable(rows, checks) {
  const table = [['measurement', 'server', 'median req/s', 'req/conn', 'split keys', 'errors']];
  for (const x of rows)
    table.push([x.meas.short, x.run.label, fmtInt(x.med), x.perConn, x.split, x.errors]);
  console.log(`\nMedian over ${ROUNDS} rounds (${CONNECTIONS} connections, ${WORKERS} workers):`);
  for (const line of lib.formatTable(table)) console.log(line);
  console.log('');
  for (const c of checks)
    console.log(
      `target ${c.text}: ${fmtRatio(c.value)} (rounds ${c.perRound.map(fmtRatio).join(', ')}) -> ${c.met ? 'MET' : 'NOT MET'}`,
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
          `round ${round} ${meas.short.padEnd(16)} ${run.id.padEnd(15)} ${fmtInt(r.rps).padStart(7)} req/s  conns ${fmtInt(r.connects).padStart(6)}  workers ${workerShares(r.byWorker)}  split ${r.split}/${r.keys}  cpu client/primary/workers ${fmtRunCpu(r.cpu)}  foreign ${r.cpu.foreign.toFixed(2)}  errors: ${errorSummary(r)}`,
        );
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
  if (WRITE) lib.writeResults('proxy-mode', text);
  else console.log('\nBENCH_WRITE=0: bench/RESULTS.md not written');
}

lib.runMain(main);
