#!/usr/bin/env node
// Socket.io benchmark (issue 7; its sessions measurement as issue 16 asks): the example chat
// (examples/socketio/chat.js, createChatServer) behind sticky-mesh, @socket.io/sticky and, for
// sessions, without any balancer.
//
//   node bench/socketio.mjs [--quick]     (needs dist/: `npm run build`)
//
// Servers (bench/servers/*.mjs, started afresh for every run as in bench/lib.mjs: own process
// group, READY line, GET / probe, group killed afterwards):
//   sticky-mesh              socketio-chat-sticky-mesh.mjs: examples/socketio/server.js's wiring
//                            without REDIS_URL (IP mode, sessionAffinity, sticky-mesh's
//                            genid / generateId, serialization 'advanced', ReplicatedStore,
//                            @socket.io/cluster-adapter + setupPrimary in the primary)
//   sticky-mesh-no-affinity  the same file with env STICKY_AFFINITY=0: sessionAffinity off (the
//                            primary never reads request bytes, IP mode alone) and no genid /
//                            generateId (express-session's and engine.io's own ids); sessions only.
//                            What sessionAffinity costs is the difference to sticky-mesh.
//   socketio-sticky          socketio-chat-sticky.mjs: @socket.io/sticky 2.0.1 setupMaster(
//                            httpServer, { loadBalancingMethod: 'least-connection' }) +
//                            setupWorker(io), @socket.io/cluster-adapter, serialization
//                            'advanced', express-session MemoryStore (see that file)
//   plain                    socketio-chat-plain.mjs: the same chat in one process, no cluster
//                            (sessions only; the reference for what the chat itself costs)
//
// 1. sessions (sticky-mesh, sticky-mesh-no-affinity, socketio-sticky, plain; SESSIONS_WORKERS
//    workers, default 2 = the reference machine's cores): new Socket.io sessions per second AND
//    the servers' CPU time per session, closed loop. C clients (socket.io-client, this process);
//    client i binds every connection to 127.0.0.(2+i) through its own http.Agent
//    ({ keepAlive: true, localAddress }, also passed as the websocket's localAddress), since IP
//    mode keys on the source address. One session = polling handshake, Socket.io connect and the
//    chat's 'hello' event, upgrade to websocket (engine 'upgrade' and
//    socket.io.engine.transport.name === 'websocket'), close; the client then starts its next
//    session. One continuous load per fresh server: BENCH_WARMUP s (reported as the cold start),
//    then BENCH_DURATION s measured. A window's rate = sessions completed inside it / its length
//    (sessions still running at the end are awaited, not counted); a failure counts in the window
//    its session started in. Failures: connect_error, upgradeError, disconnect before done, no
//    upgrade / no hello within 10 s. CPU per session = CPU time (user + system, /proc) of the
//    server's whole process group (primary + workers; the one process for plain) over the
//    measured window / sessions completed in it, in microseconds, split primary / workers; failed
//    sessions cost CPU but do not count, and the load generator's CPU is not in it. Every round
//    runs the four cases, in the listed order in odd rounds and reversed in even rounds; medians
//    over rounds and per-round ratios are reported. Targets (issue 16, measured window, ratio of
//    medians): sticky-mesh CPU/session <= 1.05x sticky-mesh-no-affinity; sticky-mesh sessions/s
//    >= 2x socketio-sticky; sticky-mesh CPU/session <= 1.5x plain. (Issue 7's target, sessions/s
//    >= 3x socketio-sticky, was set with 4 workers: BENCH_SESSIONS_WORKERS=4 measures that
//    configuration; the ratio is in the report either way.) A sweep over other client counts
//    (sticky-mesh and socketio-sticky, one run each) follows the rounds.
// 2. broadcast (sticky-mesh and socketio-sticky, WORKERS workers, default 4, as before): B clients
//    connected (polling, then websocket), from addresses 127.0.0.(2+i), each noting the worker
//    slot of its 'hello'. One client per worker slot (the first seen) emits 'chat' K times, each
//    after the previous one's ack; the senders run concurrently. The chat handler does
//    io.emit('chat') (through the cluster adapter, relayed by the primary). Every client must
//    receive every message exactly once (B * senders * K deliveries; lost and duplicate
//    deliveries counted). Rate: deliveries / (first emit .. last delivery).
//
// The load generator (all clients, one Node process) shares the machine's cores with the servers,
// so absolute figures are bounded by the client's CPU too. Foreign CPU (other processes) is
// measured per run (bench/lib.mjs cpuBetween) and reported; before each run the bench waits up to
// BENCH_QUIET_WAIT s for it to fall below BENCH_FOREIGN_MAX cores.
//
// Knobs [defaults; --quick]: BENCH_ROUNDS [5; 1], BENCH_WARMUP s [5; 2], BENCH_DURATION s [10; 3],
// BENCH_CLIENTS [32; 16], BENCH_SWEEP other client counts, one run each ['8,16,64'; none],
// BENCH_SESSIONS_WORKERS [2] (sessions and sweep), BENCH_WORKERS [4] (broadcast),
// BENCH_BCAST_CLIENTS [200; 40], BENCH_BCAST_MESSAGES per sender [100; 30],
// BENCH_WRITE [1; 0] (0: RESULTS.md untouched), BENCH_RESULTS_FILE [bench/RESULTS.md],
// BENCH_QUIET_WAIT [5], BENCH_FOREIGN_MAX [0.3].
// Defaults take about 9 minutes (5 rounds of 4 sessions runs of ~17 s and 2 broadcast runs, then
// 6 sweep runs); --quick about 40 s.
// Output: stdout (per-run lines and a table), and the section between the socketio markers of
// the results file.

import http from 'node:http';
import os from 'node:os';
import { io as ioClient } from 'socket.io-client';
import * as lib from './lib.mjs';
import { f1, fmtInt, fmtRatio, intEnv, median } from './lib.mjs';

const QUICK = process.argv.includes('--quick');
const ROUNDS = intEnv('BENCH_ROUNDS', QUICK ? 1 : 5);
const WARMUP = intEnv('BENCH_WARMUP', QUICK ? 2 : 5);
const DURATION = intEnv('BENCH_DURATION', QUICK ? 3 : 10);
const CLIENTS = intEnv('BENCH_CLIENTS', QUICK ? 16 : 32);
/** Other client counts, one run per server each after the rounds (empty: none). */
const SWEEP = (process.env.BENCH_SWEEP ?? (QUICK ? '' : '8,16,64'))
  .split(',')
  .filter(Boolean)
  .map(Number);
const BCLIENTS = intEnv('BENCH_BCAST_CLIENTS', QUICK ? 40 : 200);
const BMSGS = intEnv('BENCH_BCAST_MESSAGES', QUICK ? 30 : 100);
const SESSIONS_WORKERS = intEnv('BENCH_SESSIONS_WORKERS', 2);
const WORKERS = intEnv('BENCH_WORKERS', 4);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', 5, 0);
const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.3);
const WRITE = (process.env.BENCH_WRITE ?? (QUICK ? '0' : '1')) !== '0';
const SESSION_TIMEOUT_MS = 10_000;
if ([CLIENTS, BCLIENTS, ...SWEEP].some((n) => !(Number.isInteger(n) && n >= 1 && n <= 253)))
  throw new Error('client counts must be integers from 1 to 253 (127.0.0.2..254)');

const STICKY_MESH = {
  id: 'sticky-mesh',
  label: 'sticky-mesh (IP mode, sessionAffinity)',
  file: 'socketio-chat-sticky-mesh.mjs',
};
const NO_AFFINITY = {
  id: 'sticky-mesh-no-affinity',
  label: 'sticky-mesh (IP mode, no sessionAffinity)',
  file: 'socketio-chat-sticky-mesh.mjs',
  env: { STICKY_AFFINITY: '0' },
};
const SOCKETIO_STICKY = {
  id: 'socketio-sticky',
  label: '@socket.io/sticky 2.0.1',
  file: 'socketio-chat-sticky.mjs',
};
/** What one process of the same chat does on this machine (no cluster at all). */
const PLAIN = {
  id: 'plain',
  label: 'one plain process (reference)',
  file: 'socketio-chat-plain.mjs',
  workers: 1,
};
/** The sessions cases, in the order of odd rounds. */
const SESSION_CASES = [STICKY_MESH, NO_AFFINITY, SOCKETIO_STICKY, PLAIN];
/** The two balancers of the broadcast measurement and the sweep. */
const SERVERS = [STICKY_MESH, SOCKETIO_STICKY];
/** Issue 16's targets on the sessions cases, ratio of medians (measured window). */
const TARGETS = [
  { id: 'sticky-mesh', ref: 'sticky-mesh-no-affinity', metric: 'cpu', max: 1.05 },
  { id: 'sticky-mesh', ref: 'socketio-sticky', metric: 'rate', min: 2 },
  { id: 'sticky-mesh', ref: 'plain', metric: 'cpu', max: 1.5 },
];
const HOSTS = ['127.0.0.1'];

function agentFor(i) {
  const localAddress = lib.sourceAddress(i);
  return { localAddress, agent: new http.Agent({ keepAlive: true, localAddress }) };
}

// A new client connection from agent a (agentFor's): polling first, then the upgrade to
// WebSocket, no reconnection; extra: more client options.
function newSocket(port, a, extra = {}) {
  return ioClient(`http://127.0.0.1:${port}`, {
    forceNew: true,
    reconnection: false,
    transports: ['polling', 'websocket'],
    agent: a.agent,
    localAddress: a.localAddress,
    ...extra,
  });
}

// One Socket.io session; resolves { ok, reason }.
function oneSession(port, a) {
  return new Promise((resolve) => {
    const socket = newSocket(port, a, { timeout: SESSION_TIMEOUT_MS });
    let hello = false;
    let upgraded = false;
    let done = false;
    const finish = (ok, reason) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      socket.close();
      resolve({ ok, reason });
    };
    const timer = setTimeout(
      () => finish(false, hello ? 'no upgrade in 10 s' : 'no hello in 10 s'),
      SESSION_TIMEOUT_MS,
    );
    const check = () => {
      if (hello && upgraded && socket.io.engine?.transport?.name === 'websocket') finish(true);
    };
    socket.on('hello', () => {
      hello = true;
      check();
    });
    socket.on('connect_error', (e) => finish(false, `connect_error: ${e.message}`));
    socket.on('disconnect', (r) => finish(false, `disconnect: ${r}`));
    socket.io.on('open', () => {
      const engine = socket.io.engine;
      engine.on('upgrade', () => {
        upgraded = true;
        check();
      });
      engine.on('upgradeError', (e) => finish(false, `upgradeError: ${e.message}`));
    });
  });
}

// Closed-loop sessions on a fresh server: WARMUP s (the cold start, reported on its own), then
// DURATION s measured. A window's rate counts the sessions that completed inside it; sessions
// still running at the end are awaited but not counted, so one that hangs until its timeout
// costs its client's share of the window, not the whole run's denominator. A failure belongs to
// the window its session started in. CPU is sampled over the measured window only; CPU per
// session divides the server group's CPU time between the two snapshots by the sessions
// completed between the moments they were taken (a timer can fire late under load).
async function sessionsRun(port, pgid, clients = CLIENTS) {
  const agents = Array.from({ length: clients }, (_, i) => agentFor(i));
  const t0 = performance.now();
  const warmEnd = t0 + WARMUP * 1000;
  const end = warmEnd + DURATION * 1000;
  const sessions = []; // { s0, t, ok, reason }
  const snaps = {};
  const timers = [
    setTimeout(() => {
      snaps.a = lib.cpuSnapshot(pgid);
      snaps.aT = performance.now();
    }, WARMUP * 1000),
    setTimeout(
      () => {
        snaps.b = lib.cpuSnapshot(pgid);
        snaps.bT = performance.now();
      },
      (WARMUP + DURATION) * 1000,
    ),
  ];
  await Promise.all(
    agents.map(async (a) => {
      while (performance.now() < end) {
        const s0 = performance.now();
        const r = await oneSession(port, a);
        sessions.push({ s0, t: performance.now(), ...r });
      }
    }),
  );
  for (const t of timers) clearTimeout(t);
  // The last sessions can all end before the end-of-window timer has run.
  if (!snaps.b) {
    snaps.b = lib.cpuSnapshot(pgid);
    snaps.bT = performance.now();
  }
  for (const a of agents) a.agent.destroy();
  const window = (from, to) => {
    const failures = new Map();
    for (const x of sessions)
      if (!x.ok && x.s0 >= from && x.s0 < to)
        failures.set(x.reason, (failures.get(x.reason) || 0) + 1);
    const done = sessions.filter((x) => x.ok && x.t >= from && x.t < to);
    const secs = (to - from) / 1000;
    return {
      ok: done.length,
      secs,
      rate: done.length / secs,
      p50: median(done.map((x) => x.t - x.s0)),
      failures: Object.fromEntries(failures),
    };
  };
  const cold = window(t0, warmEnd);
  const warm = window(warmEnd, end);
  const overrun = (Math.max(...sessions.map((x) => x.t)) - end) / 1000;
  const inCpuWindow = sessions.filter((x) => x.ok && x.t >= snaps.aT && x.t < snaps.bT).length;
  return {
    ...warm,
    cold,
    overrun,
    cpu: lib.cpuBetween(snaps.a, snaps.b),
    cpuPer: lib.cpuPerUnit(snaps.a, snaps.b, inCpuWindow),
  };
}

// Connects one broadcast client; resolves { socket, slot } once upgraded and greeted.
function connectClient(port, i, received) {
  const a = agentFor(i);
  return new Promise((resolve, reject) => {
    const socket = newSocket(port, a);
    let slot = null;
    let upgraded = false;
    const fail = (why) => {
      clearTimeout(timer);
      socket.close();
      a.agent.destroy();
      reject(new Error(`client ${i}: ${why}`));
    };
    const timer = setTimeout(() => fail('not ready in 15 s'), 15_000);
    const check = () => {
      if (slot !== null && upgraded) {
        clearTimeout(timer);
        resolve({ socket, slot, agent: a.agent });
      }
    };
    socket.on('hello', (h) => {
      slot = h.slot;
      check();
    });
    socket.on('chat', (m) => {
      const k = m.text;
      const seen = received[i];
      seen.set(k, (seen.get(k) || 0) + 1);
      received.count += 1;
      received.last = performance.now();
    });
    socket.on('connect_error', (e) => fail(e.message));
    socket.io.on('open', () => {
      socket.io.engine.on('upgrade', () => {
        upgraded = true;
        check();
      });
      socket.io.engine.on('upgradeError', (e) => fail(`upgradeError: ${e.message}`));
    });
  });
}

async function broadcastRun(port) {
  const received = Array.from({ length: BCLIENTS }, () => new Map());
  received.count = 0;
  received.last = 0;
  const clients = [];
  const connectFailures = []; // failed connection attempts (retried up to 3 times per client)
  for (let i = 0; i < BCLIENTS; i += 20) {
    const batch = [];
    for (let j = i; j < Math.min(BCLIENTS, i + 20); j++)
      batch.push(
        (async () => {
          for (let attempt = 1; ; attempt++) {
            try {
              return { i: j, ...(await connectClient(port, j, received)) };
            } catch (e) {
              connectFailures.push(e.message);
              if (attempt === 3) return null;
            }
          }
        })(),
      );
    clients.push(...(await Promise.all(batch)).filter(Boolean));
  }
  const perSlot = {};
  const senders = new Map();
  for (const c of clients) {
    perSlot[c.slot] = (perSlot[c.slot] || 0) + 1;
    if (!senders.has(c.slot)) senders.set(c.slot, c);
  }
  await lib.sleep(300);
  received.count = 0;
  const t0 = performance.now();
  await Promise.all(
    [...senders.values()].map(async ({ i, socket }) => {
      for (let k = 0; k < BMSGS; k++) {
        await new Promise((res, rej) => {
          const t = setTimeout(() => rej(new Error('ack timeout')), 10_000);
          socket.emit('chat', `${i}:${k}`, () => {
            clearTimeout(t);
            res();
          });
        });
      }
    }),
  );
  const expected = clients.length * senders.size * BMSGS;
  const waitEnd = performance.now() + 10_000;
  while (received.count < expected && performance.now() < waitEnd) await lib.sleep(20);
  await lib.sleep(200); // late duplicates
  let lost = 0;
  let dup = 0;
  for (const c of clients) {
    const seen = received[c.i];
    for (const { i } of senders.values())
      for (let k = 0; k < BMSGS; k++) {
        const n = seen.get(`${i}:${k}`) || 0;
        if (n === 0) lost += 1;
        else dup += n - 1;
      }
  }
  for (const c of clients) {
    c.socket.close();
    c.agent.destroy();
  }
  const secs = (received.last - t0) / 1000;
  return {
    expected,
    delivered: received.count,
    lost,
    dup,
    secs,
    rate: received.count / secs,
    messageRate: (senders.size * BMSGS) / secs,
    senders: senders.size,
    perSlot,
    clients: clients.length,
    connectFailures: connectFailures.length,
    connectFailureKinds: [...new Set(connectFailures.map((m) => m.replace(/^client \d+: /, '')))],
  };
}

// One run on a fresh server of `workers` workers (server.workers if it has its own count):
// waits for a quiet machine and a free port, starts it (with server.env), probes it, runs
// run(pgid) between two CPU snapshots and kills the group.
async function onFresh(server, port, workers, run) {
  const idle = await lib.waitQuiet(QUIET_WAIT_S, FOREIGN_MAX);
  await lib.waitPortFree(port, HOSTS);
  const srv = await lib.startServer({
    file: server.file,
    name: server.id,
    workers: server.workers ?? workers,
    port,
    env: server.env,
  });
  try {
    await lib.probe(port);
    const a = lib.cpuSnapshot(srv.pgid);
    const result = await run(srv.pgid);
    const b = lib.cpuSnapshot(srv.pgid);
    // A run that samples CPU over its own measured window reports that instead.
    return { cpu: lib.cpuBetween(a, b), ...result, idle, foreignTop: lib.foreignTop(a, b) };
  } finally {
    await lib.stopServer(srv);
  }
}

const fmtFail = (f) =>
  Object.entries(f)
    .map(([k, v]) => `${k} x${v}`)
    .join('; ') || '0';

const coresOf = (x) =>
  `${x.cpu.client.toFixed(2)} / ${x.cpu.server.toFixed(2)} / ${x.cpu.foreign.toFixed(2)}`;

// CPU us per session: total (primary / workers).
const fmtPer = (p) => `${fmtInt(p.total)} (${fmtInt(p.primary)} / ${fmtInt(p.workers)})`;

function logSessions(r, s, res) {
  console.log(
    `round ${r + 1} sessions ${s.id}: ${res.rate.toFixed(1)}/s warm (${res.ok} in ${res.secs.toFixed(1)} s, p50 ${res.p50.toFixed(0)} ms), cpu/session ${fmtPer(res.cpuPer)} us, ${res.cold.rate.toFixed(1)}/s cold, failures ${fmtFail(res.failures)} (cold ${fmtFail(res.cold.failures)}), overrun ${res.overrun.toFixed(2)} s, cpu client ${res.cpu.client.toFixed(2)} server ${res.cpu.server.toFixed(2)} foreign ${res.cpu.foreign.toFixed(2)}`,
  );
}

// ---------------------------------------------------------------------------------------------
// Figures: medians per sessions case, ratios (of medians, and per round), targets.

const count = (f) => Object.values(f).reduce((p, q) => p + q, 0);

function summarize(sess) {
  const rows = SESSION_CASES.map((s) => {
    const xs = sess[s.id];
    const med = (f) => median(xs.map(f));
    return {
      s,
      xs,
      rate: med((x) => x.rate),
      cold: med((x) => x.cold.rate),
      cpu: {
        total: med((x) => x.cpuPer.total),
        primary: med((x) => x.cpuPer.primary),
        workers: med((x) => x.cpuPer.workers),
      },
      failures: xs.reduce((a, x) => a + count(x.failures) + count(x.cold.failures), 0),
    };
  });
  const row = (id) => rows.find((x) => x.s.id === id);
  const metric = { cpu: (x) => x.cpuPer.total, rate: (x) => x.rate, cold: (x) => x.cold.rate };
  const ratio = (id, ref, m) => {
    const a = row(id);
    const b = row(ref);
    const value =
      m === 'cpu' ? a.cpu.total / b.cpu.total : m === 'cold' ? a.cold / b.cold : a.rate / b.rate;
    const perRound = a.xs.map((x, i) => metric[m](x) / metric[m](b.xs[i]));
    return { value, perRound };
  };
  for (const x of rows) {
    x.rateVsPlain = x.s.id === 'plain' ? Number.NaN : ratio(x.s.id, 'plain', 'rate').value;
    x.cpuVsPlain = x.s.id === 'plain' ? Number.NaN : ratio(x.s.id, 'plain', 'cpu').value;
  }
  const checks = TARGETS.map((t) => {
    const { value, perRound } = ratio(t.id, t.ref, t.metric);
    const what = t.metric === 'cpu' ? 'CPU/session' : 'sessions/s';
    const bound = t.metric === 'cpu' ? `<= ${t.max}x` : `>= ${t.min}x`;
    const ok = t.metric === 'cpu' ? value <= t.max : value >= t.min;
    return {
      ...t,
      text: `${t.id} ${what} ${bound} ${t.ref}`,
      value,
      perRound,
      result: Number.isFinite(value) ? (ok ? 'met' : 'missed') : 'n/a',
    };
  });
  const versus = {
    warm: ratio('sticky-mesh', 'socketio-sticky', 'rate'),
    cold: ratio('sticky-mesh', 'socketio-sticky', 'cold'),
  };
  return { rows, checks, versus };
}

const ratioText = (r) => `${fmtRatio(r.value)} (per round ${r.perRound.map(fmtRatio).join(', ')})`;
const fmtTargets = (checks, id, mark = (s) => s) =>
  checks
    .filter((t) => t.id === id)
    .map((t) => `${t.text.slice(t.id.length + 1)}: ${mark(t.result)}`)
    .join('; ') || '-';

function printTable({ rows, checks, versus }) {
  const table = [
    [
      'case',
      'sessions/s',
      'vs plain',
      'CPU us/session (primary / workers)',
      'vs plain',
      'failures',
      'targets',
    ],
  ];
  for (const x of rows)
    table.push([
      x.s.id,
      f1(x.rate),
      fmtRatio(x.rateVsPlain),
      fmtPer(x.cpu),
      fmtRatio(x.cpuVsPlain),
      String(x.failures),
      fmtTargets(checks, x.s.id),
    ]);
  console.log(
    `\nSessions, medians over ${ROUNDS} round${ROUNDS > 1 ? 's' : ''} (${CLIENTS} clients, ${SESSIONS_WORKERS} workers, ${DURATION} s measured after ${WARMUP} s):`,
  );
  for (const line of lib.formatTable(table)) console.log(line);
  console.log('');
  for (const c of checks)
    console.log(
      `target ${c.text}: ${fmtRatio(c.value)} (rounds ${c.perRound.map(fmtRatio).join(', ')}) -> ${c.result}`,
    );
  console.log(`sticky-mesh / socketio-sticky sessions/s, cold start: ${ratioText(versus.cold)}`);
}

// ---------------------------------------------------------------------------------------------

async function main() {
  const stamp = lib.distStamp();
  const port = await lib.findPort(HOSTS);
  const started = new Date();
  console.log(
    `socketio bench: ${ROUNDS} rounds; sessions ${WARMUP}+${DURATION} s, ${CLIENTS} clients, ${SESSIONS_WORKERS} workers; broadcast ${BCLIENTS} clients x ${BMSGS} messages, ${WORKERS} workers; port ${port}`,
  );
  const sess = Object.fromEntries(SESSION_CASES.map((s) => [s.id, []]));
  const bcast = Object.fromEntries(SERVERS.map((s) => [s.id, []]));
  for (let r = 0; r < ROUNDS; r++) {
    for (const s of r % 2 === 0 ? SESSION_CASES : [...SESSION_CASES].reverse()) {
      const res = await onFresh(s, port, SESSIONS_WORKERS, (pgid) => sessionsRun(port, pgid));
      sess[s.id].push(res);
      logSessions(r, s, res);
    }
    for (const s of r % 2 === 0 ? SERVERS : [...SERVERS].reverse()) {
      const res = await onFresh(s, port, WORKERS, () => broadcastRun(port));
      bcast[s.id].push(res);
      console.log(
        `round ${r + 1} broadcast ${s.id}: ${fmtInt(res.messageRate)} messages/s, ${fmtInt(res.rate)} deliveries/s (${res.delivered}/${res.expected} in ${res.secs.toFixed(2)} s), lost ${res.lost}, dup ${res.dup}, senders ${res.senders}, clients ${res.clients} (failed connect attempts ${res.connectFailures}: ${res.connectFailureKinds.join('; ')}), clients per slot ${JSON.stringify(res.perSlot)}, foreign ${res.cpu.foreign.toFixed(2)}`,
      );
    }
  }
  // The same measurement at other concurrencies: a closed loop of C clients finds a server's
  // rate at C sessions in flight, and the two servers are limited by different things (CPU, or
  // per-session latency), so the ratio moves with C.
  const sweep = [];
  for (const [k, clients] of SWEEP.entries()) {
    const order = k % 2 === 0 ? SERVERS : [...SERVERS].reverse();
    const point = { clients };
    for (const s of order) {
      point[s.id] = await onFresh(s, port, SESSIONS_WORKERS, (pgid) =>
        sessionsRun(port, pgid, clients),
      );
      console.log(
        `sweep ${clients} clients ${s.id}: ${point[s.id].rate.toFixed(1)}/s (p50 ${point[s.id].p50.toFixed(0)} ms), cpu/session ${fmtPer(point[s.id].cpuPer)} us, failures ${fmtFail(point[s.id].failures)}, cpu ${coresOf(point[s.id])}`,
      );
    }
    sweep.push(point);
  }
  if (lib.distStamp() !== stamp) throw new Error('dist/ changed during the run');
  const elapsedS = (Date.now() - started.getTime()) / 1000;

  const summary = summarize(sess);
  printTable(summary);
  const med = (xs, f) => median(xs.map(f));
  const bm = med(bcast['sticky-mesh'], (x) => x.rate);
  const bs = med(bcast['socketio-sticky'], (x) => x.rate);
  const mm = med(bcast['sticky-mesh'], (x) => x.messageRate);
  const ms = med(bcast['socketio-sticky'], (x) => x.messageRate);
  console.log(
    `broadcast median: sticky-mesh ${fmtInt(mm)} messages/s (${fmtInt(bm)} deliveries/s), @socket.io/sticky ${fmtInt(ms)} messages/s (${fmtInt(bs)} deliveries/s)`,
  );
  console.log(`\n${elapsedS.toFixed(0)} s in all`);
  if (!WRITE) {
    console.log('BENCH_WRITE=0: the results file is left alone');
    return;
  }
  const text = renderSection({
    summary,
    sess,
    bcast,
    sweep,
    broadcast: { bm, bs, mm, ms },
    started,
    elapsedS,
    stamp,
  });
  lib.writeResults('socketio', text);
}

// ---------------------------------------------------------------------------------------------
// The RESULTS.md section.

const row = (cells) => `| ${cells.join(' | ')} |`;

function renderSection({ summary, sess, bcast, sweep, broadcast, started, elapsedS, stamp }) {
  const { rows, checks, versus } = summary;
  const mark = (s) => (s === 'met' ? 'met' : s === 'missed' ? '**missed**' : 'n/a');
  const exact = (id) => bcast[id].every((x) => x.lost === 0 && x.dup === 0);
  const L = [];
  const p = (...xs) => L.push(...xs);
  p('<!-- BEGIN socketio (written by bench/socketio.mjs; do not edit by hand) -->');
  p('## Socket.io (issue 7; sessions as issue 16 asks)', '');
  p(
    `Date ${started.toISOString()} (${elapsedS.toFixed(0)} s); commit ${lib.gitCommit()}; dist/ built ${stamp}; ${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}; Node ${process.version}; socket.io ${lib.packageVersion('socket.io')}, socket.io-client ${lib.packageVersion('socket.io-client')}, @socket.io/sticky ${lib.packageVersion('@socket.io/sticky')}, @socket.io/cluster-adapter ${lib.packageVersion('@socket.io/cluster-adapter')}. ${ROUNDS} round${ROUNDS > 1 ? 's' : ''}; sessions with ${SESSIONS_WORKERS} workers, broadcast with ${WORKERS}; every server runs the same chat (examples/socketio/chat.js).`,
    '',
  );
  p('| target | ratio of medians (per round) | result |', '|---|---|---|');
  for (const c of checks)
    p(
      row([
        `${c.text} (issue 16; ${DURATION} s measured after ${WARMUP} s of the same load)`,
        ratioText(c),
        mark(c.result),
      ]),
    );
  p(
    row([
      `sticky-mesh sessions/s >= 3x socketio-sticky (issue 7, set with 4 workers; this run: ${SESSIONS_WORKERS})`,
      ratioText(versus.warm),
      SESSIONS_WORKERS === 4
        ? mark(versus.warm.value >= 3 ? 'met' : 'missed')
        : 'not evaluated (other worker count)',
    ]),
  );
  p(
    row([
      'broadcast exactly once (sticky-mesh)',
      bcast['sticky-mesh'].map((x) => `lost ${x.lost}, dup ${x.dup}`).join('; '),
      exact('sticky-mesh') ? 'met' : '**missed**',
    ]),
  );
  p('');
  p(
    `### Sessions (${CLIENTS} closed-loop clients, ${SESSIONS_WORKERS} workers; polling handshake + connect/'hello' + websocket upgrade + close)`,
    '',
  );
  p(
    `| case | server | sessions/s (median, ${DURATION} s measured) | per round | vs plain | CPU us/session (primary / workers) | per round | CPU vs plain | sessions/s cold (first ${WARMUP} s) | failed sessions (both windows) | targets |`,
  );
  p('|---|---|---:|---|---:|---:|---|---:|---:|---:|---|');
  for (const x of rows)
    p(
      row([
        x.s.id,
        x.s.label,
        f1(x.rate),
        x.xs.map((r) => f1(r.rate)).join(', '),
        fmtRatio(x.rateVsPlain),
        fmtPer(x.cpu),
        x.xs.map((r) => fmtInt(r.cpuPer.total)).join(', '),
        fmtRatio(x.cpuVsPlain),
        f1(x.cold),
        String(x.failures),
        fmtTargets(checks, x.s.id, mark),
      ]),
    );
  p('');
  p(
    `Cold start (the first ${WARMUP} s of each fresh server, JIT warm-up of every process included), not a target: sticky-mesh / socketio-sticky ${ratioText(versus.cold)}.`,
    '',
  );
  p('Per run:', '');
  p(
    `| round | case | sessions/s (${DURATION} s measured) | sessions | p50 session ms | CPU us/session (primary / workers) | failures | sessions/s cold (first ${WARMUP} s) | failures cold | CPU client / server / foreign (cores, measured window) |`,
  );
  p('|---|---|---|---|---|---|---|---|---|---|');
  for (let r = 0; r < ROUNDS; r++)
    for (const s of SESSION_CASES) {
      const x = sess[s.id][r];
      p(
        row([
          String(r + 1),
          s.id,
          x.rate.toFixed(1),
          String(x.ok),
          x.p50.toFixed(0),
          fmtPer(x.cpuPer),
          fmtFail(x.failures),
          x.cold.rate.toFixed(1),
          fmtFail(x.cold.failures),
          coresOf(x),
        ]),
      );
    }
  p('');
  if (sweep.length) sweepLines(p, sweep, rows);
  broadcastLines(p, bcast, broadcast);
  methodLines(p);
  p('<!-- END socketio -->');
  return L.join('\n');
}

function sweepLines(p, sweep, rows) {
  const medianOf = (id) => rows.find((x) => x.s.id === id);
  p(
    `Other concurrencies (one run per server each, measured window only; ${CLIENTS} clients is the median of the rounds above):`,
    '',
  );
  p(
    '| clients | sticky-mesh sessions/s | @socket.io/sticky sessions/s | ratio | CPU us/session (sticky-mesh / @socket.io/sticky) | p50 session ms (sticky-mesh / @socket.io/sticky) | failures @socket.io/sticky | CPU client / server / foreign, sticky-mesh; @socket.io/sticky |',
  );
  p('|---|---|---|---|---|---|---|---|');
  const points = [
    ...sweep,
    {
      clients: CLIENTS,
      median: true,
      'sticky-mesh': { rate: medianOf('sticky-mesh').rate, cpuPer: medianOf('sticky-mesh').cpu },
      'socketio-sticky': {
        rate: medianOf('socketio-sticky').rate,
        cpuPer: medianOf('socketio-sticky').cpu,
      },
    },
  ].sort((a, b) => a.clients - b.clients);
  for (const pt of points) {
    const m = pt['sticky-mesh'];
    const o = pt['socketio-sticky'];
    p(
      row([
        pt.median ? `${pt.clients} (rounds)` : String(pt.clients),
        m.rate.toFixed(1),
        o.rate.toFixed(1),
        fmtRatio(m.rate / o.rate),
        `${fmtInt(m.cpuPer.total)} / ${fmtInt(o.cpuPer.total)}`,
        pt.median ? 'above' : `${m.p50.toFixed(0)} / ${o.p50.toFixed(0)}`,
        pt.median ? 'above' : fmtFail(o.failures),
        pt.median ? 'above' : `${coresOf(m)}; ${coresOf(o)}`,
      ]),
    );
  }
  p('');
}

function broadcastLines(p, bcast, { bm, bs, mm, ms }) {
  p(
    `### Broadcast fan-out (${BCLIENTS} websocket clients, ${WORKERS} workers, one sender per worker, ${BMSGS} acked 'chat' messages per sender)`,
    '',
  );
  p(
    '| round | server | messages/s | deliveries/s | delivered / expected | lost | dup | clients (failed connect attempts) | clients per worker slot | foreign (cores) |',
  );
  p('|---|---|---|---|---|---|---|---|---|---|');
  for (let r = 0; r < ROUNDS; r++)
    for (const s of SERVERS) {
      const x = bcast[s.id][r];
      p(
        row([
          String(r + 1),
          s.label,
          fmtInt(x.messageRate),
          fmtInt(x.rate),
          `${x.delivered} / ${x.expected}`,
          String(x.lost),
          String(x.dup),
          `${x.clients} (${x.connectFailures})`,
          Object.entries(x.perSlot)
            .map(([k, v]) => `${k}:${v}`)
            .join(' '),
          x.cpu.foreign.toFixed(2),
        ]),
      );
    }
  p('');
  p(
    `Medians: sticky-mesh ${fmtInt(mm)} messages/s to ${BCLIENTS} clients each (${fmtInt(bm)} deliveries/s); @socket.io/sticky ${fmtInt(ms)} messages/s (${fmtInt(bs)} deliveries/s), for reference. A message counts once however many clients it reaches.`,
    '',
  );
}

function methodLines(p) {
  p('Method and caveats:', '');
  p(
    "- Servers: bench/servers/socketio-chat-sticky-mesh.mjs (the example's wiring: IP mode, sessionAffinity, sticky-mesh's genid / generateId, serialization 'advanced', ReplicatedStore, cluster adapter with setupPrimary; with env STICKY_AFFINITY=0 the same without sessionAffinity and without the id makers: the sticky-mesh-no-affinity case) and bench/servers/socketio-chat-sticky.mjs (@socket.io/sticky setupMaster with least-connection + setupWorker, cluster adapter, serialization 'advanced'). Session store: ReplicatedStore for sticky-mesh, express-session MemoryStore for @socket.io/sticky (ReplicatedStore needs a sticky-mesh cluster); the clients send no cookie and the chat does not save uninitialised sessions, so neither store is written during the bench. Reference: bench/servers/socketio-chat-plain.mjs, the same chat in one process (MemoryStore, default adapter), sessions only.",
  );
  p(
    '- Clients: socket.io-client in the bench process; client i binds 127.0.0.(2+i) via its own keep-alive http.Agent with localAddress (and the websocket localAddress). Each run starts a fresh server; in each round the sessions cases run in the order sticky-mesh, sticky-mesh-no-affinity, socketio-sticky, plain (reversed in even rounds), then the broadcast runs.',
  );
  p(
    `- Windows: one continuous closed-loop load per fresh server, ${WARMUP} s then ${DURATION} s. A window's rate = sessions completed inside it / its length; sessions still running at the end are awaited (up to their 10 s timeout) but not counted; a failed session is counted in the window it started in. Targets are read on the measured window (the steady state a long-running server lives in); the cold-start window is reported beside it. CPU columns cover the measured window.`,
  );
  p(
    "- CPU us/session = CPU time (user + system, /proc/<pid>/stat) of the server's whole process group (primary + workers; plain's one process counts as primary) between two snapshots at the measured window's edges / sessions completed between them. Failed sessions cost CPU without counting, which raises the figure of a server that fails sessions (failed sessions are counted per case above). The load generator's CPU is not in it.",
  );
  p(
    `- ${os.cpus().length} cores shared between the load generator (one Node process running every client) and the servers (${SESSIONS_WORKERS} workers + primary for the sessions cases, ${WORKERS} + primary for broadcast, or the one reference process); absolute figures are bounded by that, and foreign load (other processes) is shown per run. Ratios are comparable only where the foreign column is near 0 for both runs of a round.`,
  );
  p(
    '- Broadcast rate = deliveries / (first emit .. last delivery); each sender waits for the ack of its previous message (the ack is sent after io.emit, not after delivery).',
  );
}

lib.runMain(main);
