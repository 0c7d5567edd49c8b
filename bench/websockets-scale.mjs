#!/usr/bin/env node
// Concurrent Socket.io WebSocket connections at scale (issue 18): how many a 4-worker sticky-mesh
// cluster opens per second, and what holding them costs in memory, in the primary and in all.
//
//   flock /tmp/sticky-bench.lock node bench/websockets-scale.mjs [--quick]   (needs dist/)
//
// Server: bench/servers/socketio-ws-scale.mjs, started afresh (bench/lib.mjs: own process group,
// READY line, GET / probe, group killed afterwards): sticky({ num: BENCH_WORKERS }) in IP mode, a
// Socket.io server on each worker with transports ['websocket'] and pingInterval / pingTimeout
// BENCH_PING_INTERVAL / BENCH_PING_TIMEOUT, so that several ping cycles fall inside the hold.
//
// Clients: BENCH_CLIENT_PROCESSES child processes (this script with --client, forked; each ends
// when this process goes away), each with socket.io-client (transports ['websocket'], no
// reconnection, forceNew) opening its share of BENCH_CONNECTIONS. IP mode keys on the source
// address, so connections come from BENCH_ADDRESSES loopback addresses 127.1.x.y (Linux routes
// all of 127.0.0.0/8 to lo), dealt out to the client processes, and each connection binds one
// (`localAddress`); this also keeps every address far from its ~28k ephemeral ports. Opening is
// bounded in rate (BENCH_RATE connections/s over all clients) and in flight (BENCH_IN_FLIGHT per
// client process), and in time (BENCH_OPEN_TIMEOUT s). The clients' memory is not measured.
//
// Method:
// 1. Baseline: 2 s after READY, the RSS of the primary and of each worker from /proc/<pid>/status,
//    then each process's own report (SIGUSR2 to the group: memoryUsage() before and after a full
//    GC; see the server's header).
// 2. Open, in BENCH_STAGES equal stages 2 s apart: every client opens its share of the stage; the
//    rate is connections opened / the stages' time (each: its first open started .. its last
//    'connect'), with the servers' CPU over it (/proc) per connection, split primary / workers.
//    RSS is read after each stage.
// 3. Hold BENCH_HOLD s: nothing is sent but Socket.io's pings; the clients count each connection's
//    pings and every disconnect (with its reason). RSS of every process sampled each second (the
//    peak is reported).
// 4. At the end of the hold: RSS from /proc, then each process's report (heap before and after a
//    full GC, the Socket.io clients each worker holds, its disconnects).
// 5. Close: the clients close their sockets and exit; the server group is killed.
// Figures: KB per connection over all server processes = (sum of RSS at the end of the hold -
// sum at baseline) / connections held; the primary's growth per connection = its own RSS
// difference / connections held; the same after a full GC (the retained figure); and what each
// connection after the first stage added (RSS after the last stage - after the first, over the
// connections of the later stages), which leaves out one-off growth such as the V8 young
// generation doubling. The primary's resident memory is split by mapping (/proc/<pid>/smaps:
// the C allocator's main arena, anonymous mappings, files) and its V8 heap spaces are printed.
//
// Limits raised by the bench, not by the library: before forking anything, this process's soft
// RLIMIT_NOFILE is raised to its hard limit (prlimit), which the server and clients inherit.
//
// Knobs [defaults; --quick]: BENCH_CONNECTIONS [40000; 2000], BENCH_CLIENT_PROCESSES [8; 2],
// BENCH_ADDRESSES [1000; 100], BENCH_RATE connections/s [2500], BENCH_IN_FLIGHT [64],
// BENCH_HOLD s [60; 15], BENCH_PING_INTERVAL ms [10000; 3000], BENCH_PING_TIMEOUT ms [10000; 3000],
// BENCH_WORKERS [4], BENCH_STAGES [4; 2], BENCH_OPEN_TIMEOUT s [max(60, 4 x connections / rate)],
// BENCH_SMAPS_DUMP [none] (a directory: the primary's smaps at baseline and end of hold go there),
// BENCH_WRITE [1; 0] (0: RESULTS.md untouched), BENCH_RESULTS_FILE [bench/RESULTS.md].
// Output: progress and a summary on stdout; the section between the websockets-scale markers of
// the results file.

import { execFileSync, fork } from 'node:child_process';
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as lib from './lib.mjs';
import { f1, f2, fmtInt, intEnv } from './lib.mjs';

const QUICK = process.argv.includes('--quick');
const COUNT = intEnv('BENCH_CONNECTIONS', QUICK ? 2000 : 40_000);
const CLIENT_PROCESSES = intEnv('BENCH_CLIENT_PROCESSES', QUICK ? 2 : 8);
const ADDRESSES = intEnv('BENCH_ADDRESSES', QUICK ? 100 : 1000);
const RATE = intEnv('BENCH_RATE', 2500);
const IN_FLIGHT = intEnv('BENCH_IN_FLIGHT', 64);
const HOLD_S = intEnv('BENCH_HOLD', QUICK ? 15 : 60);
const PING_INTERVAL = intEnv('BENCH_PING_INTERVAL', QUICK ? 3000 : 10_000);
const PING_TIMEOUT = intEnv('BENCH_PING_TIMEOUT', QUICK ? 3000 : 10_000);
const WORKERS = intEnv('BENCH_WORKERS', 4);
const STAGES = intEnv('BENCH_STAGES', QUICK ? 2 : 4);
const OPEN_TIMEOUT_S = intEnv('BENCH_OPEN_TIMEOUT', Math.max(60, Math.ceil((4 * COUNT) / RATE)));
const WRITE = (process.env.BENCH_WRITE ?? (QUICK ? '0' : '1')) !== '0';
const HOSTS = ['127.0.0.1'];
/** A directory to write the primary's /proc/<pid>/smaps into, at baseline and end of hold. */
const SMAPS_DUMP = process.env.BENCH_SMAPS_DUMP;
/** Issue 18's targets for the hold. */
const TARGET_TOTAL_KB = 25;
const TARGET_PRIMARY_KB = 0.1;

/** Source address i: 127.1.x.y, y in 1..250 (never a network or broadcast-looking octet). */
const sourceAddress = (i) => `127.1.${Math.floor(i / 250)}.${1 + (i % 250)}`;

// ---------------------------------------------------------------------------------------------
// Client process (this script with --client): opens, holds and closes connections on command.

async function clientMain() {
  const { io } = await import('socket.io-client');
  process.on('disconnect', () => process.exit(0)); // the bench went away
  const sockets = [];
  let pings = new Uint32Array(0);
  let pingsAtHold = new Uint32Array(0);
  const st = { connected: 0, open: 0, failed: 0, lastConnectAt: 0, firstStartAt: 0 };
  const errors = {};
  const disconnects = {};
  const bump = (o, k) => {
    o[k] = (o[k] ?? 0) + 1;
  };

  function openOne(url, localAddress, i, settle) {
    const socket = io(url, {
      transports: ['websocket'],
      forceNew: true,
      reconnection: false,
      timeout: 30_000,
      localAddress,
    });
    sockets[i] = socket;
    let connected = false;
    socket.on('connect', () => {
      connected = true;
      st.connected++;
      st.open++;
      st.lastConnectAt = Date.now();
      settle();
    });
    socket.on('connect_error', (e) => {
      st.failed++;
      bump(errors, e.message);
      socket.close();
      settle();
    });
    socket.on('disconnect', (reason) => {
      if (!connected) return;
      st.open--;
      bump(disconnects, reason);
    });
    socket.io.on('ping', () => {
      pings[i]++;
    });
  }

  // Opens `count` more connections (a stage), connection k of this process from
  // addresses[k % addresses.length]; `capacity`: every connection this process will open.
  function open({ url, addresses, count, capacity, rate, inFlight }) {
    if (pings.length < capacity) {
      const grown = new Uint32Array(capacity);
      grown.set(pings);
      pings = grown;
    }
    const first = sockets.length;
    const t0 = performance.now();
    st.firstStartAt = Date.now();
    let started = 0;
    let pending = 0;
    const timer = setInterval(() => {
      const due = Math.min(count, Math.floor(((performance.now() - t0) / 1000) * rate) + 1);
      while (started < due && pending < inFlight) {
        const i = first + started++;
        pending++;
        let once = false;
        openOne(url, addresses[i % addresses.length], i, () => {
          if (once) return;
          once = true;
          pending--;
          if (started === count && pending === 0) {
            clearInterval(timer);
            process.send({ type: 'opened', ...st, errors });
          }
        });
      }
    }, 5);
  }

  function stats() {
    const live = [];
    for (let i = 0; i < sockets.length; i++)
      if (sockets[i]?.connected) live.push(pings[i] - (pingsAtHold[i] ?? 0));
    live.sort((a, b) => a - b);
    return {
      type: 'stats',
      ...st,
      live: live.length,
      holdPings: { min: live[0] ?? 0, p50: live[Math.floor(live.length / 2)] ?? 0 },
      errors,
      disconnects,
    };
  }

  process.on('message', (m) => {
    if (m.cmd === 'open') open(m);
    else if (m.cmd === 'hold') {
      pingsAtHold = pings.slice();
      process.send({ type: 'holding' });
    } else if (m.cmd === 'stats') process.send(stats());
    else if (m.cmd === 'close') {
      for (const s of sockets) s?.close();
      // Let the close frames leave before the process does.
      setTimeout(() => process.send({ type: 'closed' }, () => process.exit(0)), 500);
    }
  });
  process.send({ type: 'ready' });
}

// ---------------------------------------------------------------------------------------------
// The bench.

const clients = [];

function killClients() {
  for (const c of clients) {
    try {
      c.kill('SIGKILL');
    } catch {}
  }
}

/** Raises this process's soft RLIMIT_NOFILE to its hard limit (prlimit); children inherit it. */
function raiseNofile() {
  const pid = String(process.pid);
  const read = () =>
    execFileSync('prlimit', ['--pid', pid, '--nofile', '--noheadings', '-o', 'SOFT,HARD'])
      .toString()
      .trim()
      .split(/\s+/);
  const [, hard] = read();
  execFileSync('prlimit', ['--pid', pid, `--nofile=${hard}:`]);
  const [soft] = read();
  return { soft, hard };
}

function startClient() {
  const child = fork(fileURLToPath(import.meta.url), ['--client'], {
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  clients.push(child);
  child.inbox = [];
  child.waiters = [];
  child.on('message', (m) => {
    const w = child.waiters.findIndex((x) => x.type === m.type);
    if (w === -1) child.inbox.push(m);
    else child.waiters.splice(w, 1)[0].resolve(m);
  });
  child.on('exit', (code, signal) => {
    child.exited = { code, signal };
    for (const w of child.waiters.splice(0)) w.reject(new Error(`client exited (${code})`));
  });
  return child;
}

/** The next message of `type` from a client, or an error after timeoutMs. */
function nextMessage(child, type, timeoutMs) {
  const i = child.inbox.findIndex((m) => m.type === type);
  if (i !== -1) return Promise.resolve(child.inbox.splice(i, 1)[0]);
  if (child.exited) return Promise.reject(new Error(`client exited (${child.exited.code})`));
  return new Promise((resolve, reject) => {
    const w = { type, resolve, reject };
    const timer = setTimeout(() => {
      child.waiters.splice(child.waiters.indexOf(w), 1);
      reject(new Error(`no '${type}' from client ${child.pid} within ${timeoutMs} ms`));
    }, timeoutMs);
    w.resolve = (m) => {
      clearTimeout(timer);
      resolve(m);
    };
    w.reject = (e) => {
      clearTimeout(timer);
      reject(e);
    };
    child.waiters.push(w);
  });
}

const ask = (cmd, type, timeoutMs = 30_000) =>
  Promise.all(
    clients.map((c) => {
      c.send({ cmd });
      return nextMessage(c, type, timeoutMs);
    }),
  );

/** CPU ticks (user + system) of the client processes so far. */
const clientTicks = () => sum(clients.map((c) => lib.procStat(c.pid)?.cpu ?? 0));

/** Live processes of group pgid: the primary (pid === pgid) first. */
function serverPids(pgid) {
  const pids = [];
  for (const entry of readdirSync('/proc')) {
    if (!/^\d+$/.test(entry)) continue;
    const st = lib.procStat(entry);
    if (st && st.pgrp === pgid && st.state !== 'Z') pids.push(Number(entry));
  }
  return pids.sort((a, b) => (a === pgid ? -1 : b === pgid ? 1 : a - b));
}

/** RSS (bytes) of each pid from /proc/<pid>/status; 0 for one that is gone. */
function rssOf(pids) {
  const out = {};
  for (const pid of pids) {
    try {
      const m = /VmRSS:\s+(\d+) kB/.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
      out[pid] = m ? Number(m[1]) * 1024 : 0;
    } catch {
      out[pid] = 0;
    }
  }
  return out;
}

/**
 * Resident memory of pid by kind of mapping, bytes, from /proc/<pid>/smaps: brk (`[heap]`: the
 * C allocator's main arena), anon (anonymous mappings: the V8 heap, other arenas, thread stacks)
 * and file (code and other file mappings).
 */
function smapsOf(pid, label) {
  const out = { brk: 0, anon: 0, file: 0 };
  let kind = 'anon';
  try {
    const text = readFileSync(`/proc/${pid}/smaps`, 'utf8');
    if (SMAPS_DUMP) writeFileSync(path.join(SMAPS_DUMP, `primary-${label}.smaps`), text);
    for (const line of text.split('\n')) {
      const m = /^[0-9a-f]+-[0-9a-f]+ \S+ \S+ \S+ \d+\s*(.*)$/.exec(line);
      if (m)
        kind =
          m[1] === '[heap]' ? 'brk' : m[1] === '' || m[1].startsWith('[anon') ? 'anon' : 'file';
      else if (line.startsWith('Rss:')) out[kind] += Number(line.split(/\s+/)[1]) * 1024;
    }
  } catch {}
  return out;
}

/** Each server process's MEM report (SIGUSR2 to the group), by pid. */
async function memReports(srv, expected) {
  const from = srv.stdout().length;
  process.kill(-srv.pgid, 'SIGUSR2');
  const deadline = Date.now() + 20_000;
  for (;;) {
    const lines = srv
      .stdout()
      .slice(from)
      .split('\n')
      .filter((l) => l.startsWith('MEM '));
    if (lines.length >= expected) {
      const byPid = {};
      for (const l of lines) {
        const r = JSON.parse(l.slice(4));
        byPid[r.pid] = r;
      }
      return byPid;
    }
    if (Date.now() > deadline)
      throw new Error(`only ${lines.length} of ${expected} memory reports within 20 s`);
    await lib.sleep(100);
  }
}

const sum = (xs) => xs.reduce((a, b) => a + b, 0);
const mergeCounts = (objs) => {
  const out = {};
  for (const o of objs) for (const [k, v] of Object.entries(o)) out[k] = (out[k] ?? 0) + v;
  return out;
};
const fmtCounts = (o) =>
  Object.entries(o)
    .map(([k, v]) => `${k} ${fmtInt(v)}`)
    .join(', ') || '0';
const MiB = (b) => (b / 2 ** 20).toFixed(1);
const KB = (b) => b / 1024;

/** Shares of `count` over the client processes. */
const sharesOf = (count) =>
  Array.from(
    { length: CLIENT_PROCESSES },
    (_, c) => Math.floor(count / CLIENT_PROCESSES) + (c < count % CLIENT_PROCESSES ? 1 : 0),
  );

/**
 * Every client process opens its share of `count` more connections; resolves once all have
 * settled with the clients' cumulative counts, this stage's time (its start to its last
 * 'connect'), the servers' CPU per connection and cores over it, and the RSS after it.
 */
async function openStage(port, pgid, pids, count) {
  const startAt = Date.now();
  const cpuA = lib.cpuSnapshot(pgid);
  const clientCpuA = clientTicks();
  const shares = sharesOf(count);
  const capacity = sharesOf(COUNT);
  clients.forEach((c, k) => {
    const addresses = [];
    for (let i = k; i < ADDRESSES; i += CLIENT_PROCESSES) addresses.push(sourceAddress(i));
    c.send({
      cmd: 'open',
      url: `http://127.0.0.1:${port}`,
      addresses,
      count: shares[k],
      capacity: capacity[k],
      rate: RATE / CLIENT_PROCESSES,
      inFlight: IN_FLIGHT,
    });
  });
  const progress = setInterval(() => {
    const r = rssOf(pids);
    console.log(
      `  ${((Date.now() - startAt) / 1000).toFixed(0)} s: server RSS ${MiB(sum(Object.values(r)))} MiB (primary ${MiB(r[pgid])})`,
    );
  }, 5000);
  let opened;
  try {
    opened = await Promise.all(clients.map((c) => nextMessage(c, 'opened', OPEN_TIMEOUT_S * 1000)));
  } finally {
    clearInterval(progress);
  }
  const cpuB = lib.cpuSnapshot(pgid);
  const connected = sum(opened.map((o) => o.connected));
  const before = stageTotals.connected;
  stageTotals.connected = connected;
  return {
    connected,
    failed: sum(opened.map((o) => o.failed)),
    secs: (Math.max(...opened.map((o) => o.lastConnectAt)) - startAt) / 1000,
    errors: mergeCounts(opened.map((o) => o.errors)),
    cpuPer: lib.cpuPerUnit(cpuA, cpuB, connected - before),
    cpu: lib.cpuBetween(cpuA, cpuB),
    clientCores: (clientTicks() - clientCpuA) / lib.CLK_TCK / (Number(cpuB.t - cpuA.t) / 1e9),
    rss: rssOf(pids),
  };
}
const stageTotals = { connected: 0 };

async function run(port) {
  const srv = await lib.startServer({
    file: 'socketio-ws-scale.mjs',
    name: 'socketio-ws-scale',
    workers: WORKERS,
    port,
    env: { PING_INTERVAL: String(PING_INTERVAL), PING_TIMEOUT: String(PING_TIMEOUT) },
  });
  try {
    await lib.probe(port);
    for (let c = 0; c < CLIENT_PROCESSES; c++) startClient();
    await Promise.all(clients.map((c) => nextMessage(c, 'ready', 30_000)));
    await lib.sleep(2000);
    const pids = serverPids(srv.pgid);
    if (pids.length !== WORKERS + 1)
      throw new Error(`expected ${WORKERS + 1} server processes, found ${pids.length}`);
    const base = {
      rss: rssOf(pids),
      smaps: smapsOf(srv.pgid, 'baseline'),
      mem: await memReports(srv, pids.length),
    };
    console.log(
      `baseline RSS: ${pids.map((p) => `${p === srv.pgid ? 'primary' : `slot ${base.mem[p]?.slot}`} ${MiB(base.rss[p])} MiB`).join(', ')}`,
    );

    // Open, in STAGES equal steps; RSS is read after each.
    const stages = [];
    let prev = { connected: 0, failed: 0 };
    for (let k = 0; k < STAGES; k++) {
      const count = Math.floor(((k + 1) * COUNT) / STAGES) - Math.floor((k * COUNT) / STAGES);
      const s = await openStage(port, srv.pgid, pids, count);
      stages.push({
        ...s,
        connected: s.connected - prev.connected,
        failed: s.failed - prev.failed,
      });
      prev = s;
      console.log(
        `stage ${k + 1}: opened ${fmtInt(s.connected)} in all (${fmtInt(s.failed)} failed); this stage ${f1(s.secs)} s; server RSS ${MiB(sum(Object.values(s.rss)))} MiB, primary ${MiB(s.rss[srv.pgid])} MiB`,
      );
      if (k < STAGES - 1) await lib.sleep(2000);
    }
    const last = stages[stages.length - 1];
    const openResult = {
      connected: prev.connected,
      failed: prev.failed,
      secs: sum(stages.map((x) => x.secs)),
      rate: prev.connected / sum(stages.map((x) => x.secs)),
      errors: prev.errors,
      cpuPer: {
        total: sum(stages.map((x) => x.cpuPer.total * x.connected)) / prev.connected,
        primary: sum(stages.map((x) => x.cpuPer.primary * x.connected)) / prev.connected,
        workers: sum(stages.map((x) => x.cpuPer.workers * x.connected)) / prev.connected,
      },
      stages,
      rss: last.rss,
    };

    // Hold.
    await ask('hold', 'holding');
    const peak = {};
    const holdEnd = Date.now() + HOLD_S * 1000;
    while (Date.now() < holdEnd) {
      await lib.sleep(Math.min(1000, holdEnd - Date.now()));
      const r = rssOf(pids);
      for (const p of pids) peak[p] = Math.max(peak[p] ?? 0, r[p]);
      if (Math.round((holdEnd - Date.now()) / 1000) % 15 === 0) {
        const s = await ask('stats', 'stats');
        console.log(
          `  hold: ${fmtInt(sum(s.map((x) => x.open)))} open, disconnects ${fmtCounts(mergeCounts(s.map((x) => x.disconnects)))}, server RSS ${MiB(sum(Object.values(r)))} MiB`,
        );
      }
    }
    const holdRss = rssOf(pids);
    const holdSmaps = smapsOf(srv.pgid, 'hold');
    const stats = await ask('stats', 'stats');
    const holdMem = await memReports(srv, pids.length);
    const fmtSpaces = (m) =>
      Object.entries(m.spaces)
        .map(([k, [size, used, phys]]) => `${k} ${MiB(size)}/${MiB(used)}/${MiB(phys)}`)
        .join(', ');
    console.log(
      `primary's V8 spaces (size/used/physical MiB), baseline: ${fmtSpaces(base.mem[srv.pgid])}`,
    );
    console.log(`  end of hold: ${fmtSpaces(holdMem[srv.pgid])}`);
    const result = {
      pids,
      primary: srv.pgid,
      base,
      open: openResult,
      hold: { rss: holdRss, smaps: holdSmaps, mem: holdMem, peak },
      live: sum(stats.map((s) => s.live)),
      clientOpen: sum(stats.map((s) => s.open)),
      disconnects: mergeCounts(stats.map((s) => s.disconnects)),
      errors: mergeCounts(stats.map((s) => s.errors)),
      holdPings: {
        min: Math.min(...stats.map((s) => s.holdPings.min)),
        p50: Math.min(...stats.map((s) => s.holdPings.p50)),
      },
    };

    // Close.
    await ask('close', 'closed');
    return result;
  } finally {
    killClients();
    await lib.stopServer(srv);
  }
}

function figures(r) {
  const held = sum(r.pids.filter((p) => p !== r.primary).map((p) => r.hold.mem[p]?.clients ?? 0));
  const d = (a, b, p) => a[p] - b[p];
  const total = sum(r.pids.map((p) => d(r.hold.rss, r.base.rss, p)));
  const primary = d(r.hold.rss, r.base.rss, r.primary);
  const gcRss = (m, p) => m[p]?.after.rss ?? Number.NaN;
  const gcTotal = sum(r.pids.map((p) => gcRss(r.hold.mem, p) - gcRss(r.base.mem, p)));
  const gcPrimary = gcRss(r.hold.mem, r.primary) - gcRss(r.base.mem, r.primary);
  const heap = (m, p) => m[p]?.after.heapUsed ?? Number.NaN;
  const primaryHeap = heap(r.hold.mem, r.primary) - heap(r.base.mem, r.primary);
  const openTotal = sum(r.pids.map((p) => d(r.open.rss, r.base.rss, p)));
  const serverDisconnects = mergeCounts(
    r.pids.filter((p) => p !== r.primary).map((p) => r.hold.mem[p]?.disconnects ?? {}),
  );
  return {
    held,
    perConn: KB(total) / held,
    primaryPerConn: KB(primary) / held,
    gcPerConn: KB(gcTotal) / held,
    gcPrimaryPerConn: KB(gcPrimary) / held,
    primaryHeapPerConn: KB(primaryHeap) / held,
    openPerConn: KB(openTotal) / r.open.connected,
    openPrimaryPerConn: KB(d(r.open.rss, r.base.rss, r.primary)) / r.open.connected,
    serverDisconnects,
    marginal: marginal(r),
  };
}

/**
 * KB per connection opened after the first stage, over all server processes and in the primary:
 * (RSS after the last stage - RSS after the first) / connections of the later stages. What each
 * connection adds once the processes are warm, without the one-off growth of the first stage
 * (heap pages first touched, code compiled). NaN with one stage.
 */
function marginal(r) {
  const st = r.open.stages;
  if (st.length < 2) return { total: Number.NaN, primary: Number.NaN };
  const first = st[0].rss;
  const last = st[st.length - 1].rss;
  const n = sum(st.slice(1).map((x) => x.connected));
  return {
    n,
    total: KB(sum(r.pids.map((p) => last[p] - first[p]))) / n,
    primary: KB(last[r.primary] - first[r.primary]) / n,
  };
}

/** A MEM report's V8 young generation: `size / resident` in MiB. */
const youngOf = (m) => {
  const [size, , physical] = m.spaces?.new_space ?? [Number.NaN, 0, Number.NaN];
  return `${MiB(size)} / ${MiB(physical)}`;
};

function report(r, f, started, stamp) {
  const verdict = (ok) => (ok ? 'met' : 'missed');
  const rows = r.pids.map((p) => {
    const isPrimary = p === r.primary;
    const b = r.base.mem[p];
    const h = r.hold.mem[p];
    return `| ${isPrimary ? 'primary' : `worker slot ${h?.slot}`} | ${isPrimary ? '' : fmtInt(h?.clients)} | ${MiB(r.base.rss[p])} | ${MiB(r.open.rss[p])} | ${MiB(r.hold.rss[p])} | ${MiB(r.hold.peak[p])} | ${MiB(b.after.heapUsed)} | ${MiB(h.before.heapUsed)} | ${MiB(h.after.heapUsed)} | ${MiB(h.after.rss)} | ${f2(KB(r.hold.rss[p] - r.base.rss[p]) / (isPrimary ? f.held : h.clients))} |`;
  });
  const cmd = `flock /tmp/sticky-bench.lock node bench/websockets-scale.mjs${QUICK ? ' --quick' : ''}`;
  return [
    '<!-- BEGIN websockets-scale (written by bench/websockets-scale.mjs; re-running it replaces this section) -->',
    '## Concurrent WebSockets at scale (issue 18)',
    '',
    `\`${cmd}\` (after \`npm run build\`; knobs in the script's header). Date ${started.toISOString()}; commit ${lib.gitCommit()}; dist/ built ${stamp}; ${lib.machine().cpus} x ${lib.machine().model}, ${lib.machine().memGiB} GiB; Node ${process.version}; socket.io ${lib.packageVersion('socket.io')}, socket.io-client ${lib.packageVersion('socket.io-client')}.`,
    '',
    `Setup: sticky-mesh, IP mode, ${WORKERS} workers, a Socket.io server per worker (transports ['websocket'], pingInterval ${PING_INTERVAL} ms, pingTimeout ${PING_TIMEOUT} ms; bench/servers/socketio-ws-scale.mjs). ${CLIENT_PROCESSES} client processes (socket.io-client, websocket only) from ${ADDRESSES} loopback source addresses (127.1.x.y), opening ${fmtInt(COUNT)} connections at most ${fmtInt(RATE)}/s and ${IN_FLIGHT} in flight per client process, then holding them ${HOLD_S} s. RSS from /proc/<pid>/status; heap from each process's memoryUsage() before and after a full GC (SIGUSR2, bench-only). The clients' memory is not counted. The machine is shared: other engineers' benchmarks may run beside this one (the lock only serialises benches that take it).`,
    '',
    `- Opened: ${fmtInt(r.open.connected)} of ${fmtInt(COUNT)} (${fmtInt(r.open.failed)} failed${r.open.failed ? `: ${fmtCounts(r.open.errors)}` : ''}) in ${f1(r.open.secs)} s of opening (${r.open.stages.length} stages, 2 s apart): **${fmtInt(r.open.rate)} connections/s** (cap ${fmtInt(RATE)}/s). Server CPU while opening: ${fmtInt(r.open.cpuPer.total)} us per connection (primary ${fmtInt(r.open.cpuPer.primary)}, workers ${fmtInt(r.open.cpuPer.workers)}).`,
    ...r.open.stages.map(
      (x, k) =>
        `  - stage ${k + 1}: ${fmtInt(x.connected)} in ${f1(x.secs)} s (${fmtInt(x.connected / x.secs)}/s); cores: client processes ${f2(x.clientCores)}, server ${f2(x.cpu.server)} (primary ${f2(x.cpu.primary)}), other processes ${f2(Math.max(0, x.cpu.foreign - x.clientCores))}; server RSS after it ${MiB(sum(Object.values(x.rss)))} MiB (primary ${MiB(x.rss[r.primary])}).`,
    ),
    `- Held ${HOLD_S} s: ${fmtInt(f.held)} connections on the workers at the end (clients: ${fmtInt(r.live)} connected); Socket.io pings per connection during the hold: min ${r.holdPings.min}, median ${r.holdPings.p50}. Disconnects seen by clients: ${fmtCounts(r.disconnects)}; by the server: ${fmtCounts(f.serverDisconnects)}.`,
    `- Memory, all server processes: **${f2(f.perConn)} KB per connection** at the end of the hold (target <= ${TARGET_TOTAL_KB}: ${verdict(f.perConn <= TARGET_TOTAL_KB)}); ${f2(f.openPerConn)} KB once all were open; ${f2(f.gcPerConn)} KB after a full GC in every process. Each connection after the first stage added ${f2(f.marginal.total)} KB.`,
    `- The primary: **${f2(f.primaryPerConn)} KB per connection** of RSS growth at the end of the hold (target <= ${TARGET_PRIMARY_KB}: ${verdict(f.primaryPerConn <= TARGET_PRIMARY_KB)}); ${f2(f.openPrimaryPerConn)} KB once all were open; after a full GC ${f2(f.gcPrimaryPerConn)} KB of RSS and ${f2(f.primaryHeapPerConn * 1024)} bytes of heap per connection. Each connection after the first stage added ${f2(f.marginal.primary)} KB.`,
    `- The primary's resident memory by mapping (/proc/<pid>/smaps), baseline -> end of hold: C allocator's main arena (\`[heap]\`) ${MiB(r.base.smaps.brk)} -> ${MiB(r.hold.smaps.brk)} MiB, anonymous mappings (the V8 heap among them) ${MiB(r.base.smaps.anon)} -> ${MiB(r.hold.smaps.anon)} MiB, files ${MiB(r.base.smaps.file)} -> ${MiB(r.hold.smaps.file)} MiB; V8 heap committed (heapTotal) ${MiB(r.base.mem[r.primary].before.heapTotal)} -> ${MiB(r.hold.mem[r.primary].before.heapTotal)} MiB, of which the young generation (new_space, size / resident) ${youngOf(r.base.mem[r.primary])} -> ${youngOf(r.hold.mem[r.primary])} MiB.`,
    '',
    '| process | connections | RSS baseline MiB | RSS all open | RSS end of hold | RSS peak in hold | heap baseline (after GC) | heap end of hold | heap end (after GC) | RSS end (after GC) | RSS growth, KB per connection (primary: of all; worker: of its own) |',
    '|---|---|---|---|---|---|---|---|---|---|---|',
    ...rows,
    '<!-- END websockets-scale -->',
  ].join('\n');
}

async function main() {
  const limits = raiseNofile();
  const started = new Date();
  const stamp = lib.distStamp();
  if (Math.ceil(COUNT / CLIENT_PROCESSES) > Number(limits.soft) - 1000)
    throw new Error(
      `${Math.ceil(COUNT / CLIENT_PROCESSES)} connections per client process exceed the fd limit (${limits.soft}): use more BENCH_CLIENT_PROCESSES`,
    );
  console.log(
    `${fmtInt(COUNT)} connections, ${CLIENT_PROCESSES} client processes, ${ADDRESSES} addresses, rate <= ${RATE}/s, hold ${HOLD_S} s, ping ${PING_INTERVAL}/${PING_TIMEOUT} ms, ${WORKERS} workers; RLIMIT_NOFILE ${limits.soft}/${limits.hard}`,
  );
  process.on('exit', killClients);
  const port = await lib.findPort(HOSTS);
  await lib.waitPortFree(port, HOSTS);
  const r = await run(port);
  if (lib.distStamp() !== stamp) throw new Error('dist/ changed during the run');
  const f = figures(r);
  const text = report(r, f, started, stamp);
  console.log(`\n${text}`);
  if (WRITE) lib.writeResults('websockets-scale', text);
}

if (process.argv.includes('--client')) await clientMain();
else lib.runMain(main);
