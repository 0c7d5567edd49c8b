#!/usr/bin/env node
// Multicast replication benchmark (issue 5): sticky-mesh's MulticastTransport between hosts.
//
//   node bench/multicast.mjs            full run (needs root, iproute2 and dist/: `npm run
//                                       build` once); writes its section of bench/RESULTS.md
//   node bench/multicast.mjs --quick    smoke run, small figures, bench/RESULTS.md left alone
//
// Without root or `ip netns` it prints "skipped: needs root and ip netns" and exits 0.
//
// Hosts: a private LAN of network namespaces on this kernel (bench/netns.mjs): a switch
// namespace with a Linux bridge (mcast_snooping 0) and 3 host namespaces, each with a veth
// pair (eth0, 10.78.0.<i>/24) to the bridge, lo up, no default route; nothing in the root
// namespace, every namespace removed at the end (also on error and Ctrl-C; stale ones of a
// killed run are removed at the start). Each host runs this script as an agent
// (`ip netns exec <ns> node bench/multicast.mjs --agent`), driven over stdin / stdout JSON
// lines. An agent is what a standalone ReplicatedStore is, without express-session: a
// SessionTable, a Clock and a MulticastTransport (dist/replication/transports/multicast/) built with
// `new MulticastTransport(resolveMulticastOptions({ secret, ipv4: '10.78.0.<i>', logger }),
// host)`; all other options are the defaults users get (group 228.0.0.5:4000, sealed mode:
// AES-256-GCM with a random 32-byte secret per run, heartbeat 500 ms, joinTimeout 1 s). A local
// write is what ReplicatedStore.set does: version = clock.tick(), table.apply(change),
// transport.publish(change); a remote change is applied to the table by host.applyRemote.
// Sessions are express-session-like JSON ({"cookie":{...},"user":...,"pad":"..."}) padded to
// SESSION_BYTES (1,024) of JSON, with 32-character ids.
//
// Measurements, ROUNDS times (each round on fresh agent processes):
//
// 1. latency: host 1 writes at RATES writes/s (200 as issue 5 asks, 1,000 for context) for
//    LAT_WARMUP + LAT_SECONDS s, open loop (a 1 ms timer; each tick sends the writes due since
//    the start, each in its own event-loop turn at 200/s). The send time
//    (process.hrtime.bigint() just before the write is versioned, applied and published) is in
//    the session id; hosts 2 and 3 take hrtime again in applyRemote right after applying the
//    change. hrtime is CLOCK_MONOTONIC, one clock for every process of the machine whatever
//    its network namespace, so receive - send is the write-to-visible latency. Writes of the
//    warm-up second are not counted; a write never seen by a receiver counts as missing.
//    Reported per receiver (p50 / p99 / max, samples) and for "both" (the later of the two
//    receivers per write), with each host's CPU and GC pauses (perf_hooks 'gc' entries). Right
//    after, the same rate of plain dgram datagrams of the same size from host 1 to hosts 2 and
//    3 (another group, no transport): the platform's own latency, as a reference.
// 2. datagrams per write: host 1 writes COUNT sessions of 100 B, 1 KB and 16 KB of JSON, paced
//    (100/s, each write alone in its event-loop turn) and in bursts (BATCH writes per
//    event-loop turn, as a busy server calls set() from many requests in one turn; the
//    transport packs the changes of one turn into as few datagrams as fit 1,400 bytes and splits
//    a change larger than that). From host 1's stats() before and after (until both receivers
//    hold every write): dataSent (data datagrams), datagramsSent (all: data, heartbeats every
//    500 ms, retransmits), bytesSent (all, envelopes included), changesSent.
// 3. replicated writes/s: 3 fresh agents, all synced and seeing each other; then all three
//    write TP_WRITES sessions each as fast as they can, for each batch size of TP_BATCHES:
//    that many writes per event-loop turn, the next batch on setImmediate, so received
//    datagrams are read between batches (the figures depend a lot on it: with larger batches
//    senders outrun receivers, receive buffers overflow and loss repair takes over). Time
//    from the first host's first write until the last host holds all 3 x TP_WRITES (polled
//    table size, in applyRemote and after each batch), then digests compared (up to 10 s).
//    writes/s = 3 x TP_WRITES / that time. Loss repair from stats() (nacksSent, retransmits,
//    transfers, overflow) and the kernel's UDP counters of each namespace (/proc/net/snmp:
//    RcvbufErrors = datagrams dropped because a receive buffer was full). TP_REPS repetitions
//    per batch size, median.
// 4. join: host 1 holds JOIN_SESSIONS sessions (applied to its table before it starts; it
//    starts alone, 1 s join timeout); a fresh agent on host 2 then calls start(): time from
//    the call until it resolves (bind, join datagram, greeting, state transfer over TCP from
//    the greeter: sealed 256 KB frames), then its table compared with host 1's (size and
//    digest), and its peak RSS (process.resourceUsage().maxRSS) with its RSS before start.
//    JOIN_REPS joiners one after the other (each a new process that leaves afterwards), median.
//
// Background load: every agent and this process share the machine's cores (2 on the reference
// box); before each measured run the bench waits (up to QUIET_WAIT s) until other processes use
// <= FOREIGN_MAX cores, measures foreign CPU during the run (/proc/stat busy time minus this
// process and the agents), and repeats a run above FOREIGN_MAX (up to MAX_ATTEMPTS, keeping the
// least disturbed). Shared helpers: bench/lib.mjs.
//
// Output: a summary on stdout and the section "Multicast replication between hosts (issue 5)"
// of bench/RESULTS.md (between its BEGIN/END multicast markers; other sections untouched). The
// section keeps a one-line summary of up to 4 earlier full runs (from a JSON comment in it), so
// consecutive runs stay comparable.
//
// Environment knobs [defaults; --quick]: BENCH_ROUNDS [2; 1], BENCH_RATES writes/s
// [200,1000], BENCH_LAT_SECONDS [10; 2], BENCH_LAT_WARMUP s [1], BENCH_COUNT writes per
// datagram-count case [300; 60] (16 KB bursts: a tenth), BENCH_TP_WRITES per host [20000;
// 2000], BENCH_TP_REPS [3; 1], BENCH_TP_BATCHES writes per event-loop turn in the writes/s
// runs [1,16,64], BENCH_BATCH writes per event-loop turn in the datagram-count bursts [16],
// BENCH_JOIN_SESSIONS [100000; 20000], BENCH_JOIN_REPS [3; 1], BENCH_SESSION_BYTES [1024],
// BENCH_WRITE [1; 0] (0: bench/RESULTS.md left alone), BENCH_RESULTS_FILE [bench/RESULTS.md],
// BENCH_FOREIGN_MAX cores [0.2], BENCH_MAX_ATTEMPTS [2], BENCH_QUIET_WAIT s [30; 5]; BENCH_ONLY
// (trial runs: a comma-separated subset of latency, counts, writes, join; prints the runs only).
// Defaults take about 5 minutes on the reference box (more while other processes keep it busy).

import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { PerformanceObserver, performance } from 'node:perf_hooks';
import readline from 'node:readline';
import { fileURLToPath, pathToFileURL } from 'node:url';

const thisFile = fileURLToPath(import.meta.url);
const benchDir = path.dirname(thisFile);
const rootDir = path.resolve(benchDir, '..');
const distDir = path.join(rootDir, 'dist', 'replication');
const distImport = (file) => import(pathToFileURL(path.join(distDir, file)).href);

const EXPIRES_MS = 3_600_000;
const RAW_GROUP = '228.0.0.6';
const RAW_PORT = 4001;
const SID_LENGTH = 32;
const PAD = 'x'.repeat(70_000);
const nowNs = () => process.hrtime.bigint();
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
const turn = () => new Promise((r) => setImmediate(r));

// An express-session-like session of `bytes` bytes of JSON (at least its fixed part).
function sessionJson(bytes, i, now) {
  const head =
    bytes < 256
      ? `{"cookie":{"originalMaxAge":3600000},"n":${i},"pad":"`
      : `{"cookie":{"originalMaxAge":3600000,"expires":"${new Date(now + EXPIRES_MS).toISOString()}","secure":false,"httpOnly":true,"path":"/"},"user":"user-${i}","n":${i},"pad":"`;
  return `${head}${PAD.slice(0, Math.max(0, bytes - head.length - 2))}"}`;
}

const sidOf = (prefix, i) => `${prefix}${i}`.padEnd(SID_LENGTH, '_');

// Calls send(i) for i = 0 .. count - 1 at `rate` per second from now: every 1 ms (a sleep) the
// ones due so far, then afterRound(). Gives up after twice the planned time + 10 s, a bound never
// reached on a sane machine. Resolves with { sent, seconds }.
async function pace(rate, count, send, afterRound = () => {}) {
  const start = nowNs();
  const limit = (count / rate) * 2 + 10; // s
  let sent = 0;
  for (;;) {
    const el = Number(nowNs() - start) / 1e9;
    if (el > limit) break;
    const due = Math.min(count, Math.floor(el * rate) + 1);
    while (sent < due) {
      send(sent);
      sent++;
    }
    afterRound();
    if (sent >= count) break;
    await sleep(1);
  }
  return { sent, seconds: Number(nowNs() - start) / 1e9 };
}

// =============================================================================================
// Agent: one host's replication endpoint, driven over stdin / stdout JSON lines.

async function agentMain() {
  const [{ MulticastTransport }, { resolveMulticastOptions }, { SessionTable }, { Clock }] =
    await Promise.all([
      distImport('transports/multicast/transport.js'),
      distImport('transports/multicast/options.js'),
      distImport('table.js'),
      distImport('clock.js'),
    ]);
  const table = new SessionTable({ tombstoneTtl: 600_000 });
  const clock = new Clock();
  const warnings = [];
  let transport;
  let rec = null; // latency recording: { prefix, idx, lat }
  // Garbage-collection pauses (perf_hooks 'gc' entries): count, total and longest, and the
  // pauses of the current latency recording (start in hrtime ns, duration ms).
  const gc = { count: 0, totalMs: 0, maxMs: 0 };
  let gcLog = null;
  new PerformanceObserver((list) => {
    const h = nowNs();
    const pNow = performance.now();
    for (const e of list.getEntries()) {
      gc.count++;
      gc.totalMs += e.duration;
      if (e.duration > gc.maxMs) gc.maxMs = e.duration;
      if (gcLog && gcLog.length < 10_000)
        gcLog.push([
          String(h - BigInt(Math.round((pNow - e.startTime) * 1e6))),
          e.duration,
          e.detail?.kind,
        ]);
    }
  }).observe({ type: 'gc' });
  let raw; // the reference dgram socket
  let rawRec = null; // its recording: { run, idx, lat }
  const waiters = new Set(); // { count, resolve }

  const checkSize = () => {
    if (waiters.size === 0) return;
    const size = table.size;
    for (const w of waiters) {
      if (size >= w.count) {
        waiters.delete(w);
        w.resolve({ reached: true, atNs: String(nowNs()), size });
      }
    }
  };

  const host = {
    table,
    applyRemote(changes) {
      for (const c of changes) {
        if (table.apply(c)) clock.observe(c.version);
        if (rec && c.sid.startsWith(rec.prefix)) {
          const at = nowNs();
          const dot = c.sid.indexOf('.', rec.prefix.length);
          rec.idx.push(Number(c.sid.slice(rec.prefix.length, dot)));
          rec.lat.push(Number(at - BigInt(c.sid.slice(dot + 1))) / 1e6);
        }
      }
      checkSize();
    },
  };

  const write = (sid, bytes, i) => {
    const now = Date.now();
    const change = {
      op: 'set',
      sid,
      data: sessionJson(bytes, i, now),
      expiresAt: now + EXPIRES_MS,
      version: clock.tick(),
    };
    table.apply(change);
    transport.publish(change);
  };

  const cpuMs = () => {
    const c = process.cpuUsage();
    return (c.user + c.system) / 1000;
  };

  const udpCounters = () => {
    // /proc/net/snmp as this process sees it: its own network namespace's counters.
    const lines = readFileSync('/proc/net/snmp', 'utf8')
      .split('\n')
      .filter((l) => l.startsWith('Udp:'));
    if (lines.length < 2) return {};
    const keys = lines[0].split(/\s+/).slice(1);
    const vals = lines[1].split(/\s+/).slice(1).map(Number);
    return Object.fromEntries(keys.map((k, i) => [k, vals[i]]));
  };

  const memory = () => ({
    rss: process.memoryUsage.rss(),
    maxRss: process.resourceUsage().maxRSS * 1024,
    heapUsed: process.memoryUsage().heapUsed,
  });

  const commands = {
    init({ ipv4, secret }) {
      const options = resolveMulticastOptions({
        secret: Buffer.from(secret, 'base64'),
        ipv4,
        logger: {
          info() {},
          warn: (m) => {
            if (warnings.length < 50) warnings.push(m);
            process.stderr.write(`[${ipv4}] ${m}\n`);
          },
          error: (m) => {
            if (warnings.length < 50) warnings.push(m);
            process.stderr.write(`[${ipv4}] ERROR ${m}\n`);
          },
        },
      });
      transport = new MulticastTransport(options, host);
      return memory();
    },
    fill({ count, bytes, prefix }) {
      const t0 = nowNs();
      for (let i = 0; i < count; i++) {
        const now = Date.now();
        table.apply({
          op: 'set',
          sid: sidOf(prefix, i),
          data: sessionJson(bytes, i, now),
          expiresAt: now + EXPIRES_MS,
          version: clock.tick(),
        });
      }
      return { ms: Number(nowNs() - t0) / 1e6, size: table.size, digest: table.digest };
    },
    async start() {
      const before = memory();
      const t0 = nowNs();
      await transport.start();
      const ms = Number(nowNs() - t0) / 1e6;
      checkSize();
      return {
        ms,
        before,
        after: memory(),
        size: table.size,
        digest: table.digest,
        state: transport.stats().state,
      };
    },
    async paced({ prefix, rate, count, bytes }) {
      const cpu0 = cpuMs();
      const { sent, seconds } = await pace(
        rate,
        count,
        (i) => write(`${prefix}${i}.${nowNs()}`, bytes, i),
        checkSize,
      );
      return { sent, seconds, cpuMs: cpuMs() - cpu0 };
    },
    async burst({ prefix, count, bytes, perTurn }) {
      const cpu0 = cpuMs();
      const startNs = nowNs();
      for (let i = 0; i < count; ) {
        const end = Math.min(count, i + perTurn);
        for (; i < end; i++) write(sidOf(prefix, i), bytes, i);
        checkSize();
        await turn();
      }
      const endNs = nowNs();
      return { startNs: String(startNs), endNs: String(endNs), cpuMs: cpuMs() - cpu0 };
    },
    record({ prefix }) {
      rec = { prefix, idx: [], lat: [] };
      gcLog = [];
      return {};
    },
    // Reference: plain dgram multicast on another group and port, no transport (no sealing, no
    // batching, no table): the platform's own write-to-receive path.
    rawOpen({ ipv4 }) {
      return new Promise((resolve, reject) => {
        const sock = dgram.createSocket({ type: 'udp4', reuseAddr: true });
        sock.once('error', reject);
        sock.bind(RAW_PORT, '0.0.0.0', () => {
          sock.addMembership(RAW_GROUP, ipv4);
          sock.setMulticastInterface(ipv4);
          sock.setMulticastLoopback(false);
          sock.on('message', (buf) => {
            if (!rawRec || buf.length < 16 || buf.readUInt32BE(12) !== rawRec.run) return;
            const at = nowNs();
            rawRec.idx.push(buf.readUInt32BE(8));
            rawRec.lat.push(Number(at - buf.readBigUInt64BE(0)) / 1e6);
          });
          raw = sock;
          resolve({});
        });
      });
    },
    rawRecord({ run }) {
      rawRec = { run, idx: [], lat: [] };
      return {};
    },
    rawCollect() {
      const r = rawRec;
      rawRec = null;
      return r ? { idx: r.idx, lat: r.lat } : { idx: [], lat: [] };
    },
    rawPaced({ run, rate, count, bytes }) {
      return pace(rate, count, (i) => {
        const buf = Buffer.alloc(bytes, 120);
        buf.writeBigUInt64BE(nowNs(), 0);
        buf.writeUInt32BE(i, 8);
        buf.writeUInt32BE(run, 12);
        raw.send(buf, RAW_PORT, RAW_GROUP);
      });
    },
    collect() {
      const r = rec;
      rec = null;
      const g = gcLog ?? [];
      gcLog = null;
      return { idx: r?.idx ?? [], lat: r?.lat ?? [], gc: g };
    },
    waitSize({ count, timeoutMs }) {
      return new Promise((resolve) => {
        const w = { count, resolve };
        const timer = setTimeout(() => {
          waiters.delete(w);
          resolve({ reached: false, atNs: String(nowNs()), size: table.size });
        }, timeoutMs);
        w.resolve = (r) => {
          clearTimeout(timer);
          resolve(r);
        };
        waiters.add(w);
        checkSize();
      });
    },
    digest() {
      return { digest: table.digest, size: table.size };
    },
    stats() {
      const s = transport.stats();
      return {
        ...s,
        peers: s.peers.length,
        udp: udpCounters(),
        cpuMs: cpuMs(),
        gc: { ...gc },
        ...memory(),
        warnings: [...warnings],
      };
    },
    async close() {
      raw?.close();
      await transport?.close();
      return {};
    },
  };

  const reply = (msg) =>
    new Promise((resolve) => process.stdout.write(`${JSON.stringify(msg)}\n`, resolve));
  process.on('uncaughtException', (err) => {
    process.stderr.write(`agent crashed: ${err.stack}\n`);
    process.exit(1);
  });
  const rl = readline.createInterface({ input: process.stdin });
  rl.on('line', async (line) => {
    let msg;
    try {
      msg = JSON.parse(line);
    } catch {
      return;
    }
    const fn = commands[msg.cmd];
    try {
      if (!fn) throw new Error(`unknown command ${msg.cmd}`);
      const result = await fn(msg.args ?? {});
      await reply({ id: msg.id, ok: true, result });
      if (msg.cmd === 'close') process.exit(0);
    } catch (err) {
      await reply({ id: msg.id, ok: false, error: err?.stack ?? String(err) });
    }
  });
  // The bench went away: nothing else will tell this process to stop.
  rl.on('close', () => process.exit(0));
  await reply({ ready: true, pid: process.pid });
}

// =============================================================================================
// Bench (coordinator).

if (process.argv[2] === '--agent') {
  await agentMain();
} else {
  await benchMain();
}

async function benchMain() {
  const netns = await import('./netns.mjs');
  if (!netns.netnsAvailable()) {
    console.log('skipped: needs root and ip netns');
    process.exit(0);
  }
  if (!existsSync(path.join(distDir, 'transports', 'multicast', 'transport.js'))) {
    console.error(
      'dist/replication/transports/multicast/transport.js is missing: run `npm run build` first.',
    );
    process.exit(2);
  }
  const lib = await import('./lib.mjs');
  await runBench(lib, netns);
}

async function runBench(lib, netns) {
  const { intEnv, intListEnv, median, fmtInt, dist, f1, f2, fmtMs } = lib;
  const QUICK = process.argv.includes('--quick');
  const q = (full, quick) => (QUICK ? quick : full);
  const ROUNDS = intEnv('BENCH_ROUNDS', q(2, 1));
  const RATES = intListEnv('BENCH_RATES', '200,1000');
  const LAT_SECONDS = intEnv('BENCH_LAT_SECONDS', q(10, 2));
  const LAT_WARMUP = intEnv('BENCH_LAT_WARMUP', 1, 0);
  const COUNT = intEnv('BENCH_COUNT', q(300, 60), 10);
  const COUNT_RATE = 100;
  const TP_WRITES = intEnv('BENCH_TP_WRITES', q(20_000, 2_000));
  const TP_REPS = intEnv('BENCH_TP_REPS', q(3, 1));
  const BATCH = intEnv('BENCH_BATCH', 16);
  const TP_BATCHES = intListEnv('BENCH_TP_BATCHES', '1,16,64');
  const JOIN_SESSIONS = intEnv('BENCH_JOIN_SESSIONS', q(100_000, 20_000));
  const JOIN_REPS = intEnv('BENCH_JOIN_REPS', q(3, 1));
  const SESSION_BYTES = intEnv('BENCH_SESSION_BYTES', 1024, 100);
  const WRITE = (process.env.BENCH_WRITE ?? q('1', '0')) !== '0';
  const FOREIGN_MAX = Number(process.env.BENCH_FOREIGN_MAX || 0.2);
  const MAX_ATTEMPTS = intEnv('BENCH_MAX_ATTEMPTS', 2);
  const QUIET_WAIT_S = intEnv('BENCH_QUIET_WAIT', q(30, 5), 0);
  const HOSTS = 3;
  // BENCH_ONLY (trial runs): a comma-separated subset of latency, counts, writes, join.
  const ONLY = process.env.BENCH_ONLY
    ? process.env.BENCH_ONLY.split(',').map((x) => x.trim())
    : null;
  const want = (k) => !ONLY || ONLY.includes(k);
  const COUNT_SIZES = [100, SESSION_BYTES, 16_384];
  const secret = randomBytes(32).toString('base64');
  const { encodeChange } = await distImport('transports/multicast/codec.js');
  // Encoded size of a change carrying a session of `bytes` of JSON (what the transport sends).
  const enc = (bytes) => {
    const now = Date.now();
    return encodeChange({
      op: 'set',
      sid: sidOf('x', 1),
      data: sessionJson(bytes, 1, now),
      expiresAt: now + EXPIRES_MS,
      version: { t: now, c: 0, n: '0123456789abcdef' },
    }).length;
  };
  // The datagram a 1 KB write travels in: envelope 53, data header 7, piece header 10.
  const rawBytes = enc(SESSION_BYTES) + 70;

  // ---- agents ---------------------------------------------------------------------------------

  const agents = new Set();
  class Agent {
    constructor(lan, index) {
      this.host = lan.hosts[index];
      this.label = `h${index + 1}`;
      this.nextId = 1;
      this.pending = new Map();
      this.stderr = '';
      this.exited = false;
      this.child = lan.exec(index, process.execPath, [thisFile, '--agent'], {
        cwd: rootDir,
        stdio: ['pipe', 'pipe', 'pipe'],
      });
      this.pid = this.child.pid;
      agents.add(this);
      this.child.stderr.setEncoding('utf8');
      this.child.stderr.on('data', (d) => {
        this.stderr = (this.stderr + d).slice(-4000);
      });
      this.ready = new Promise((resolve, reject) => {
        this.readyResolve = resolve;
        this.readyReject = reject;
      });
      const rl = readline.createInterface({ input: this.child.stdout });
      rl.on('line', (line) => {
        let msg;
        try {
          msg = JSON.parse(line);
        } catch {
          return;
        }
        if (msg.ready) {
          this.readyResolve();
          return;
        }
        const p = this.pending.get(msg.id);
        if (!p) return;
        this.pending.delete(msg.id);
        clearTimeout(p.timer);
        if (msg.ok) p.resolve(msg.result);
        else p.reject(new Error(`${this.label} ${p.cmd}: ${msg.error}`));
      });
      this.child.on('exit', (code, signal) => {
        this.exited = true;
        agents.delete(this);
        const err = new Error(
          `agent ${this.label} exited (code ${code}, signal ${signal}); stderr: ${this.stderr}`,
        );
        this.readyReject(err);
        for (const p of this.pending.values()) {
          clearTimeout(p.timer);
          p.reject(err);
        }
        this.pending.clear();
      });
      this.ready.catch(() => {});
    }
    call(cmd, args = {}, timeoutMs = 30_000) {
      if (this.exited) return Promise.reject(new Error(`agent ${this.label} is gone`));
      const id = this.nextId++;
      return new Promise((resolve, reject) => {
        const timer = setTimeout(() => {
          this.pending.delete(id);
          reject(new Error(`${this.label} ${cmd}: no answer within ${timeoutMs} ms`));
        }, timeoutMs);
        this.pending.set(id, { resolve, reject, timer, cmd });
        this.child.stdin.write(`${JSON.stringify({ id, cmd, args })}\n`);
      });
    }
    async close() {
      if (this.exited) return;
      const gone = new Promise((r) => this.child.once('exit', r));
      try {
        await this.call('close', {}, 10_000);
      } catch {}
      const t = setTimeout(() => this.kill(), 5000);
      await gone;
      clearTimeout(t);
    }
    kill() {
      if (this.exited) return;
      try {
        process.kill(this.pid, 'SIGKILL');
      } catch {}
    }
  }
  const killAgents = () => {
    for (const a of agents) a.kill();
  };
  netns.cleanupOnSignals(killAgents);

  async function startAgent(lan, index) {
    const a = new Agent(lan, index);
    await a.ready;
    a.initMem = await a.call('init', { ipv4: a.host.ipv4, secret });
    return a;
  }

  // Waits until every agent sees all the others (heartbeats), up to 5 s.
  async function waitMesh(list) {
    for (let i = 0; i < 100; i++) {
      const st = await Promise.all(list.map((a) => a.call('stats')));
      if (st.every((s) => s.peers >= list.length - 1 && s.state === 'synced')) return;
      await sleep(50);
    }
    throw new Error('the hosts did not all see each other within 5 s');
  }

  async function startTrio(lan) {
    const list = await Promise.all(Array.from({ length: HOSTS }, (_, i) => startAgent(lan, i)));
    await Promise.all(list.map((a) => a.call('rawOpen', { ipv4: a.host.ipv4 })));
    await list[0].call('start', {}, 30_000);
    await Promise.all(list.slice(1).map((a) => a.call('start', {}, 30_000)));
    await waitMesh(list);
    return list;
  }

  const closeAll = (list) => Promise.all(list.map((a) => a.close()));

  // ---- CPU / foreign load -------------------------------------------------------------------

  // Foreign cores between two lib.cpuSnapshot(0): busy time minus this process and the agents.
  function foreignCores(a, b, list) {
    const secs = Number(b.t - a.t) / 1e9;
    let ours = b.self - a.self;
    for (const ag of list) {
      const k = String(ag.pid);
      ours += (b.others.get(k)?.cpu ?? 0) - (a.others.get(k)?.cpu ?? 0);
    }
    return Math.max(0, (b.busy - a.busy - ours) / lib.CLK_TCK / secs);
  }

  // once(attempt) -> result with .foreign; repeated while disturbed (lib.measureQuietly).
  const quietly = (label, once) =>
    lib.measureQuietly({
      maxAttempts: MAX_ATTEMPTS,
      quietWaitS: QUIET_WAIT_S,
      foreignMax: FOREIGN_MAX,
      foreignOf: (r) => Math.max(r.foreign, r.rawForeign ?? 0),
      once,
      retryNote: (r) =>
        `  ${label}: ${r.foreign.toFixed(2)} cores of foreign load (> ${FOREIGN_MAX}), repeating`,
    });

  // ---- figures ------------------------------------------------------------------------------

  const statDelta = (a, b, key) => (b[key] ?? 0) - (a[key] ?? 0);
  const udpDelta = (a, b, key) => (b.udp?.[key] ?? 0) - (a.udp?.[key] ?? 0);

  // ---- 1. latency ---------------------------------------------------------------------------

  // Per receiver (first arrival per write index >= warm) and "both" (the later of the two).
  function latencyFigures(recs, labels, measured, warm) {
    const seen = recs.map((r) => {
      const m = new Map(); // write index -> latency (ms)
      r.idx.forEach((i, j) => {
        if (i >= warm && !m.has(i)) m.set(i, r.lat[j]);
      });
      return m;
    });
    const receivers = seen.map((m, k) => ({
      host: labels[k],
      ...dist([...m.values()]),
      missing: measured - m.size,
    }));
    const both = [];
    for (const [i, lat] of seen[0]) {
      let worst = lat;
      for (const m of seen.slice(1)) worst = Math.max(worst, m.get(i) ?? Number.NaN);
      if (!Number.isNaN(worst)) both.push(worst);
    }
    return { receivers, both: { ...dist(both), missing: measured - both.length } };
  }

  let rawRun = 0;
  async function latencyRun(trio, rate, round) {
    const [w, ...rs] = trio;
    const labels = rs.map((r) => r.label);
    return quietly(`latency ${rate}/s`, async (attempt) => {
      const prefix = `L${round}-${rate}-${attempt}-`;
      const count = rate * (LAT_WARMUP + LAT_SECONDS);
      const warm = rate * LAT_WARMUP;
      const sizes = await Promise.all(rs.map((r) => r.call('digest')));
      await Promise.all(trio.map((a) => a.call('record', { prefix })));
      const s0 = await Promise.all(trio.map((a) => a.call('stats')));
      const c0 = lib.cpuSnapshot(0);
      const sent = await w.call('paced', { prefix, rate, count, bytes: SESSION_BYTES }, 120_000);
      const held = await Promise.all(
        rs.map((r, k) => r.call('waitSize', { count: sizes[k].size + count, timeoutMs: 5000 })),
      );
      const c1 = lib.cpuSnapshot(0);
      const s1 = await Promise.all(trio.map((a) => a.call('stats')));
      const [wRec, ...recs] = await Promise.all(trio.map((a) => a.call('collect')));
      const mesh = latencyFigures(recs, labels, count - warm, warm);
      // Reference: plain dgram datagrams of the same size at the same rate.
      const run = ++rawRun;
      await Promise.all(rs.map((r) => r.call('rawRecord', { run })));
      const c2 = lib.cpuSnapshot(0);
      const rawSent = await w.call('rawPaced', { run, rate, count, bytes: rawBytes }, 120_000);
      await sleep(200);
      const c3 = lib.cpuSnapshot(0);
      const rawRecs = await Promise.all(rs.map((r) => r.call('rawCollect')));
      const rawFig = latencyFigures(rawRecs, labels, count - warm, warm);
      return {
        rate,
        round,
        sent: sent.sent,
        sentRate: sent.sent / sent.seconds,
        measured: count - warm,
        ...mesh,
        heldAll: held.every((h) => h.reached),
        raw: { ...rawFig, sentRate: rawSent.sent / rawSent.seconds, bytes: rawBytes },
        writerCpuMs: sent.cpuMs,
        // Per host (writer first): GC pauses during the run, and CPU used (cores).
        gc: [wRec, ...recs].map((r) => ({
          count: r.gc.length,
          major: r.gc.filter((g) => g[2] === 4).length,
          totalMs: r.gc.reduce((t, g) => t + g[1], 0),
          maxMs: Math.max(0, ...r.gc.map((g) => g[1])),
        })),
        cpu: s1.map((x, k) => (x.cpuMs - s0[k].cpuMs) / 1000 / (Number(c1.t - c0.t) / 1e9)),
        nacks: s1.reduce((s, x, k) => s + statDelta(s0[k], x, 'nacksSent'), 0),
        retransmits: statDelta(s0[0], s1[0], 'retransmits'),
        rcvbufErrors: s1.reduce((s, x, k) => s + udpDelta(s0[k], x, 'RcvbufErrors'), 0),
        foreign: foreignCores(c0, c1, trio),
        rawForeign: foreignCores(c2, c3, trio),
      };
    });
  }

  // ---- 2. datagrams per write ----------------------------------------------------------------

  async function countRun(trio, bytes, mode, round) {
    const [w, ...rs] = trio;
    const n = bytes > 4096 && mode === 'burst' ? Math.max(10, Math.round(COUNT / 10)) : COUNT;
    const prefix = `C${round}-${bytes}-${mode}-`;
    const sizes = await Promise.all(rs.map((r) => r.call('digest')));
    const s0 = await Promise.all(trio.map((a) => a.call('stats')));
    const t0 = nowNs();
    if (mode === 'paced')
      await w.call('paced', { prefix, rate: COUNT_RATE, count: n, bytes }, 60_000);
    else await w.call('burst', { prefix, count: n, bytes, perTurn: BATCH }, 60_000);
    const held = await Promise.all(
      rs.map((r, k) => r.call('waitSize', { count: sizes[k].size + n, timeoutMs: 10_000 })),
    );
    const seconds = Number(nowNs() - t0) / 1e9;
    const s1 = await Promise.all(trio.map((a) => a.call('stats')));
    const d = (key) => statDelta(s0[0], s1[0], key);
    return {
      bytes,
      mode,
      round,
      writes: n,
      seconds,
      changesSent: d('changesSent'),
      dataSent: d('dataSent'),
      datagramsSent: d('datagramsSent'),
      bytesSent: d('bytesSent'),
      retransmits: d('retransmits'),
      nacks: s1.reduce((s, x, k) => s + statDelta(s0[k], x, 'nacksSent'), 0),
      heldAll: held.every((h) => h.reached),
    };
  }

  // ---- 3. replicated writes/s -----------------------------------------------------------------

  async function throughputRun(lan, round, rep, batch) {
    return quietly(`writes/s batch ${batch} rep ${rep}`, async (attempt) => {
      const trio = await startTrio(lan);
      try {
        const sizes = await Promise.all(trio.map((a) => a.call('digest')));
        const base = sizes[0].size;
        const target = base + HOSTS * TP_WRITES;
        const s0 = await Promise.all(trio.map((a) => a.call('stats')));
        const c0 = lib.cpuSnapshot(0);
        const timeoutMs = 120_000;
        const waits = trio.map((a) =>
          a.call('waitSize', { count: target, timeoutMs }, timeoutMs + 10_000),
        );
        const bursts = trio.map((a, k) =>
          a.call(
            'burst',
            {
              prefix: `T${round}-${rep}-${attempt}-${k}-`,
              count: TP_WRITES,
              bytes: SESSION_BYTES,
              perTurn: batch,
            },
            timeoutMs,
          ),
        );
        const [b, held] = await Promise.all([Promise.all(bursts), Promise.all(waits)]);
        const c1 = lib.cpuSnapshot(0);
        const t0 = b.map((x) => BigInt(x.startNs)).reduce((m, x) => (x < m ? x : m));
        const tEnd = held.map((x) => BigInt(x.atNs)).reduce((m, x) => (x > m ? x : m));
        const seconds = Number(tEnd - t0) / 1e9;
        // Digests: equal once every host holds every write; polled up to 10 s.
        let digests = [];
        let converged = false;
        const d0 = Date.now();
        while (Date.now() - d0 < 10_000) {
          digests = await Promise.all(trio.map((a) => a.call('digest')));
          if (digests.every((x) => x.digest === digests[0].digest && x.size === target)) {
            converged = true;
            break;
          }
          await sleep(50);
        }
        const s1 = await Promise.all(trio.map((a) => a.call('stats')));
        const sum = (key) => s1.reduce((s, x, k) => s + statDelta(s0[k], x, key), 0);
        return {
          round,
          rep,
          batch,
          writes: HOSTS * TP_WRITES,
          allHeld: held.every((h) => h.reached),
          seconds,
          writesPerS: (HOSTS * TP_WRITES) / seconds,
          localSeconds: b.map((x) => Number(BigInt(x.endNs) - BigInt(x.startNs)) / 1e9),
          heldSeconds: held.map((x) => Number(BigInt(x.atNs) - t0) / 1e9),
          sizes: digests.map((x) => x.size),
          converged,
          convergeMs: Date.now() - d0,
          nacksSent: sum('nacksSent'),
          retransmits: sum('retransmits'),
          transfers: sum('transfers'),
          transferFailures: sum('transferFailures'),
          overflow: sum('overflow'),
          duplicates: sum('duplicates'),
          dataSent: sum('dataSent'),
          datagramsSent: sum('datagramsSent'),
          rcvbufErrors: s1.reduce((s, x, k) => s + udpDelta(s0[k], x, 'RcvbufErrors'), 0),
          cpuS: s1.reduce((s, x, k) => s + (x.cpuMs - s0[k].cpuMs), 0) / 1000,
          warnings: s1.flatMap((x, k) => x.warnings.slice(s0[k].warnings.length)),
          foreign: foreignCores(c0, c1, trio),
        };
      } finally {
        await closeAll(trio);
      }
    });
  }

  // ---- 4. join --------------------------------------------------------------------------------

  async function joinRuns(lan, round) {
    const greeter = await startAgent(lan, 0);
    try {
      const fill = await greeter.call(
        'fill',
        { count: JOIN_SESSIONS, bytes: SESSION_BYTES, prefix: `J${round}-` },
        120_000,
      );
      await greeter.call('start', {}, 30_000);
      const gStats = await greeter.call('stats');
      const reps = [];
      for (let rep = 1; rep <= JOIN_REPS; rep++) {
        const r = await quietly(`join rep ${rep}`, async () => {
          const j = await startAgent(lan, 1);
          try {
            const c0 = lib.cpuSnapshot(0);
            const s = await j.call('start', {}, 60_000);
            const c1 = lib.cpuSnapshot(0);
            const st = await j.call('stats');
            return {
              round,
              rep,
              ms: s.ms,
              size: s.size,
              digestEqual: s.digest === fill.digest,
              sizeEqual: s.size === fill.size,
              state: s.state,
              rssBefore: s.before.rss,
              maxRss: s.after.maxRss,
              heapUsed: s.after.heapUsed,
              transfers: st.transfers,
              transferFailures: st.transferFailures,
              warnings: st.warnings,
              foreign: foreignCores(c0, c1, [j, greeter]),
            };
          } finally {
            await j.close();
          }
        });
        reps.push(r);
        console.log(
          `  join ${rep}: ${r.ms.toFixed(0)} ms, ${fmtInt(r.size)} sessions, digest ${r.digestEqual ? 'equal' : 'DIFFERENT'}, peak RSS ${mib(r.maxRss)} MiB (before start ${mib(r.rssBefore)}), foreign ${r.foreign.toFixed(2)}`,
        );
      }
      const gAfter = await greeter.call('stats');
      return {
        round,
        fillMs: fill.ms,
        greeterRss: gStats.rss,
        greeterMaxRss: gAfter.maxRss,
        served: gAfter.served,
        reps,
      };
    } finally {
      await greeter.close();
    }
  }

  const mib = (b) => (b / 2 ** 20).toFixed(0);

  // ---- run ------------------------------------------------------------------------------------

  const startedAt = new Date();
  const sysctl = (k) => {
    try {
      return readFileSync(`/proc/sys/${k.replaceAll('.', '/')}`, 'utf8').trim();
    } catch {
      return 'n/a';
    }
  };
  const info = {
    ...lib.machine(),
    rmemMax: sysctl('net.core.rmem_max'),
    wmemMax: sysctl('net.core.wmem_max'),
    commit: lib.gitCommit(),
    distBuilt: lib.distStamp(),
  };
  const stale = netns.removeStale();
  if (stale.length) console.log(`removed stale namespaces: ${stale.join(', ')}`);
  console.log(
    `multicast bench${QUICK ? ' (--quick)' : ''}: ${ROUNDS} round(s), ${HOSTS} hosts, latency ${LAT_WARMUP}+${LAT_SECONDS} s at ${RATES.join(', ')} writes/s, writes/s ${HOSTS} x ${fmtInt(TP_WRITES)} x ${TP_REPS} at ${TP_BATCHES.join(', ')} per turn, join ${fmtInt(JOIN_SESSIONS)} x ${JOIN_REPS}, ${SESSION_BYTES} B sessions, batch ${BATCH}`,
  );
  console.log(`machine: ${info.cpus} x ${info.model}, Node ${info.node}, commit ${info.commit}`);

  const latency = [];
  const counts = [];
  const throughput = [];
  const joins = [];
  const lan = netns.createLan({ hosts: HOSTS });
  try {
    for (let round = 1; round <= ROUNDS; round++) {
      console.log(`round ${round}`);
      const trio = want('latency') || want('counts') ? await startTrio(lan) : [];
      try {
        for (const rate of want('latency') ? RATES : []) {
          const r = await latencyRun(trio, rate, round);
          latency.push(r);
          const fig = (x) =>
            `${x.host} p50 ${fmtMs(x.p50)} p99 ${fmtMs(x.p99)} max ${fmtMs(x.max)} ms (${x.n}, missing ${x.missing})`;
          console.log(
            `  latency ${rate}/s (sent ${fmtInt(r.sentRate)}/s): ${r.receivers.map(fig).join('; ')}; both p99 ${fmtMs(r.both.p99)}; nacks ${r.nacks}, foreign ${r.foreign.toFixed(2)}`,
          );
          console.log(
            `    plain dgram: ${r.raw.receivers.map(fig).join('; ')}; both p99 ${fmtMs(r.raw.both.p99)}; foreign ${r.rawForeign.toFixed(2)}`,
          );
        }
        for (const bytes of want('counts') ? COUNT_SIZES : []) {
          for (const mode of ['paced', 'burst']) {
            const r = await countRun(trio, bytes, mode, round);
            counts.push(r);
            console.log(
              `  ${bytes} B ${mode}: ${r.writes} writes, ${f2(r.dataSent / r.writes)} data datagrams/write, ${f2(r.datagramsSent / r.writes)} all, ${fmtInt(r.bytesSent / r.writes)} B/write, retransmits ${r.retransmits}${r.heldAll ? '' : ' NOT ALL RECEIVED'}`,
            );
          }
        }
      } finally {
        await closeAll(trio);
      }
      for (const batch of want('writes') ? TP_BATCHES : [])
        for (let rep = 1; rep <= TP_REPS; rep++) {
          const r = await throughputRun(lan, round, rep, batch);
          throughput.push(r);
          console.log(
            `  writes/s batch ${batch} rep ${rep}: ${fmtInt(r.writesPerS)} (${f2(r.seconds)} s, local ${r.localSeconds.map(f2).join('/')} s, held ${r.heldSeconds.map(f2).join('/')} s), converged ${r.converged}, nacks ${r.nacksSent}, retransmits ${r.retransmits}, transfers ${r.transfers} (failed ${r.transferFailures}), duplicates ${r.duplicates}, overflow ${r.overflow}, data ${r.dataSent}, rcvbuf drops ${r.rcvbufErrors}, cpu ${f1(r.cpuS)} s, foreign ${r.foreign.toFixed(2)}`,
          );
        }
      if (want('join')) joins.push(await joinRuns(lan, round));
    }
  } finally {
    killAgents();
    lan.destroy();
  }
  const elapsedS = (Date.now() - startedAt.getTime()) / 1000;
  const distNow = lib.distStamp();
  if (distNow !== info.distBuilt) {
    info.distChanged = distNow;
    console.log(`WARNING: dist/ was rebuilt during the run (${info.distBuilt} -> ${distNow})`);
  }
  if (ONLY) {
    console.log(`BENCH_ONLY=${ONLY.join(',')}: partial run, bench/RESULTS.md not written`);
    process.exit(0);
  }

  // ---- report ---------------------------------------------------------------------------------

  const target = RATES[0];
  const lat0 = latency.filter((r) => r.rate === target);
  const worstP99 = (r) => Math.max(...r.receivers.map((x) => x.p99));
  const joinMs = joins.flatMap((j) => j.reps.map((r) => r.ms));
  const joinMedians = joins.map((j) => median(j.reps.map((r) => r.ms)));
  const tpOf = (batch) => throughput.filter((r) => r.batch === batch);
  const tpMedian = (batch, fn) => median(tpOf(batch).map(fn));
  const summary = {
    date: startedAt.toISOString(),
    commit: info.commit,
    rounds: ROUNDS,
    p99: lat0.map(worstP99),
    p50: lat0.map((r) => Math.max(...r.receivers.map((x) => x.p50))),
    joinMs: joinMedians,
    writesPerS: Object.fromEntries(
      TP_BATCHES.map((b) => [b, tpOf(b).map((r) => Math.round(r.writesPerS))]),
    ),
  };
  const perRound = (xs, fmt) => xs.map(fmt).join(', ');
  const range = (xs, fmt) => {
    const lo = fmt(Math.min(...xs));
    const hi = fmt(Math.max(...xs));
    return lo === hi ? lo : `${lo} to ${hi}`;
  };

  const L = [];
  const p = (...xs) => L.push(...xs);
  p('<!-- BEGIN multicast (written by bench/multicast.mjs; do not edit by hand) -->');
  p('## Multicast replication between hosts (issue 5)', '');
  p(
    `Run: ${startedAt.toISOString()} (${elapsedS.toFixed(0)} s), \`node bench/multicast.mjs\`, sticky-mesh commit ${info.commit}; measured as built in dist/ (newest file ${info.distBuilt})${info.distChanged ? `; **dist/ was rebuilt during the run (newest file ${info.distChanged} at the end), so the figures may mix two builds**` : ''}.`,
    '',
  );
  p(
    `Machine: ${info.cpus} CPUs (os.cpus), ${info.model}, ${info.memGiB} GiB; Node ${info.node}; ${info.os}; net.core.rmem_max ${info.rmemMax}, wmem_max ${info.wmemMax}. The ${HOSTS} "hosts" are network namespaces on this one kernel, each with a veth pair (eth0, 10.78.0.x/24, MTU 1500) to a Linux bridge (mcast_snooping 0) in a fourth namespace (\`bench/netns.mjs\`); nothing in the root namespace.`,
    '',
  );
  p('Method (details in the header of `bench/multicast.mjs`):', '');
  p(
    `- One agent process per host namespace (\`ip netns exec\`), driven over stdin/stdout: a SessionTable, a Clock and \`new MulticastTransport(resolveMulticastOptions({ secret, ipv4 }), host)\` from dist/ with every other option at its default (group 228.0.0.5:4000, sealed: AES-256-GCM, random 32-byte secret per run; heartbeat 500 ms, join timeout 1 s). A write is what ReplicatedStore.set does (clock.tick(), table.apply, transport.publish); received changes are applied by host.applyRemote. Sessions: express-session-like JSON of ${SESSION_BYTES} bytes (unless said otherwise), 32-character ids. ${ROUNDS} round(s), fresh agent processes for each measurement group; figures per round.`,
  );
  p(
    `- **Latency**: host 1 writes at ${RATES.map(fmtInt).join(' and ')} writes/s (open loop, 1 ms timer, ${LAT_WARMUP} s warm-up not counted + ${LAT_SECONDS} s measured) on freshly started hosts; the send time (process.hrtime.bigint() before the write) travels in the session id, hosts 2 and 3 take hrtime again right after applying the change in applyRemote. hrtime is CLOCK_MONOTONIC, one clock for all processes of the kernel, so receive - send is write-to-visible across "hosts" with no clock offset. Garbage-collection pauses of every host during the run from perf_hooks 'gc' entries.`,
  );
  p(
    `- **Join**: host 1 holds ${fmtInt(JOIN_SESSIONS)} sessions of ${SESSION_BYTES} B (applied to its table before it starts alone); a fresh process on host 2 calls start(): time until it resolves (bind, join datagram, greeting, full state over TCP in sealed 256 KB frames, applied); then its table is compared with host 1's (size, digest). ${JOIN_REPS} joiners one after another per round; peak RSS = the joiner's process.resourceUsage().maxRSS.`,
  );
  p(
    `- **Replicated writes/s**: 3 fresh hosts, synced and seeing each other, all write ${fmtInt(TP_WRITES)} sessions each at once, as fast as they can, in batches of ${TP_BATCHES.join(', ')} writes per event-loop turn (the next batch after setImmediate, so received datagrams are read between batches; a busy server's set() calls arrive one or many per turn). Time from the first write on any host until the last host holds all ${fmtInt(HOSTS * TP_WRITES)} (table size checked on every applyRemote); writes/s = ${fmtInt(HOSTS * TP_WRITES)} / that time; digests then compared. Loss repair from stats() (summed over hosts) and the namespaces' kernel UDP RcvbufErrors (datagrams dropped on a full receive buffer; the transport asks for 4 MiB, capped by rmem_max). ${TP_REPS} repetitions per batch size and round, each on fresh processes.`,
  );
  p(
    `- **Datagrams per write**: host 1's stats() before and after writing ${COUNT} sessions (16 KB bursts: ${Math.max(10, Math.round(COUNT / 10))}) of 100 B, ${SESSION_BYTES} B and 16 KB JSON, *paced* (${COUNT_RATE}/s, each write alone in its turn) and in *bursts* (${BATCH} per turn), until both receivers hold them. "all" counts every datagram host 1 sent in that window (heartbeats every 500 ms and retransmits included); bytes are whole datagrams (envelope: 28 B header, 16 B GCM tag, 9 B sealed header) as handed to the socket, without IP/UDP headers (28 B more each).`,
  );
  p(
    `- Background load: before each latency, writes/s and join run the bench waits (up to ${QUIET_WAIT_S} s) until other processes use <= ${FOREIGN_MAX} cores, and repeats a run with more foreign load than that (up to ${MAX_ATTEMPTS} attempts, keeping the least disturbed); the foreign load of each kept run is in the tables.`,
    '',
  );

  // Targets.
  const allJoinsOk = joins.every((j) => j.reps.every((r) => r.digestEqual && r.sizeEqual));
  const yes = (ok) => (ok ? 'yes' : '**no**');
  p('### Targets', '');
  p('| figure | target | result | met |', '|---|---|---|---|');
  p(
    `| write-to-visible p99 at ${fmtInt(target)} writes/s, worse receiver | <= 5 ms | ${perRound(lat0.map(worstP99), fmtMs)} ms (per round) | ${yes(lat0.every((r) => worstP99(r) <= 5))} |`,
  );
  p(
    `| join: ${fmtInt(JOIN_SESSIONS)} sessions of ${SESSION_BYTES} B transferred, start() to resolved | <= 3 s | median ${perRound(joinMedians, (x) => `${fmtInt(x)} ms`)} (per round; all joiners ${range(joinMs, (x) => fmtInt(x))} ms); ${allJoinsOk ? 'every joiner held all sessions, digest equal' : '**a joiner did not hold every session**'} | ${yes(joinMs.every((x) => x <= 3000) && allJoinsOk)} |`,
  );
  for (const b of TP_BATCHES)
    p(
      `| replicated writes/s, 3 hosts writing (${b} per turn), until every host holds all | none set | median ${fmtInt(tpMedian(b, (r) => r.writesPerS))} writes/s (runs: ${range(
        tpOf(b).map((r) => r.writesPerS),
        fmtInt,
      )}); ${tpOf(b).every((r) => r.converged) ? 'all converged' : '**not all converged**'}, median ${fmtInt(tpMedian(b, (r) => r.retransmits))} retransmits, ${fmtInt(tpMedian(b, (r) => r.transfers))} transfers | n/a |`,
    );
  p('');

  // Latency.
  p('### Write-to-visible latency (host 1 writes, hosts 2 and 3 apply)', '');
  p(
    `ms from before the write on host 1 to after the apply on the receiver; "both" = the later of the two receivers per write. Reference rows: plain Node dgram datagrams of the same size (${fmtInt(rawBytes)} B) sent at the same rate from host 1 to the same hosts on another group (no sealing, no batching, no table): the platform's own send-to-receive latency on this machine, measured right after the sticky-mesh run.`,
    '',
    '| writes/s (sent) | round | path | receiver | samples (missing) | p50 | p99 | max | NACKs | kernel drops | foreign CPU |',
    '|---|---:|---|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const r of latency) {
    const rows = [
      ...r.receivers.map((x) => ['sticky-mesh', x, r.foreign]),
      ['sticky-mesh', { host: 'both', ...r.both }, r.foreign],
      ...r.raw.receivers.map((x) => ['plain dgram', x, r.rawForeign]),
      ['plain dgram', { host: 'both', ...r.raw.both }, r.rawForeign],
    ];
    for (const [kind, x, foreign] of rows) {
      const mesh = kind === 'sticky-mesh';
      p(
        `| ${fmtInt(r.rate)} (${fmtInt(mesh ? r.sentRate : r.raw.sentRate)}) | ${r.round} | ${kind} | ${x.host} | ${fmtInt(x.n)} (${fmtInt(x.missing)}) | ${fmtMs(x.p50)} | ${fmtMs(x.p99)} | ${fmtMs(x.max)} | ${mesh ? r.nacks : ''} | ${mesh ? r.rcvbufErrors : ''} | ${f2(foreign)} |`,
      );
    }
  }
  p(
    '',
    'During the sticky-mesh latency runs: CPU of each host process (cores) and its garbage-collection pauses (count, of which major mark-compact, longest).',
    '',
    '| writes/s | round | CPU h1 / h2 / h3 | GC h1 (writer) | GC h2 | GC h3 |',
    '|---:|---:|---|---|---|---|',
  );
  const fmtGc = (g) => `${g.count} (${g.major} major), longest ${fmtMs(g.maxMs)} ms`;
  for (const r of latency)
    p(
      `| ${fmtInt(r.rate)} | ${r.round} | ${r.cpu.map(f2).join(' / ')} | ${r.gc.map(fmtGc).join(' | ')} |`,
    );
  p('');

  // Join.
  p(`### Join: state transfer of ${fmtInt(JOIN_SESSIONS)} sessions`, '');
  p(
    '| round | joiner | start() to resolved | sessions held | digest | joiner RSS before start | joiner peak RSS | transfers (failed) | foreign CPU |',
    '|---:|---:|---:|---:|---|---:|---:|---:|---:|',
  );
  for (const j of joins)
    for (const r of j.reps)
      p(
        `| ${j.round} | ${r.rep} | ${fmtInt(r.ms)} ms | ${fmtInt(r.size)} | ${r.digestEqual ? 'equal' : '**different**'} | ${mib(r.rssBefore)} MiB | ${mib(r.maxRss)} MiB | ${r.transfers} (${r.transferFailures}) | ${f2(r.foreign)} |`,
      );
  p(
    '',
    `Greeter (host 1): filling its table took ${perRound(
      joins.map((j) => j.fillMs),
      (x) => `${fmtInt(x)} ms`,
    )}; RSS with the sessions ${perRound(joins, (j) => `${mib(j.greeterRss)} MiB`)}, peak ${perRound(joins, (j) => `${mib(j.greeterMaxRss)} MiB`)} (per round); transfers served ${perRound(joins, (j) => String(j.served))}.`,
    '',
  );

  // Throughput.
  p('### Replicated writes/s, 3 hosts writing at once', '');
  p(
    `${fmtInt(HOSTS * TP_WRITES)} writes in all (${fmtInt(TP_WRITES)} per host, ${SESSION_BYTES} B). "local" = how long each host took to make its own writes; "held" = when each host held all ${fmtInt(HOSTS * TP_WRITES)}, from the first write. NACKs, retransmits, duplicates (data datagrams received again), transfers (full state fetches: a receiver more than 8,192 datagrams behind a sender, or out-of-order buffer full) and data datagrams: stats() deltas summed over the 3 hosts; kernel drops: RcvbufErrors summed over the 3 namespaces.`,
    '',
    '| per turn | round | rep | writes/s | time | local (h1/h2/h3) | held (h1/h2/h3) | digests equal | data datagrams | NACKs sent | retransmits | duplicates | transfers (failed) | kernel drops | CPU s (3 hosts) | foreign CPU |',
    '|---:|---:|---:|---:|---:|---|---|---|---:|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const b of TP_BATCHES)
    for (const r of tpOf(b))
      p(
        `| ${b} | ${r.round} | ${r.rep} | ${fmtInt(r.writesPerS)} | ${f2(r.seconds)} s | ${r.localSeconds.map(f2).join(' / ')} s | ${r.heldSeconds.map(f2).join(' / ')} s | ${r.converged ? `yes (${fmtInt(r.sizes[0])})` : `**no** (${r.sizes.map(fmtInt).join(', ')})`} | ${fmtInt(r.dataSent)} | ${fmtInt(r.nacksSent)} | ${fmtInt(r.retransmits)} | ${fmtInt(r.duplicates)} | ${r.transfers} (${r.transferFailures}) | ${fmtInt(r.rcvbufErrors)} | ${f1(r.cpuS)} | ${f2(r.foreign)} |`,
      );
  p('');
  const tpWarn = throughput.flatMap((r) => r.warnings);
  if (tpWarn.length)
    p(
      `Warnings logged by the transports during these runs: ${tpWarn.length}; distinct ones (ids elided): ${[
        ...new Set(
          tpWarn.map((w) =>
            w.replace(/[0-9a-f]{16}/g, '<id>').replace(/\d+\.\d+\.\d+\.\d+:\d+/g, '<addr>'),
          ),
        ),
      ]
        .slice(0, 4)
        .map((w) => `"${w}"`)
        .join('; ')}.`,
      '',
    );

  // Counts.
  p('### Datagrams and bytes per write (host 1 writing, 2 receivers)', '');
  p(
    'Per write: data datagrams (dataSent / writes), all datagrams (datagramsSent / writes: heartbeats and retransmits included), bytes sent (all datagrams). Values of the rounds, where they differ.',
    '',
    '| session JSON | encoded change | mode | writes | data datagrams / write | all datagrams / write | bytes sent / write | bytes sent / JSON byte | retransmits | NACKs |',
    '|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|',
  );
  for (const bytes of COUNT_SIZES)
    for (const mode of ['paced', 'burst']) {
      const rs = counts.filter((r) => r.bytes === bytes && r.mode === mode);
      const fmtSet = (fn, fmt) => [...new Set(rs.map((r) => fmt(fn(r))))].join(', ');
      p(
        `| ${fmtInt(bytes)} B | ${fmtInt(enc(bytes))} B | ${mode === 'paced' ? `paced ${COUNT_RATE}/s` : `burst ${BATCH}/turn`} | ${fmtSet((r) => r.writes, fmtInt)} | ${fmtSet((r) => r.dataSent / r.writes, f2)} | ${fmtSet((r) => r.datagramsSent / r.writes, f2)} | ${fmtSet((r) => r.bytesSent / r.writes, fmtInt)} | ${fmtSet((r) => r.bytesSent / r.writes / bytes, f2)} | ${fmtSet((r) => r.retransmits, String)} | ${fmtSet((r) => r.nacks, String)} |`,
      );
    }
  const notHeld = counts.filter((r) => !r.heldAll);
  if (notHeld.length)
    p('', `**Not every write reached both receivers in ${notHeld.length} case(s).**`);
  p('');

  // Earlier runs.
  let earlier = [];
  try {
    const doc = readFileSync(lib.resultsFile, 'utf8');
    const m = /<!-- multicast-runs (\[.*?\]) -->/.exec(doc);
    if (m) earlier = JSON.parse(m[1]);
  } catch {}
  const runs = [summary, ...earlier].slice(0, 5);
  const fmtTp = (w) =>
    Array.isArray(w)
      ? w.map(fmtInt).join(', ')
      : Object.entries(w)
          .map(([b, xs]) => `${b}/turn: ${xs.map(fmtInt).join(', ')}`)
          .join('; ');
  p('### Full runs (this one first)', '');
  p(
    `| run | commit | p50 / p99 at ${fmtInt(target)} writes/s, worse receiver, per round (ms) | join median per round (ms) | writes/s per run, by batch size |`,
    '|---|---|---|---|---|',
  );
  for (const r of runs)
    p(
      `| ${r.date} | ${r.commit} | ${r.p50.map((x, i) => `${fmtMs(x)} / ${fmtMs(r.p99[i])}`).join(', ')} | ${r.joinMs.map(fmtInt).join(', ')} | ${fmtTp(r.writesPerS)} |`,
    );
  p('', `<!-- multicast-runs ${JSON.stringify(runs)} -->`, '');

  // Observations.
  p('### Observations (generated from the figures above)', '');
  const obs = [];
  const lat1 = latency.filter((r) => r.rate !== target);
  for (const r of lat1) {
    const meshP99 = r.both.p99;
    const rawP99 = r.raw.both.p99;
    const longest = Math.max(...r.gc.map((g) => g.maxMs));
    obs.push(
      `At ${fmtInt(r.rate)} writes/s (round ${r.round}) p99 on both receivers was ${fmtMs(meshP99)} ms against ${fmtMs(rawP99)} ms for plain datagrams; the longest GC pause of a host in that run was ${fmtMs(longest)} ms (${r.gc.map((g) => g.major).join(' / ')} major GCs on h1 / h2 / h3).`,
    );
  }
  for (const b of TP_BATCHES) {
    const rs = tpOf(b);
    const worst = rs.reduce((m, r) => (r.retransmits > m.retransmits ? r : m), rs[0]);
    if (!worst) continue;
    obs.push(
      `Writes/s with ${b} write(s) per turn: ${range(
        rs.map((r) => r.writesPerS),
        fmtInt,
      )}; kernel drops ${range(
        rs.map((r) => r.rcvbufErrors),
        fmtInt,
      )}, retransmits ${range(
        rs.map((r) => r.retransmits),
        fmtInt,
      )} (at most ${f2(worst.retransmits / worst.writes)} per write, against ${f2(worst.dataSent / worst.writes)} original data datagrams per write), duplicates received ${range(
        rs.map((r) => r.duplicates),
        fmtInt,
      )}, state transfers ${range(
        rs.map((r) => r.transfers),
        String,
      )}${
        rs.some((r) => r.retransmits > r.dataSent)
          ? `; in ${rs.filter((r) => r.retransmits > r.dataSent).length} of ${rs.length} runs the hosts retransmitted more data datagrams than they originally sent`
          : ''
      }.`,
    );
  }
  p(...obs.map((o) => `- ${o}`), '');

  // Caveats.
  p('### Caveats', '');
  p(
    '- All hosts are namespaces on one kernel: the figures measure the software path (Node, the transport, AES-GCM, the kernel UDP/IP stack, veth and bridge), not a real NIC, switch or wire: no serialisation delay, no physical loss, no interrupt coalescing. Real networks add their own latency and loss.',
    `- The 3 host processes (and the bench process) share ${info.cpus} cores, so with 3 hosts busy every process competes for CPU (and for the kernel's packet processing, which runs on the same cores); a real deployment gives each host its own cores. The writes/s figures are bounded by this machine's CPU (see the CPU column: ${info.cpus} cores x the run time is the most there is), not by a network.`,
    '- Loss here comes only from full socket receive buffers (kernel drops), i.e. from receivers falling behind senders; nothing slows a sender down when its receivers fall behind, so "as fast as they can" measures the overload behaviour too, and the figures vary a lot between repetitions.',
    '- Latency runs use hosts that start empty and grow to a few thousand sessions: a long-running replica with a large heap has other GC behaviour. Each write of the latency run is alone in its event-loop turn, so it travels in its own datagram; under load writes batch (datagram table).',
  );
  p('<!-- END multicast -->');
  const text = L.join('\n');

  console.log('\nsummary:');
  console.log(
    `  p99 at ${target}/s (worse receiver): ${perRound(lat0.map(worstP99), fmtMs)} ms (target <= 5 ms)`,
  );
  console.log(
    `  join ${JOIN_SESSIONS}: median ${perRound(joinMedians, fmtInt)} ms (target <= 3000 ms)`,
  );
  for (const b of TP_BATCHES)
    console.log(
      `  writes/s, ${b} per turn: ${tpOf(b)
        .map((r) => fmtInt(r.writesPerS))
        .join(', ')}`,
    );
  if (WRITE) lib.writeResults('multicast', text);
  else console.log('\nbench/RESULTS.md not written (--quick or BENCH_WRITE=0)');
  process.exit(0);
}
