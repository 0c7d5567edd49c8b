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
//
// 1. sessions: new Socket.io sessions per second, closed loop. C clients (socket.io-client, this
//    process); client i binds every connection to 127.0.0.(2+i) through its own http.Agent
//    ({ keepAlive: true, localAddress }, also passed as the websocket's localAddress), since IP
//    mode keys on the source address. One session = polling handshake, Socket.io connect and the
//    chat's 'hello' event, upgrade to websocket (engine 'upgrade' and
//    socket.io.engine.transport.name === 'websocket'), close; the client then starts its next
//    session. Sessions started before the end of the period count; the rate is completed
//    sessions / (time until the last one finished). Failures: connect_error, upgradeError,
//    disconnect before done, no upgrade / no hello within 10 s. Rounds alternate which server
//    goes first; report medians and per-round ratios. Target: sticky-mesh / socketio-sticky >= 3.
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
// Knobs [defaults; --quick]: BENCH_ROUNDS [3; 1], BENCH_DURATION s [10; 3], BENCH_CLIENTS [32; 16],
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
const ROUNDS = intEnv('BENCH_ROUNDS', QUICK ? 1 : 3);
const DURATION = intEnv('BENCH_DURATION', QUICK ? 3 : 10);
const CLIENTS = intEnv('BENCH_CLIENTS', QUICK ? 16 : 32);
const BCLIENTS = intEnv('BENCH_BCAST_CLIENTS', QUICK ? 40 : 200);
const BMSGS = intEnv('BENCH_BCAST_MESSAGES', QUICK ? 30 : 100);
const WORKERS = intEnv('BENCH_WORKERS', 4);
const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', 5, 0);
const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.3);
const WRITE = (process.env.BENCH_WRITE ?? (QUICK ? '0' : '1')) !== '0';
const SESSION_TIMEOUT_MS = 10_000;
if (CLIENTS > 253 || BCLIENTS > 253) throw new Error('at most 253 clients (127.0.0.2..254)');

const SERVERS = [
  { id: 'sticky-mesh', label: 'sticky-mesh (IP mode)', file: 'socketio-chat-sticky-mesh.mjs' },
  { id: 'socketio-sticky', label: '@socket.io/sticky 2.0.1', file: 'socketio-chat-sticky.mjs' },
];
const HOSTS = ['127.0.0.1'];

function agentFor(i) {
  const localAddress = lib.sourceAddress(i);
  return { localAddress, agent: new http.Agent({ keepAlive: true, localAddress }) };
}

// One Socket.io session; resolves { ok, reason }.
function oneSession(port, a) {
  return new Promise((resolve) => {
    const socket = ioClient(`http://127.0.0.1:${port}`, {
      forceNew: true,
      reconnection: false,
      transports: ['polling', 'websocket'],
      agent: a.agent,
      localAddress: a.localAddress,
      timeout: SESSION_TIMEOUT_MS,
    });
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

async function sessionsRun(port, seconds) {
  const agents = Array.from({ length: CLIENTS }, (_, i) => agentFor(i));
  const failures = new Map();
  const lat = [];
  let ok = 0;
  let last = 0;
  const t0 = performance.now();
  const end = t0 + seconds * 1000;
  await Promise.all(
    agents.map(async (a) => {
      while (performance.now() < end) {
        const s0 = performance.now();
        const r = await oneSession(port, a);
        last = performance.now();
        if (r.ok) {
          ok += 1;
          lat.push(last - s0);
        } else failures.set(r.reason, (failures.get(r.reason) || 0) + 1);
      }
    }),
  );
  for (const a of agents) a.agent.destroy();
  const secs = (last - t0) / 1000;
  return { ok, failures: Object.fromEntries(failures), secs, rate: ok / secs, p50: median(lat) };
}

// Connects one broadcast client; resolves { socket, slot } once upgraded and greeted.
function connectClient(port, i, received) {
  const a = agentFor(i);
  return new Promise((resolve, reject) => {
    const socket = ioClient(`http://127.0.0.1:${port}`, {
      forceNew: true,
      reconnection: false,
      transports: ['polling', 'websocket'],
      agent: a.agent,
      localAddress: a.localAddress,
    });
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
  const srv = await lib.startServer({ file: server.file, name: server.id, workers: WORKERS, port });
  try {
    await lib.probe(port);
    const a = lib.cpuSnapshot(srv.pgid);
    const result = await run();
    const b = lib.cpuSnapshot(srv.pgid);
    return { ...result, cpu: lib.cpuBetween(a, b), idle, foreignTop: lib.foreignTop(a, b) };
  } finally {
    await lib.stopServer(srv);
  }
}

const fmtFail = (f) =>
  Object.entries(f)
    .map(([k, v]) => `${k} x${v}`)
    .join('; ') || '0';

async function main() {
  const stamp = lib.distStamp();
  const port = await lib.findPort(HOSTS);
  const started = new Date();
  const sess = { 'sticky-mesh': [], 'socketio-sticky': [] };
  const bcast = { 'sticky-mesh': [], 'socketio-sticky': [] };
  for (let r = 0; r < ROUNDS; r++) {
    const order = r % 2 === 0 ? SERVERS : [...SERVERS].reverse();
    for (const s of order) {
      // A short warm-up on the same server is not done: each run starts a fresh server, and
      // the first second of the period includes the workers' JIT warm-up for both.
      const res = await onFresh(s, port, () => sessionsRun(port, DURATION));
      sess[s.id].push(res);
      console.log(
        `round ${r + 1} sessions ${s.id}: ${res.rate.toFixed(1)}/s (${res.ok} in ${res.secs.toFixed(2)} s, p50 ${res.p50.toFixed(0)} ms), failures ${fmtFail(res.failures)}, cpu client ${res.cpu.client.toFixed(2)} server ${res.cpu.server.toFixed(2)} foreign ${res.cpu.foreign.toFixed(2)}`,
      );
    }
    for (const s of order) {
      const res = await onFresh(s, port, () => broadcastRun(port));
      bcast[s.id].push(res);
      console.log(
        `round ${r + 1} broadcast ${s.id}: ${fmtInt(res.rate)} deliveries/s (${res.delivered}/${res.expected} in ${res.secs.toFixed(2)} s), lost ${res.lost}, dup ${res.dup}, senders ${res.senders}, clients ${res.clients} (failed connect attempts ${res.connectFailures}: ${res.connectFailureKinds.join('; ')}), clients per slot ${JSON.stringify(res.perSlot)}, foreign ${res.cpu.foreign.toFixed(2)}`,
      );
    }
  }
  if (lib.distStamp() !== stamp) throw new Error('dist/ changed during the run');

  const med = (xs, f) => median(xs.map(f));
  const sm = med(sess['sticky-mesh'], (x) => x.rate);
  const ss = med(sess['socketio-sticky'], (x) => x.rate);
  const ratios = sess['sticky-mesh'].map((x, i) => x.rate / sess['socketio-sticky'][i].rate);
  const ratio = sm / ss;
  const bm = med(bcast['sticky-mesh'], (x) => x.rate);
  const bs = med(bcast['socketio-sticky'], (x) => x.rate);
  const exact = (id) => bcast[id].every((x) => x.lost === 0 && x.dup === 0);
  const totalFail = (id) =>
    sess[id].reduce((a, x) => a + Object.values(x.failures).reduce((p, q) => p + q, 0), 0);
  console.log(
    `sessions/s median: sticky-mesh ${sm.toFixed(1)}, @socket.io/sticky ${ss.toFixed(1)}, ratio ${fmtRatio(ratio)} (per round ${ratios.map(fmtRatio).join(', ')})`,
  );
  console.log(
    `broadcast deliveries/s median: sticky-mesh ${fmtInt(bm)}, @socket.io/sticky ${fmtInt(bs)}`,
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
      'new Socket.io sessions/s: sticky-mesh / @socket.io/sticky >= 3x',
      `${fmtRatio(ratio)} (medians ${sm.toFixed(1)} vs ${ss.toFixed(1)}/s; per round ${ratios.map(fmtRatio).join(', ')})`,
      ratio >= 3 ? 'yes' : 'no',
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
    `### Sessions (${CLIENTS} closed-loop clients, ${DURATION} s per run; polling handshake + connect/'hello' + websocket upgrade + close)`,
  );
  lines.push('');
  lines.push(
    '| round | server | sessions/s | sessions / elapsed s | p50 session ms | failures | CPU client / server / foreign (cores) |',
  );
  lines.push('|---|---|---|---|---|---|---|');
  for (let r = 0; r < ROUNDS; r++)
    for (const s of SERVERS) {
      const x = sess[s.id][r];
      lines.push(
        row([
          String(r + 1),
          s.label,
          x.rate.toFixed(1),
          `${x.ok} / ${x.secs.toFixed(2)}`,
          x.p50.toFixed(0),
          fmtFail(x.failures),
          `${x.cpu.client.toFixed(2)} / ${x.cpu.server.toFixed(2)} / ${x.cpu.foreign.toFixed(2)}`,
        ]),
      );
    }
  lines.push('');
  lines.push(
    `Failures in total: sticky-mesh ${totalFail('sticky-mesh')}, @socket.io/sticky ${totalFail('socketio-sticky')}.`,
  );
  lines.push('');
  lines.push(
    `### Broadcast fan-out (${BCLIENTS} websocket clients, one sender per worker, ${BMSGS} acked 'chat' messages per sender)`,
  );
  lines.push('');
  lines.push(
    '| round | server | deliveries/s | delivered / expected | lost | dup | clients (failed connect attempts) | clients per worker slot | foreign (cores) |',
  );
  lines.push('|---|---|---|---|---|---|---|---|---|');
  for (let r = 0; r < ROUNDS; r++)
    for (const s of SERVERS) {
      const x = bcast[s.id][r];
      lines.push(
        row([
          String(r + 1),
          s.label,
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
    `Medians: sticky-mesh ${fmtInt(bm)} deliveries/s, @socket.io/sticky ${fmtInt(bs)} deliveries/s (reference).`,
  );
  lines.push('');
  lines.push('Method and caveats:');
  lines.push('');
  lines.push(
    "- Servers: bench/servers/socketio-chat-sticky-mesh.mjs (the example's wiring: IP mode, sessionAffinity, serialization 'advanced', ReplicatedStore, cluster adapter with setupPrimary) and bench/servers/socketio-chat-sticky.mjs (@socket.io/sticky setupMaster with least-connection + setupWorker, cluster adapter, serialization 'advanced'). Session store: ReplicatedStore for sticky-mesh, express-session MemoryStore for @socket.io/sticky (ReplicatedStore needs a sticky-mesh cluster); the clients send no cookie and the chat does not save uninitialised sessions, so neither store is written during the bench.",
  );
  lines.push(
    '- Clients: socket.io-client in the bench process; client i binds 127.0.0.(2+i) via its own keep-alive http.Agent with localAddress (and the websocket localAddress). Each run starts a fresh server; rounds alternate which server goes first; no separate warm-up.',
  );
  lines.push(
    '- 2 cores shared between the load generator (one Node process running every client) and the 4 workers + primary; absolute figures are bounded by that, and foreign load (other processes, e.g. other benchmarks) is shown per run. Ratios are comparable only where the foreign column is near 0 for both runs of a round: other benchmarks ran on the same box during this run.',
  );
  lines.push(
    `- Session rate = completed sessions / time until the last session finished; sessions started before the end of the ${DURATION} s period are awaited, so a session that hangs until the 10 s timeout stretches its run (elapsed column).`,
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
