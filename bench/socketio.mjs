#!/usr/bin/env node
// Socket.io benchmark (issue 7): the example chat (examples/socketio/chat.js, createChatServer)
// on 4 workers under two balancers.
//
//   node bench/socketio.mjs [--quick]     (needs dist/: `npm run build`)
//
// Servers (bench/servers/*.mjs, started afresh for every run as in bench/lib.mjs: own process
// group, READY line, GET / probe, group killed afterwards):
//   sticky-mesh      socketio-chat-sticky-mesh.mjs: examples/socketio/server.js's wiring without
//                    REDIS_URL (IP mode, sessionAffinity, serialization 'advanced',
//                    ReplicatedStore, @socket.io/cluster-adapter + setupPrimary in the primary)
//   socketio-sticky  socketio-chat-sticky.mjs: @socket.io/sticky 2.0.1 setupMaster(httpServer,
//                    { loadBalancingMethod: 'least-connection' }) + setupWorker(io),
//                    @socket.io/cluster-adapter, serialization 'advanced', express-session
//                    MemoryStore (see that file)
//   plain            socketio-chat-plain.mjs: the same chat in one process, no cluster (sessions
//                    only; the reference for what the chat itself does on this machine)
//
// 1. sessions: new Socket.io sessions per second, closed loop. C clients (socket.io-client, this
//    process); client i binds every connection to 127.0.0.(2+i) through its own http.Agent
//    ({ keepAlive: true, localAddress }, also passed as the websocket's localAddress), since IP
//    mode keys on the source address. One session = polling handshake, Socket.io connect and the
//    chat's 'hello' event, upgrade to websocket (engine 'upgrade' and
//    socket.io.engine.transport.name === 'websocket'), close; the client then starts its next
//    session. One continuous load per fresh server: BENCH_WARMUP s (reported as the cold start),
//    then BENCH_DURATION s measured. A window's rate = sessions completed inside it / its length
//    (sessions still running at the end are awaited, not counted); a failure counts in the window
//    its session started in. Failures: connect_error, upgradeError, disconnect before done, no
//    upgrade / no hello within 10 s. Rounds alternate which server goes first; report medians and
//    per-round ratios. Target (measured window): sticky-mesh / socketio-sticky >= 3.
// 2. broadcast: B clients connected (polling, then websocket), from addresses 127.0.0.(2+i), each
//    noting the worker slot of its 'hello'. One client per worker slot (the first seen) emits
//    'chat' K times, each after the previous one's ack; the 4 senders run concurrently. The chat
//    handler does io.emit('chat') (through the cluster adapter, relayed by the primary). Every
//    client must receive every message exactly once (B * senders * K deliveries; lost and
//    duplicate deliveries counted). Rate: deliveries / (first emit .. last delivery). Run for
//    sticky-mesh and, for reference, @socket.io/sticky.
//
// The load generator (all clients, one Node process) shares the machine's cores with the servers,
// so absolute figures are bounded by the client's CPU too. Foreign CPU (other processes) is
// measured per run (bench/lib.mjs cpuBetween) and reported; before each run the bench waits up to
// BENCH_QUIET_WAIT s for it to fall below BENCH_FOREIGN_MAX cores.
//
// Knobs [defaults; --quick]: BENCH_ROUNDS [5; 1], BENCH_WARMUP s [5; 2], BENCH_DURATION s [10; 3],
// BENCH_CLIENTS [32; 16], BENCH_SWEEP other client counts, one run each ['8,16,64'; none],
// BENCH_BCAST_CLIENTS [200; 40], BENCH_BCAST_MESSAGES per sender [100; 30], BENCH_WORKERS [4],
// BENCH_WRITE [1; 0] (0: RESULTS.md untouched), BENCH_QUIET_WAIT [5], BENCH_FOREIGN_MAX [0.3].
// Output: stdout, and the section between the socketio markers of bench/RESULTS.md.

import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import { io as ioClient } from 'socket.io-client';
import * as lib from './lib.mjs';
import { fmtInt, fmtRatio, intEnv, median } from './lib.mjs';

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
const WORKERS = intEnv('BENCH_WORKERS', 4);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', 5, 0);
const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.3);
const WRITE = (process.env.BENCH_WRITE ?? (QUICK ? '0' : '1')) !== '0';
const SESSION_TIMEOUT_MS = 10_000;
if ([CLIENTS, BCLIENTS, ...SWEEP].some((n) => !(Number.isInteger(n) && n >= 1 && n <= 253)))
  throw new Error('client counts must be integers from 1 to 253 (127.0.0.2..254)');

const SERVERS = [
  { id: 'sticky-mesh', label: 'sticky-mesh (IP mode)', file: 'socketio-chat-sticky-mesh.mjs' },
  { id: 'socketio-sticky', label: '@socket.io/sticky 2.0.1', file: 'socketio-chat-sticky.mjs' },
];
/** Sessions only: what one process of the same chat does on this machine (no cluster at all). */
const REFERENCE = {
  id: 'plain',
  label: 'one plain process (reference)',
  file: 'socketio-chat-plain.mjs',
  workers: 1,
};
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
// the window its session started in. CPU is sampled over the measured window only.
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
    }, WARMUP * 1000),
    setTimeout(
      () => {
        snaps.b = lib.cpuSnapshot(pgid);
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
  snaps.b ??= lib.cpuSnapshot(pgid);
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
  return { ...warm, cold, overrun, cpu: lib.cpuBetween(snaps.a, snaps.b) };
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

async function onFresh(server, port, run) {
  const idle = await lib.waitQuiet(QUIET_WAIT_S, FOREIGN_MAX);
  await lib.waitPortFree(port, HOSTS);
  const srv = await lib.startServer({
    file: server.file,
    name: server.id,
    workers: server.workers ?? WORKERS,
    port,
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

function logSessions(r, s, res) {
  console.log(
    `round ${r + 1} sessions ${s.id}: ${res.rate.toFixed(1)}/s warm (${res.ok} in ${res.secs.toFixed(1)} s, p50 ${res.p50.toFixed(0)} ms), ${res.cold.rate.toFixed(1)}/s cold, failures ${fmtFail(res.failures)} (cold ${fmtFail(res.cold.failures)}), overrun ${res.overrun.toFixed(2)} s, cpu client ${res.cpu.client.toFixed(2)} server ${res.cpu.server.toFixed(2)} foreign ${res.cpu.foreign.toFixed(2)}`,
  );
}

async function main() {
  const stamp = lib.distStamp();
  const port = await lib.findPort(HOSTS);
  const started = new Date();
  const sess = { 'sticky-mesh': [], 'socketio-sticky': [], plain: [] };
  const bcast = { 'sticky-mesh': [], 'socketio-sticky': [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? SERVERS : [...SERVERS].reverse();
    for (const s of order) {
      const res = await onFresh(s, port, (pgid) => sessionsRun(port, pgid));
      sess[s.id].push(res);
      logSessions(r, s, res);
    }
    const ref = await onFresh(REFERENCE, port, (pgid) => sessionsRun(port, pgid));
    sess.plain.push(ref);
    logSessions(r, REFERENCE, ref);
    for (const s of order) {
      const res = await onFresh(s, port, () => broadcastRun(port));
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
      point[s.id] = await onFresh(s, port, (pgid) => sessionsRun(port, pgid, clients));
      console.log(
        `sweep ${clients} clients ${s.id}: ${point[s.id].rate.toFixed(1)}/s (p50 ${point[s.id].p50.toFixed(0)} ms), failures ${fmtFail(point[s.id].failures)}, cpu ${coresOf(point[s.id])}`,
      );
    }
    sweep.push(point);
  }
  if (lib.distStamp() !== stamp) throw new Error('dist/ changed during the run');

  const med = (xs, f) => median(xs.map(f));
  const figures = (f) => {
    const sm = med(sess['sticky-mesh'], f);
    const ss = med(sess['socketio-sticky'], f);
    const rounds = sess['sticky-mesh'].map((x, i) => f(x) / f(sess['socketio-sticky'][i]));
    return { sm, ss, ratio: sm / ss, rounds, plain: med(sess.plain, f) };
  };
  const warm = figures((x) => x.rate);
  const cold = figures((x) => x.cold.rate);
  const bm = med(bcast['sticky-mesh'], (x) => x.rate);
  const bs = med(bcast['socketio-sticky'], (x) => x.rate);
  const mm = med(bcast['sticky-mesh'], (x) => x.messageRate);
  const ms = med(bcast['socketio-sticky'], (x) => x.messageRate);
  const exact = (id) => bcast[id].every((x) => x.lost === 0 && x.dup === 0);
  const count = (f) => Object.values(f).reduce((p, q) => p + q, 0);
  const totalFail = (id) =>
    sess[id].reduce((a, x) => a + count(x.failures) + count(x.cold.failures), 0);
  const ratioText = (x) =>
    `${fmtRatio(x.ratio)} (medians ${x.sm.toFixed(1)} vs ${x.ss.toFixed(1)}/s; per round ${x.rounds.map(fmtRatio).join(', ')})`;
  console.log(
    `sessions/s, measured window: ${ratioText(warm)}; one plain process ${warm.plain.toFixed(1)}`,
  );
  console.log(
    `sessions/s, cold start: ${ratioText(cold)}; one plain process ${cold.plain.toFixed(1)}`,
  );
  console.log(
    `broadcast median: sticky-mesh ${fmtInt(mm)} messages/s (${fmtInt(bm)} deliveries/s), @socket.io/sticky ${fmtInt(ms)} messages/s (${fmtInt(bs)} deliveries/s)`,
  );
  if (!WRITE) return;

  const row = (cells) => `| ${cells.join(' | ')} |`;
  const lines = [];
  lines.push('<!-- BEGIN socketio (written by bench/socketio.mjs; do not edit by hand) -->');
  lines.push('## Socket.io (issue 7)');
  lines.push('');
  lines.push(
    `Date ${started.toISOString()}; commit ${lib.gitCommit()}; dist/ built ${stamp}; ${os.cpus().length} x ${os.cpus()[0]?.model ?? '?'}; Node ${process.version}; socket.io ${lib.packageVersion('socket.io')}, socket.io-client ${lib.packageVersion('socket.io-client')}, @socket.io/sticky ${lib.packageVersion('@socket.io/sticky')}, @socket.io/cluster-adapter ${lib.packageVersion('@socket.io/cluster-adapter')}. ${ROUNDS} rounds, ${WORKERS} workers, both servers run the same chat (examples/socketio/chat.js).`,
  );
  lines.push('');
  lines.push('| target | result | met? |');
  lines.push('|---|---|---|');
  lines.push(
    row([
      `new Socket.io sessions/s: sticky-mesh / @socket.io/sticky >= 3x (${DURATION} s measured after ${WARMUP} s of the same load)`,
      ratioText(warm),
      warm.ratio >= 3 ? 'yes' : 'no',
    ]),
  );
  lines.push(
    row([
      'broadcast exactly once (sticky-mesh)',
      `${bcast['sticky-mesh'].map((x) => `lost ${x.lost}, dup ${x.dup}`).join('; ')}`,
      exact('sticky-mesh') ? 'yes' : 'no',
    ]),
  );
  lines.push('');
  lines.push(
    `Cold start (the first ${WARMUP} s of each fresh server, JIT warm-up of every process included), not a target: ${ratioText(cold)}. One plain process of the same chat (no cluster, 1 process): ${warm.plain.toFixed(1)} sessions/s measured, ${cold.plain.toFixed(1)} cold.`,
  );
  lines.push('');
  lines.push(
    `### Sessions (${CLIENTS} closed-loop clients; polling handshake + connect/'hello' + websocket upgrade + close)`,
  );
  lines.push('');
  lines.push(
    `| round | server | sessions/s (${DURATION} s measured) | sessions | p50 session ms | failures | sessions/s cold (first ${WARMUP} s) | failures cold | CPU client / server / foreign (cores, measured window) |`,
  );
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (let r = 0; r < ROUNDS; r++)
    for (const s of [...SERVERS, REFERENCE]) {
      const x = sess[s.id][r];
      lines.push(
        row([
          String(r + 1),
          s.label,
          x.rate.toFixed(1),
          String(x.ok),
          x.p50.toFixed(0),
          fmtFail(x.failures),
          x.cold.rate.toFixed(1),
          fmtFail(x.cold.failures),
          coresOf(x),
        ]),
      );
    }
  lines.push('');
  if (sweep.length) {
    lines.push(
      `Other concurrencies (one run per server each, measured window only; ${CLIENTS} clients is the median of the rounds above):`,
    );
    lines.push('');
    lines.push(
      '| clients | sticky-mesh sessions/s | @socket.io/sticky sessions/s | ratio | p50 session ms (sticky-mesh / @socket.io/sticky) | failures @socket.io/sticky | CPU client / server / foreign, sticky-mesh; @socket.io/sticky |',
    );
    lines.push('|---|---|---|---|---|---|---|');
    const points = [
      ...sweep,
      {
        clients: CLIENTS,
        median: true,
        'sticky-mesh': { rate: warm.sm },
        'socketio-sticky': { rate: warm.ss },
      },
    ].sort((a, b) => a.clients - b.clients);
    for (const pt of points) {
      const m = pt['sticky-mesh'];
      const o = pt['socketio-sticky'];
      lines.push(
        row([
          pt.median ? `${pt.clients} (rounds)` : String(pt.clients),
          m.rate.toFixed(1),
          o.rate.toFixed(1),
          fmtRatio(m.rate / o.rate),
          pt.median ? 'above' : `${m.p50.toFixed(0)} / ${o.p50.toFixed(0)}`,
          pt.median ? 'above' : fmtFail(o.failures),
          pt.median ? 'above' : `${coresOf(m)}; ${coresOf(o)}`,
        ]),
      );
    }
    lines.push('');
  }
  lines.push(
    `Failed sessions in total (both windows): sticky-mesh ${totalFail('sticky-mesh')}, @socket.io/sticky ${totalFail('socketio-sticky')}, one plain process ${totalFail('plain')}.`,
  );
  lines.push('');
  lines.push(
    `### Broadcast fan-out (${BCLIENTS} websocket clients, one sender per worker, ${BMSGS} acked 'chat' messages per sender)`,
  );
  lines.push('');
  lines.push(
    '| round | server | messages/s | deliveries/s | delivered / expected | lost | dup | clients (failed connect attempts) | clients per worker slot | foreign (cores) |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|---|');
  for (let r = 0; r < ROUNDS; r++)
    for (const s of SERVERS) {
      const x = bcast[s.id][r];
      lines.push(
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
  lines.push('');
  lines.push(
    `Medians: sticky-mesh ${fmtInt(mm)} messages/s to ${BCLIENTS} clients each (${fmtInt(bm)} deliveries/s); @socket.io/sticky ${fmtInt(ms)} messages/s (${fmtInt(bs)} deliveries/s), for reference. A message counts once however many clients it reaches.`,
  );
  lines.push('');
  lines.push('Method and caveats:');
  lines.push('');
  lines.push(
    "- Servers: bench/servers/socketio-chat-sticky-mesh.mjs (the example's wiring: IP mode, sessionAffinity, serialization 'advanced', ReplicatedStore, cluster adapter with setupPrimary) and bench/servers/socketio-chat-sticky.mjs (@socket.io/sticky setupMaster with least-connection + setupWorker, cluster adapter, serialization 'advanced'). Session store: ReplicatedStore for sticky-mesh, express-session MemoryStore for @socket.io/sticky (ReplicatedStore needs a sticky-mesh cluster); the clients send no cookie and the chat does not save uninitialised sessions, so neither store is written during the bench. Reference: bench/servers/socketio-chat-plain.mjs, the same chat in one process (MemoryStore, default adapter), sessions only.",
  );
  lines.push(
    '- Clients: socket.io-client in the bench process; client i binds 127.0.0.(2+i) via its own keep-alive http.Agent with localAddress (and the websocket localAddress). Each run starts a fresh server; rounds alternate which server goes first.',
  );
  lines.push(
    `- Windows: one continuous closed-loop load per fresh server, ${WARMUP} s then ${DURATION} s. A window's rate = sessions completed inside it / its length; sessions still running at the end are awaited (up to their 10 s timeout) but not counted; a failed session is counted in the window it started in. The target is read on the measured window (the steady state a long-running server lives in); the cold-start window is reported beside it. CPU columns cover the measured window.`,
  );
  lines.push(
    '- 2 cores shared between the load generator (one Node process running every client) and the servers (4 workers + primary, or the one reference process); absolute figures are bounded by that, and foreign load (other processes) is shown per run. Ratios are comparable only where the foreign column is near 0 for both runs of a round.',
  );
  lines.push(
    '- Broadcast rate = deliveries / (first emit .. last delivery); each sender waits for the ack of its previous message (the ack is sent after io.emit, not after delivery).',
  );
  lines.push('<!-- END socketio -->');
  const file = path.join(lib.benchDir, 'RESULTS.md');
  lib.writeSection(file, 'socketio', lines.join('\n'));
  console.log(`wrote the socketio section of ${file}`);
}

lib.runMain(main);
