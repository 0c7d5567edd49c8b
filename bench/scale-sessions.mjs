#!/usr/bin/env node
// A million sessions (issue 18): what a machine holding BENCH_SESSIONS sessions of ~1 KB costs
// in memory, how soon a respawned worker and a joining machine hold them all, and whether the
// primary keeps routing new connections at the same speed while it streams a state transfer.
//
//   flock /tmp/sticky-bench.lock node bench/scale-sessions.mjs
//       (needs dist/: `npm run build`; root and `ip netns` for the multicast part, redis-server
//        and ioredis for the Redis part; a part whose needs are missing is skipped, saying so)
//
// Servers: bench/servers/scale-sessions.mjs, a sticky cluster of BENCH_WORKERS workers in IP mode
// (default routing) with a ReplicatedStore (default options) in every worker; controlled over
// unix sockets (one per process, in a private directory), so the bench reaches clusters inside
// network namespaces without any network of its own. Every server runs as
// `node --expose-gc [BENCH_NODE_FLAGS]` in a process group of its own (workers inherit the flags),
// killed at the end, also on failure or Ctrl-C; namespaces (bench/netns.mjs) and the redis-server
// (bench/servers/redis.mjs) likewise.
//
// Parts (BENCH_ONLY: a comma-separated subset of multicast, redis):
// 1. multicast: a private LAN of 2 network namespaces (bench/netns.mjs). Machine 1 in host 1
//    (`multicast: { secret, ipv4 }`, otherwise defaults).
//    - fill: each worker writes BENCH_SESSIONS / workers new sessions through its store
//      (`store.set`, BENCH_INFLIGHT in flight per worker, each awaited: the real replication
//      path, hub and multicast included), then the bench waits until every worker holds them all.
//    - memory: every process (primary and workers) after two forced GCs, before the fill (no
//      session) and after it: (heapUsed after - before) / sessions, and the same for RSS,
//      against the sessions' mean JSON bytes. Peak RSS (VmHWM) of each process at the end.
//    - routing: a probe process in the namespace opens a new TCP connection per request
//      (`GET /`, 2-byte answer, source addresses 127.0.0.2..251) at BENCH_PROBE_RATE requests/s
//      (open loop, 1 ms timer) for the whole part; latency = request start to last byte. Windows:
//      *quiet* (BENCH_QUIET s after the fill, nothing else running), *respawn* (from the kill
//      until the new worker holds every session) and *join* (from machine 2's start until all
//      its workers hold every session; machine 1's primary serves the state transfer).
//    - respawn: the worker of slot 1 gets SIGKILL; the primary respawns it (respawnDelay 100 ms)
//      and its hub sends it the full state over IPC before it is marked ready. Time from the
//      kill until the slot is ready again (primary's stats) and until the new worker's store
//      holds every session (polled, 200 ms).
//    - join: machine 2 starts in host 2; time from its start until its primary bound its port
//      (after the state transfer, or at syncTimeout), until READY (every worker ready) and until
//      every one of its workers holds every session.
// 2. redis: a private redis-server on loopback; machine 1 (`redis: 'redis://127.0.0.1:P'`) on
//    loopback, filled the same way (writes go through the transport's Lua script), then the bench
//    waits until Redis holds every record (DBSIZE) and the transport's queue is empty. Machine 1
//    is stopped (it streams nothing to a machine joining through Redis, and two machines of a
//    million sessions plus redis-server do not fit in 24 GiB), then machine 2 joins (rebuild from
//    Redis by SCAN + HGETALL), timed as above, with the memory of its processes.
//
// Targets (issue 18): heap per session per process <= 1.5x its JSON bytes; respawned worker
// synced within 30 s; joining machine within 60 s over multicast and over Redis; routing p99
// while a state transfer streams unchanged (judged here: <= 1.5x the quiet window's p99).
//
// Knobs [defaults]: BENCH_SESSIONS [1000000], BENCH_WORKERS [4], BENCH_INFLIGHT [64],
// BENCH_PROBE_RATE [100], BENCH_QUIET s [10], BENCH_WAIT s [300] (bound on every wait: fill,
// sync, join), BENCH_NODE_FLAGS [''] (more flags for the servers' node), BENCH_ONLY
// [multicast,redis], BENCH_WRITE [1] (0: bench/RESULTS.md left alone; a run of one part writes a
// section of its own), BENCH_RESPAWN_WAIT s [180], BENCH_UNRESPONSIVE_TIMEOUT ms [sticky's default],
// BENCH_MIN_AVAILABLE_MIB [1536] (memory guard), BENCH_PROFILE_DIR / BENCH_PROFILE_MS [20000]
// (profiling runs), BENCH_PORT.
// Memory: BENCH_SESSIONS x ~1.3-1.7 KB x (hub + workers) per machine, two machines at a time
// (about 7 GB per machine at 1,000,000 with 4 workers), plus redis-server in the Redis part.

import { spawn } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import path from 'node:path';
import readline from 'node:readline';
import { fileURLToPath } from 'node:url';

const thisFile = fileURLToPath(import.meta.url);

if (process.argv[2] === '--probe') {
  await probeMain();
} else {
  const lib = await import('./lib.mjs');
  const netns = await import('./netns.mjs');
  const { startRedis } = await import('./servers/redis.mjs');
  await benchMain(lib, netns, startRedis);
}

// ---------------------------------------------------------------------------------------------
// The probe: `node bench/scale-sessions.mjs --probe PORT RATE MAX_S`, run inside the cluster's
// namespace. New connection per request; stops on a `stop` line on stdin (or after MAX_S), waits
// for what is in flight (10 s timeout each) and prints `PROBE {json}`: samples [[start ms
// (hrtime), latency ms]], errors [[start ms, code]].

async function probeMain() {
  const port = Number(process.argv[3]);
  const rate = Number(process.argv[4]);
  const maxS = Number(process.argv[5]);
  const samples = [];
  const errors = [];
  const inflight = new Set();
  const started = process.hrtime.bigint();
  let issued = 0;
  let stop = false;
  const one = (i) => {
    const t0 = process.hrtime.bigint();
    const at = Number(t0) / 1e6;
    const p = new Promise((resolve) => {
      const req = http.get(
        {
          host: '127.0.0.1',
          port,
          path: '/',
          agent: false,
          localAddress: `127.0.0.${2 + (i % 250)}`,
          timeout: 10_000,
        },
        (res) => {
          res.resume();
          res.on('end', () => {
            if (res.statusCode === 200)
              samples.push([at, Number(process.hrtime.bigint() - t0) / 1e6]);
            else errors.push([at, `HTTP ${res.statusCode}`]);
            resolve();
          });
          res.on('error', (e) => {
            errors.push([at, e.code || e.message]);
            resolve();
          });
        },
      );
      req.on('timeout', () =>
        req.destroy(Object.assign(new Error('timeout'), { code: 'TIMEOUT' })),
      );
      req.on('error', (e) => {
        errors.push([at, e.code || e.message]);
        resolve();
      });
    });
    inflight.add(p);
    p.then(() => inflight.delete(p));
  };
  readline.createInterface({ input: process.stdin }).on('line', (l) => {
    if (l.trim() === 'stop') stop = true;
  });
  process.stdout.write('PROBING\n');
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const el = Number(process.hrtime.bigint() - started) / 1e9;
      if (stop || el > maxS) {
        clearInterval(timer);
        resolve();
        return;
      }
      const due = Math.floor(el * rate);
      while (issued < due) one(issued++);
    }, 1);
  });
  await Promise.all([...inflight]);
  process.stdout.write(`PROBE ${JSON.stringify({ samples, errors })}\n`);
  process.exit(0);
}

// ---------------------------------------------------------------------------------------------

async function benchMain(lib, netns, startRedis) {
  const { intEnv, fmtInt, fmtMs, f2, sleep } = lib;
  const N = intEnv('BENCH_SESSIONS', 1_000_000);
  const WORKERS = intEnv('BENCH_WORKERS', 4, 2);
  const INFLIGHT = intEnv('BENCH_INFLIGHT', 64);
  const PROBE_RATE = intEnv('BENCH_PROBE_RATE', 100);
  const QUIET = intEnv('BENCH_QUIET', 10);
  const WAIT = intEnv('BENCH_WAIT', 300);
  const NODE_FLAGS = ['--expose-gc', ...(process.env.BENCH_NODE_FLAGS || '').split(/\s+/)].filter(
    Boolean,
  );
  const ONLY = (process.env.BENCH_ONLY || 'multicast,redis').split(',').map((s) => s.trim());
  const WRITE = (process.env.BENCH_WRITE ?? '1') !== '0';
  // Its section of bench/RESULTS.md: one for a run of both parts, one per part run alone.
  const MARKER = ONLY.length === 1 ? `scale-sessions-${ONLY[0]}` : 'scale-sessions';
  const RESPAWN_SLOT = 1;
  const RESPAWN_WAIT = intEnv('BENCH_RESPAWN_WAIT', 180);
  // The servers' unresponsiveTimeout (sticky option), ms; unset: the library's default.
  const UNRESPONSIVE = process.env.BENCH_UNRESPONSIVE_TIMEOUT
    ? intEnv('BENCH_UNRESPONSIVE_TIMEOUT', 5000)
    : undefined;
  // Profiling runs (figures not for the record): every server process records a CPU profile for
  // BENCH_PROFILE_MS from its start, and machine 1's primary during the respawn and the join.
  const PROFILE_DIR = process.env.BENCH_PROFILE_DIR;
  const PROFILE_MS = intEnv('BENCH_PROFILE_MS', 20_000);
  const profileEnv = PROFILE_DIR ? { PROFILE_DIR, PROFILE_BOOT_MS: String(PROFILE_MS) } : {};
  const profilePrimary = (c) => {
    if (PROFILE_DIR)
      ctl(c.dir, 'primary.sock', `/profile?ms=${PROFILE_MS}`, {
        method: 'POST',
        timeout: PROFILE_MS + 60_000,
      }).catch((e) => console.log(`  profile: ${e.message}`));
  };
  const nowMs = () => Number(process.hrtime.bigint()) / 1e6;

  const groups = new Map(); // pgid -> child, every process group this bench started
  const dirs = [];
  const killAll = () => {
    for (const pgid of groups.keys()) {
      try {
        process.kill(-pgid, 'SIGKILL');
      } catch {}
    }
    for (const d of dirs) rmSync(d, { recursive: true, force: true });
  };
  process.on('exit', killAll);
  netns.cleanupOnSignals(killAll);

  // Lowest MemAvailable seen (sampled every second), to show how close the run came to the limit.
  let minAvailable = Number.POSITIVE_INFINITY;
  const memAvailable = () =>
    Number(/MemAvailable:\s+(\d+) kB/.exec(readFileSync('/proc/meminfo', 'utf8'))?.[1]) * 1024;
  // Memory guard: below BENCH_MIN_AVAILABLE_MIB of MemAvailable every server is killed (the
  // machine is shared) and the part fails, saying so.
  const MIN_AVAILABLE = intEnv('BENCH_MIN_AVAILABLE_MIB', 1536) * 2 ** 20;
  let guardTripped;
  const memSampler = setInterval(() => {
    const avail = memAvailable();
    minAvailable = Math.min(minAvailable, avail);
    if (avail < MIN_AVAILABLE && !guardTripped) {
      guardTripped = `memory guard: MemAvailable ${(avail / 2 ** 20).toFixed(0)} MiB < ${MIN_AVAILABLE / 2 ** 20} MiB; servers killed`;
      console.log(`  ${guardTripped}`);
      for (const pgid of groups.keys()) {
        try {
          process.kill(-pgid, 'SIGKILL');
        } catch {}
      }
    }
  }, 500);
  memSampler.unref();

  // ---- control over unix sockets --------------------------------------------------------------

  function ctl(dir, file, p, { method = 'GET', timeout = 10_000 } = {}) {
    return new Promise((resolve, reject) => {
      const req = http.request(
        { socketPath: path.join(dir, file), path: p, method, timeout, agent: false },
        (res) => {
          let body = '';
          res.setEncoding('utf8');
          res.on('data', (d) => {
            body += d;
          });
          res.on('end', () => {
            if (res.statusCode !== 200)
              reject(new Error(`${file} ${p}: ${res.statusCode} ${body}`));
            else resolve(JSON.parse(body));
          });
        },
      );
      req.on('timeout', () => req.destroy(new Error(`${file} ${p}: timed out`)));
      req.on('error', reject);
      req.end();
    });
  }

  // ---- processes ------------------------------------------------------------------------------

  function spawnGroup(ns, cmd, args, env) {
    const [c, a] = ns ? ['ip', ['netns', 'exec', ns, cmd, ...args]] : [cmd, args];
    const child = spawn(c, a, {
      cwd: lib.rootDir,
      detached: true,
      stdio: ['pipe', 'pipe', 'pipe'],
      env: { ...process.env, ...env },
    });
    groups.set(child.pid, child);
    child.on('exit', () => groups.delete(child.pid));
    return child;
  }

  async function stopGroup(child) {
    if (!child?.pid) return;
    await lib.killGroup(child.pid, child);
    groups.delete(child.pid);
  }

  // A cluster of scale-sessions.mjs; resolves once READY (bounded by WAIT), with the times (bench
  // hrtime, ms) it was started, bound its port and was ready.
  function startCluster({ name, ns, port, env }) {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sticky-scale-'));
    dirs.push(dir);
    const startedAt = nowMs();
    const child = spawnGroup(
      ns,
      process.execPath,
      [...NODE_FLAGS, path.join(lib.benchDir, 'servers', 'scale-sessions.mjs')],
      {
        ...env,
        ...profileEnv,
        ...(UNRESPONSIVE ? { UNRESPONSIVE_TIMEOUT: String(UNRESPONSIVE) } : {}),
        PORT: String(port),
        WORKERS: String(WORKERS),
        CONTROL_DIR: dir,
      },
    );
    const c = { name, ns, port, dir, child, startedAt, listeningAt: NaN, readyAt: NaN, err: '' };
    child.stderr.setEncoding('utf8');
    child.stderr.on('data', (d) => {
      c.err = (c.err + d).slice(-4000);
    });
    c.ready = new Promise((resolve, reject) => {
      const timer = setTimeout(
        () => reject(new Error(`${name}: not READY in ${WAIT} s\n${c.err}`)),
        WAIT * 1000,
      );
      readline.createInterface({ input: child.stdout }).on('line', (line) => {
        if (line.startsWith('LISTENING ')) c.listeningAt = nowMs();
        if (line.startsWith('READY ')) {
          c.readyAt = nowMs();
          clearTimeout(timer);
          resolve(c);
        }
      });
      child.on('exit', (code, signal) => {
        clearTimeout(timer);
        reject(new Error(`${name}: exited (${code ?? signal})\n${c.err}`));
      });
    });
    c.ready.catch(() => {});
    return c;
  }

  // Memory of every process of a cluster (primary, then workers by slot), after forced GCs.
  async function memAll(c) {
    const out = [
      { who: 'primary', ...(await ctl(c.dir, 'primary.sock', '/mem', { timeout: 60_000 })) },
    ];
    for (let s = 0; s < WORKERS; s++) {
      out.push({
        who: `worker ${s}`,
        ...(await ctl(c.dir, `w${s}.sock`, '/mem', { timeout: 60_000 })),
      });
    }
    return out;
  }

  const vmField = (pid, field) => {
    try {
      const m = new RegExp(`${field}:\\s+(\\d+) kB`).exec(
        readFileSync(`/proc/${pid}/status`, 'utf8'),
      );
      return m ? Number(m[1]) * 1024 : Number.NaN;
    } catch {
      return Number.NaN;
    }
  };

  // Polls the slots' session counts until each holds `target` (or WAIT s): the bench time each
  // first did, and the last counts seen.
  async function waitCounts(c, slots, target, waitS = WAIT) {
    const at = new Map();
    const last = new Map();
    const deadline = nowMs() + waitS * 1000;
    while (at.size < slots.length && nowMs() < deadline) {
      if (guardTripped) throw new Error(guardTripped);
      await Promise.all(
        slots
          .filter((s) => !at.has(s))
          .map(async (s) => {
            try {
              const r = await ctl(c.dir, `w${s}.sock`, '/count', { timeout: 5000 });
              last.set(s, r.count);
              if (r.count >= target) at.set(s, nowMs());
            } catch {
              // not listening yet (a worker starting), or busy: asked again
            }
          }),
      );
      if (at.size < slots.length) await sleep(200);
    }
    return { at, last, done: at.size === slots.length };
  }

  async function fill(c) {
    const per = Math.floor(N / WORKERS);
    const counts = Array.from({ length: WORKERS }, (_, s) =>
      s === 0 ? N - per * (WORKERS - 1) : per,
    );
    const t0 = nowMs();
    const rs = await Promise.all(
      counts.map((n, s) =>
        ctl(c.dir, `w${s}.sock`, `/fill?count=${n}&inflight=${INFLIGHT}`, {
          method: 'POST',
          timeout: WAIT * 1000,
        }),
      ),
    );
    const acked = nowMs();
    const all = Array.from({ length: WORKERS }, (_, s) => s);
    const held = await waitCounts(c, all, N);
    const writes = rs.reduce((a, r) => a + r.writes, 0);
    const errors = rs.reduce((a, r) => a + r.errors, 0);
    const jsonBytes = rs.reduce((a, r) => a + r.jsonBytes, 0);
    const heldAt = Math.max(...held.at.values());
    const r = {
      writes,
      errors,
      meanJson: jsonBytes / writes,
      ackedS: (acked - t0) / 1000,
      heldS: (heldAt - t0) / 1000,
      held: held.done,
      counts: [...held.last.values()],
    };
    console.log(
      `  fill: ${fmtInt(writes)} writes (errors ${errors}), mean JSON ${r.meanJson.toFixed(0)} B, acknowledged in ${r.ackedS.toFixed(1)} s (${fmtInt(writes / r.ackedS)} writes/s), on every worker after ${r.heldS.toFixed(1)} s${held.done ? '' : ` NOT ALL HELD: ${[...held.last.values()]}`}`,
    );
    if (!held.done) throw new Error('fill: not every worker holds every session');
    return r;
  }

  function memory(before, after, meanJson) {
    return after.map((a, i) => {
      const b = before[i];
      const heap = (a.mem.heapUsed - b.mem.heapUsed) / N;
      const rss = (a.mem.rss - b.mem.rss) / N;
      return {
        who: a.who,
        pid: a.pid,
        heap,
        rss,
        heapRatio: heap / meanJson,
        rssRatio: rss / meanJson,
        heapUsed: a.mem.heapUsed,
        rssNow: a.mem.rss,
        external: a.mem.external,
      };
    });
  }

  // ---- the probe ------------------------------------------------------------------------------

  function startProbe(ns, port) {
    const child = spawnGroup(
      ns,
      process.execPath,
      [thisFile, '--probe', String(port), String(PROBE_RATE), String(WAIT * 4)],
      {},
    );
    const p = { child, result: undefined };
    let out = '';
    child.stdout.setEncoding('utf8');
    p.started = new Promise((resolve, reject) => {
      child.stdout.on('data', (d) => {
        out += d;
        if (out.includes('PROBING\n')) resolve();
      });
      child.on('exit', (code) => reject(new Error(`probe exited (${code})`)));
    });
    p.done = new Promise((resolve) => {
      child.on('exit', () => {
        const line = out.split('\n').find((l) => l.startsWith('PROBE '));
        resolve(line ? JSON.parse(line.slice(6)) : { samples: [], errors: [] });
      });
    });
    p.stop = async () => {
      child.stdin.write('stop\n');
      return p.done;
    };
    return p;
  }

  function window(probe, from, to) {
    const lat = probe.samples.filter(([t]) => t >= from && t <= to).map(([, l]) => l);
    const errors = probe.errors.filter(([t]) => t >= from && t <= to);
    const d = lib.dist(lat);
    return {
      ...d,
      over100: lat.filter((l) => l > 100).length,
      errors: errors.length,
      errorCodes: [...new Set(errors.map(([, c]) => c))].join(', '),
      seconds: (to - from) / 1000,
    };
  }

  const fmtEld = (e) => (e ? `${fmtMs(e.p99)} / ${fmtMs(e.max)}` : 'n/a');
  const fmtWin = (w) =>
    `p50 ${fmtMs(w.p50)} / p99 ${fmtMs(w.p99)} / max ${fmtMs(w.max)} ms over ${fmtInt(w.n)} requests in ${w.seconds.toFixed(1)} s, ${w.over100} over 100 ms, errors ${w.errors}${w.errorCodes ? ` (${w.errorCodes})` : ''}; primary event-loop delay p99 / max ${fmtEld(w.eld)} ms`;

  // ---- respawn and join -----------------------------------------------------------------------

  async function respawn(c) {
    const stats = await ctl(c.dir, 'primary.sock', '/stats');
    const old = stats.slots[RESPAWN_SLOT].pid;
    profilePrimary(c);
    const t0 = nowMs();
    process.kill(old, 'SIGKILL');
    let readyAt = Number.NaN;
    let newPid;
    const readyWatch = (async () => {
      while (Number.isNaN(readyAt) && nowMs() - t0 < WAIT * 1000) {
        try {
          const s = (await ctl(c.dir, 'primary.sock', '/stats', { timeout: 5000 })).slots[
            RESPAWN_SLOT
          ];
          if (s.pid !== old && s.state === 'ready') {
            readyAt = nowMs();
            newPid = s.pid;
          }
        } catch {}
        if (Number.isNaN(readyAt)) await sleep(100);
      }
    })();
    const held = await waitCounts(c, [RESPAWN_SLOT], N, RESPAWN_WAIT);
    await readyWatch;
    const replaced = (st) => st.slots.reduce((a, x) => a + x.replaced.unresponsive, 0);
    const after = await ctl(c.dir, 'primary.sock', '/stats', { timeout: 60_000 }).catch(
      () => undefined,
    );
    const heldAt = held.at.get(RESPAWN_SLOT) ?? Number.NaN;
    const r = {
      t0,
      end: Number.isNaN(heldAt) ? nowMs() : heldAt,
      readyS: (readyAt - t0) / 1000,
      heldS: (heldAt - t0) / 1000,
      held: held.done,
      last: held.last.get(RESPAWN_SLOT),
      oldPid: old,
      newPid,
      unresponsive: after ? replaced(after) - replaced(stats) : Number.NaN,
      slots: after?.slots.map((x) => `${x.slot}: ${x.state}, restarts ${x.restarts}`),
    };
    console.log(
      `  respawn of slot ${RESPAWN_SLOT} (SIGKILL to ${old}): ready again after ${f2(r.readyS)} s, holds every session after ${f2(r.heldS)} s${held.done ? '' : ` NOT HELD within ${RESPAWN_WAIT} s (last count ${r.last})`}; workers replaced as unresponsive meanwhile: ${r.unresponsive}`,
    );
    return r;
  }

  async function join(c2) {
    await c2.ready;
    const all = Array.from({ length: WORKERS }, (_, s) => s);
    const held = await waitCounts(c2, all, N);
    const heldAt = held.done ? Math.max(...held.at.values()) : Number.NaN;
    const r = {
      t0: c2.startedAt,
      end: Number.isNaN(heldAt) ? nowMs() : heldAt,
      listeningS: (c2.listeningAt - c2.startedAt) / 1000,
      readyS: (c2.readyAt - c2.startedAt) / 1000,
      heldS: (heldAt - c2.startedAt) / 1000,
      held: held.done,
      last: [...held.last.values()],
    };
    console.log(
      `  join: port bound after ${f2(r.listeningS)} s, every worker ready after ${f2(r.readyS)} s, every worker holds every session after ${f2(r.heldS)} s${held.done ? '' : ` NOT HELD (last counts ${r.last})`}`,
    );
    return r;
  }

  // ---- the parts ------------------------------------------------------------------------------

  async function multicastPart(part) {
    if (!netns.netnsAvailable()) return { skipped: 'needs root and ip netns' };
    netns.removeStale();
    const lan = netns.createLan({ hosts: 2 });
    const secret = randomBytes(32).toString('hex');
    const [h1, h2] = lan.hosts;
    const port = 3000;
    const mcEnv = (h) => ({ MODE: 'multicast', MCAST_SECRET: secret, MCAST_IPV4: h.ipv4 });
    let m1;
    let m2;
    let probe;
    const windows = {};
    part.windows = windows;
    // The probe's latencies in [from, to] and the primary's event-loop delay over that time.
    const measured = async (name, run) => {
      probe = startProbe(h1.ns, port);
      await probe.started;
      await ctl(m1.dir, 'primary.sock', '/eld');
      const r = await run();
      const eld = await ctl(m1.dir, 'primary.sock', '/eld');
      const data = await probe.stop();
      probe = undefined;
      windows[name] = { ...window(data, r.t0, r.end), eld };
      console.log(`  routing on machine 1, ${name}: ${fmtWin(windows[name])}`);
      return r;
    };
    try {
      console.log('multicast: machine 1 starts');
      m1 = await startCluster({ name: 'machine 1', ns: h1.ns, port, env: mcEnv(h1) }).ready;
      await sleep(1000);
      const before = await memAll(m1);
      const filled = await fill(m1);
      part.filled = filled;
      await sleep(2000);
      const after = await memAll(m1);
      const mem = memory(before, after, filled.meanJson);
      part.mem = mem;
      part.hwm = { m1: [] };
      for (const m of mem) {
        part.hwm.m1.push(vmField(m.pid, 'VmHWM'));
        console.log(
          `  memory ${m.who}: heap ${fmtInt(m.heap)} B/session (${f2(m.heapRatio)}x JSON), RSS ${fmtInt(m.rss)} B/session (${f2(m.rssRatio)}x)`,
        );
      }
      await measured('quiet', async () => {
        const t0 = nowMs();
        await sleep(QUIET * 1000);
        return { t0, end: nowMs() };
      });
      console.log('multicast: machine 2 joins');
      profilePrimary(m1);
      const joined = await measured('join', () => {
        m2 = startCluster({ name: 'machine 2', ns: h2.ns, port, env: mcEnv(h2) });
        return join(m2);
      });
      part.joined = joined;
      if (PROFILE_DIR) await sleep(Math.max(0, PROFILE_MS - (nowMs() - joined.t0)) + 2000);
      part.s1 = await ctl(m1.dir, 'primary.sock', '/stats');
      part.s2 = await ctl(m2.dir, 'primary.sock', '/stats');
      part.mem2 = await memAll(m2);
      part.hwm.m2 = [m2.child.pid, ...part.s2.slots.map((s) => s.pid)].map((p) =>
        vmField(p, 'VmHWM'),
      );
      // Machine 2 goes before the respawn: its memory is not needed any more.
      await stopGroup(m2.child);
      m2 = undefined;
      await sleep(2000);
      profilePrimary(m1);
      part.resp = await measured('respawn', () => respawn(m1));
      part.hwm.m1PrimaryAfterRespawn = vmField(m1.child.pid, 'VmHWM');
      if (PROFILE_DIR) await sleep(PROFILE_MS);
      return {};
    } finally {
      if (probe) await probe.stop().catch(() => {});
      await stopGroup(m2?.child);
      await stopGroup(m1?.child);
      lan.destroy();
    }
  }
  async function redisPart(part) {
    let ioredis;
    try {
      ioredis = (await import('ioredis')).default;
    } catch {
      return { skipped: 'needs ioredis' };
    }
    let redis;
    try {
      redis = await startRedis({
        detached: true,
        onSpawn: (child) => groups.set(child.pid, child),
      });
    } catch (err) {
      return { skipped: err.message };
    }
    const client = new ioredis({ port: redis.port, host: '127.0.0.1', lazyConnect: false });
    let m1;
    let m2;
    let probe;
    try {
      const port1 = await lib.findPort(['127.0.0.1']);
      const env = { MODE: 'redis', REDIS_PORT: String(redis.port) };
      console.log('redis: machine 1 starts');
      m1 = await startCluster({ name: 'machine 1 (redis)', port: port1, env }).ready;
      await sleep(1000);
      const redisBefore = Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
      const filled = await fill(m1);
      part.filled = filled;
      // Every record in Redis, and nothing left in the transport's queue.
      const t0 = nowMs();
      let dbsize = 0;
      let tr;
      while (nowMs() - t0 < WAIT * 1000) {
        if (guardTripped) throw new Error(guardTripped);
        dbsize = await client.dbsize();
        tr = (await ctl(m1.dir, 'primary.sock', '/stats')).redis;
        if (dbsize >= N && tr.queued === 0) break;
        await sleep(500);
      }
      part.drain = {
        seconds: (nowMs() - t0) / 1000,
        written: tr.written,
        dropped: tr.dropped,
        rebuilds: tr.rebuilds,
      };
      console.log(
        `  Redis holds ${fmtInt(dbsize)} records ${((nowMs() - t0) / 1000).toFixed(1)} s after the fill was on every worker; transport: written ${fmtInt(tr.written)}, dropped ${tr.dropped}, rebuilds ${tr.rebuilds}, queued ${tr.queued}`,
      );
      const redisAfter = Number(/used_memory:(\d+)/.exec(await client.info('memory'))?.[1]);
      // Machine 1 streams nothing to a machine that joins through Redis (Redis serves the scan),
      // so it goes first: two machines of 1,000,000 sessions and redis-server do not fit in
      // 24 GiB beside the joiner's transient IPC buffers.
      await stopGroup(m1.child);
      m1 = undefined;
      await sleep(2000);
      console.log('redis: machine 2 joins (machine 1 stopped)');
      const port2 = await lib.findPort(['127.0.0.1']);
      m2 = startCluster({ name: 'machine 2 (redis)', port: port2, env });
      part.redisVersion = redis.version;
      part.dbsize = dbsize;
      const joined = await join(m2);
      part.joined = joined;
      const s2 = await ctl(m2.dir, 'primary.sock', '/stats');
      const mem2 = await memAll(m2);
      return {
        filled,
        dbsize,
        redisPerSession: (redisAfter - redisBefore) / N,
        redisVersion: redis.version,
        joined,
        s2,
        mem2,
        hwm2: [m2.child.pid, ...s2.slots.map((s) => s.pid)].map((p) => vmField(p, 'VmHWM')),
      };
    } finally {
      if (probe) await probe.stop().catch(() => {});
      client.disconnect();
      await stopGroup(m2?.child);
      await stopGroup(m1?.child);
      await stopGroup(redis.child);
    }
  }

  // ---- report ---------------------------------------------------------------------------------

  const started = new Date();
  const results = {};
  const runPart = async (name, fn) => {
    const part = {};
    try {
      Object.assign(part, await fn(part));
    } catch (err) {
      part.error = String(err.message).split('\n')[0];
      console.log(`${name}: FAILED: ${err.stack}`);
    }
    return part;
  };
  if (ONLY.includes('multicast')) results.multicast = await runPart('multicast', multicastPart);
  if (ONLY.includes('redis')) results.redis = await runPart('redis', redisPart);
  clearInterval(memSampler);
  const lines = report(results);
  console.log(`\n${lines.join('\n')}`);
  if (WRITE) lib.writeResults(MARKER, lines.join('\n'));
  process.exit(0);

  function report(r) {
    const info = lib.machine();
    const mib = (b) => `${(b / 2 ** 20).toFixed(0)} MiB`;
    const yes = (ok) => (ok ? 'yes' : '**no**');
    const out = [
      `<!-- BEGIN ${MARKER} (written by bench/scale-sessions.mjs; do not edit by hand) -->`,
      `## A million sessions (issue 18)${ONLY.length === 1 ? `: ${ONLY[0]} only` : ''}`,
      '',
      `Date ${started.toISOString()}; commit ${lib.gitCommit()}; ${info.cpus} CPUs (${info.model}), ${info.memGiB} GiB; Node ${info.node}. ${fmtInt(N)} sessions, ${WORKERS} workers per machine, servers run as \`node ${NODE_FLAGS.join(' ')}\`, unresponsiveTimeout ${UNRESPONSIVE ? `${fmtInt(UNRESPONSIVE)} ms (set by the bench)` : 'the default (5,000 ms)'}; routing probe ${PROBE_RATE} new connections/s. Lowest MemAvailable during the run: ${mib(minAvailable)}.`,
      '',
      `Reproduce: \`flock /tmp/sticky-bench.lock env BENCH_SESSIONS=${N}${ONLY.length === 1 ? ` BENCH_ONLY=${ONLY[0]}` : ''}${UNRESPONSIVE ? ` BENCH_UNRESPONSIVE_TIMEOUT=${UNRESPONSIVE}` : ''} node bench/scale-sessions.mjs\` (method in the script's header).`,
      '',
    ];
    const targets = [];
    const m = r.multicast;
    const d = r.redis;
    const w = m?.windows;
    if (m?.mem) {
      const worst = Math.max(...m.mem.map((x) => x.heapRatio));
      targets.push(
        `| heap per session per process <= 1.5x its JSON bytes | primary ${f2(m.mem[0].heapRatio)}x, workers ${m.mem
          .slice(1)
          .map((x) => `${f2(x.heapRatio)}x`)
          .join(', ')} (mean JSON ${m.filled.meanJson.toFixed(0)} B) | ${yes(worst <= 1.5)} |`,
      );
    }
    if (m?.resp)
      targets.push(
        `| respawned worker synced within 30 s (IPC path of this branch) | ${m.resp.held ? `${f2(m.resp.heldS)} s` : `not within ${RESPAWN_WAIT} s`} (slot ready after ${f2(m.resp.readyS)} s; workers replaced as unresponsive meanwhile: ${m.resp.unresponsive}) | ${yes(m.resp.held && m.resp.heldS <= 30)} |`,
      );
    if (m?.joined)
      targets.push(
        `| joining machine synced within 60 s, multicast | ${f2(m.joined.heldS)} s (port bound ${f2(m.joined.listeningS)} s, ready ${f2(m.joined.readyS)} s) | ${yes(m.joined.held && m.joined.heldS <= 60)} |`,
      );
    if (d?.joined)
      targets.push(
        `| joining machine synced within 60 s, Redis | ${f2(d.joined.heldS)} s (port bound ${f2(d.joined.listeningS)} s, ready ${f2(d.joined.readyS)} s) | ${yes(d.joined.held && d.joined.heldS <= 60)} |`,
      );
    for (const [k, what] of [
      ['respawn', 'the respawn sync (IPC, this branch)'],
      ['join', 'the transfer to a joining machine (multicast, TCP)'],
    ]) {
      if (w?.[k])
        targets.push(
          `| routing p99 unchanged (<= 1.5x quiet) while the primary streams ${what} | ${fmtMs(w[k].p99)} ms vs ${fmtMs(w.quiet.p99)} ms quiet (max ${fmtMs(w[k].max)} ms; primary event-loop delay max ${fmtMs(w[k].eld?.max)} ms) | ${yes(w[k].p99 <= 1.5 * w.quiet.p99)} |`,
        );
    }
    if (targets.length)
      out.push('| target (issue 18) | measured | met |', '|---|---|---|', ...targets, '');
    const routingTable = (windows, title) => [
      `| ${title} | requests | p50 ms | p99 ms | max ms | over 100 ms | errors | seconds | primary event-loop delay p99 / max ms |`,
      '|---|---:|---:|---:|---:|---:|---:|---:|---:|',
      ...Object.entries(windows).map(
        ([k, x]) =>
          `| ${k} | ${fmtInt(x.n)} | ${fmtMs(x.p50)} | ${fmtMs(x.p99)} | ${fmtMs(x.max)} | ${x.over100} | ${x.errors}${x.errorCodes ? ` (${x.errorCodes})` : ''} | ${x.seconds.toFixed(1)} | ${fmtEld(x.eld)} |`,
      ),
      '',
    ];
    if (m?.skipped) out.push(`Multicast part skipped: ${m.skipped}.`, '');
    if (m && !m.skipped) {
      out.push('### Multicast (2 network namespaces)', '');
      if (m.error) out.push(`**The part failed**: ${m.error}. What it measured before:`, '');
      if (m.filled)
        out.push(
          `Fill: ${fmtInt(m.filled.writes)} \`store.set\` from the workers (${INFLIGHT} in flight each; errors ${m.filled.errors}), acknowledged in ${m.filled.ackedS.toFixed(1)} s (${fmtInt(m.filled.writes / m.filled.ackedS)} writes/s), held by every worker after ${m.filled.heldS.toFixed(1)} s; mean session JSON ${m.filled.meanJson.toFixed(0)} B.`,
          '',
        );
      if (m.mem)
        out.push(
          'Memory per session (after - before the fill, two forced GCs each, divided by the sessions):',
          '',
          '| process | heap B/session | x JSON | RSS B/session | x JSON | heapUsed after | RSS after | peak RSS (VmHWM) at the end |',
          '|---|---:|---:|---:|---:|---:|---:|---:|',
          ...m.mem.map(
            (x, i) =>
              `| ${x.who} | ${fmtInt(x.heap)} | ${f2(x.heapRatio)} | ${fmtInt(x.rss)} | ${f2(x.rssRatio)} | ${mib(x.heapUsed)} | ${mib(x.rssNow)} | ${m.hwm ? mib(m.hwm.m1[i]) : 'n/a'}${i === RESPAWN_SLOT + 1 ? ' (respawned)' : ''} |`,
          ),
          '',
        );
      if (m.mem2)
        out.push(
          `Machine 2 after joining: ${m.mem2.map((x, i) => `${x.who} heap ${mib(x.mem.heapUsed)} / RSS ${mib(x.mem.rss)} (peak ${mib(m.hwm.m2[i])})${x.count === undefined ? '' : `, ${fmtInt(x.count)} sessions`}`).join('; ')}.`,
          '',
        );
      if (m.resp)
        out.push(
          `Respawn: SIGKILL to slot ${RESPAWN_SLOT}'s worker; ready again after ${f2(m.resp.readyS)} s, its store held every session after ${m.resp.held ? `${f2(m.resp.heldS)} s` : `(not within ${RESPAWN_WAIT} s; last count ${fmtInt(m.resp.last)})`}; workers replaced as unresponsive meanwhile: ${m.resp.unresponsive} (slots then: ${m.resp.slots?.join('; ')})${m.hwm ? `; machine 1's primary peak RSS right after: ${mib(m.hwm.m1PrimaryAfterRespawn)}` : ''}.`,
          '',
        );
      if (m.joined)
        out.push(
          `Join: machine 2's primary bound its port after ${f2(m.joined.listeningS)} s, every worker was ready after ${f2(m.joined.readyS)} s, and every worker held every session after ${f2(m.joined.heldS)} s.${m.s2 ? ` Machine 2's multicast counters: transfers ${m.s2.multicast?.transfers}, failures ${m.s2.multicast?.transferFailures}, changes received ${fmtInt(m.s2.multicast?.changesReceived)}; hub resyncs ${m.s2.sessions?.resyncs}. Machine 1 served ${m.s1.multicast?.served} transfer(s). Workers replaced as unresponsive on machine 2: ${m.s2.slots.reduce((a, x) => a + x.replaced.unresponsive, 0)}.` : ''}`,
          '',
        );
      if (w)
        out.push(
          'Routing on machine 1 (new connection per request, latency to the last byte of the answer):',
          '',
          ...routingTable(w, 'window'),
        );
    }
    if (d?.skipped) out.push(`Redis part skipped: ${d.skipped}.`, '');
    if (d && !d.skipped) {
      out.push(`### Redis (redis-server ${d.redisVersion ?? ''} on loopback)`, '');
      if (d.error) out.push(`**The part failed**: ${d.error}. What it measured before:`, '');
      if (d.filled)
        out.push(
          `Fill: ${fmtInt(d.filled.writes)} writes (errors ${d.filled.errors}), acknowledged in ${d.filled.ackedS.toFixed(1)} s (${fmtInt(d.filled.writes / d.filled.ackedS)} writes/s)${d.drain ? `; Redis held every record ${d.drain.seconds.toFixed(1)} s after every worker did (transport: written ${fmtInt(d.drain.written)}, dropped from its full queue ${fmtInt(d.drain.dropped)}, rebuilds ${d.drain.rebuilds})` : ''}${d.redisPerSession ? `; ${fmtInt(d.redisPerSession)} B of used_memory per session` : ''}.`,
          '',
        );
      if (d.joined)
        out.push(
          `Join: machine 2's primary bound its port after ${f2(d.joined.listeningS)} s, every worker was ready after ${f2(d.joined.readyS)} s, every worker held every session after ${f2(d.joined.heldS)} s.${d.s2 ? ` Machine 2's Redis counters: rebuilds ${d.s2.redis?.rebuilds}, received ${fmtInt(d.s2.redis?.received)}, reconciled ${d.s2.redis?.reconciled}, errors ${d.s2.redis?.errors}; workers replaced as unresponsive: ${d.s2.slots.reduce((a, x) => a + x.replaced.unresponsive, 0)}.` : ''}${d.mem2 ? ` Its processes after joining: ${d.mem2.map((x, i) => `${x.who} heap ${mib(x.mem.heapUsed)} / RSS ${mib(x.mem.rss)} (peak ${mib(d.hwm2[i])})`).join('; ')}.` : ''}`,
          '',
        );
      if (d.windows) out.push(...routingTable(d.windows, 'routing on machine 1'));
    }
    out.push(`<!-- END ${MARKER} -->`);
    return out;
  }
}
