#!/usr/bin/env node
// Where a session-store bench server's CPU goes under one of the session benches' loads: the
// server of bench/sessions.mjs or bench/redis.mjs under the same autocannon mix, every process
// of it profiled (V8 CPU profiler via bench/servers/profile-hook.mjs) over the measured period,
// beside its CPU split from /proc.
//
//   node bench/profile.mjs [--server sessions-sticky-mesh.mjs] [--cycle 1] [--seconds 5]
//                          [--workers 4] [--connections 32] [--top 25] [--dir DIR]
//   node bench/profile.mjs --summarize DIR      (profiles another run left there, e.g.
//                                                BENCH_CPU_PROFILE=DIR node bench/redis.mjs)
//
// --server: a file of bench/servers/ (sessions-sticky-mesh.mjs, sessions-connect-redis.mjs,
// sessions-memorystore.mjs, redis-sticky-mesh.mjs, redis-connect-redis.mjs; the redis-* ones get
// a fresh redis-server of their own, behind bench/servers/delay-relay.mjs when --delay-us is
// above 0, as in bench/redis.mjs: [250]). --cycle: one POST /write in that many requests, the
// others GET /me (1 write-only, 2 write-heavy, 20 read-mostly). The profiles stay in DIR
// (default a new directory under the system's temporary one), one per process; the summary on
// stdout: server CPU per request from /proc (primary, workers), and the profiled self time by
// place (a sticky-mesh module, a package, a Node core module, GC) and by function, for the
// primary and for the workers together. Profiling slows the processes down (sampling every
// 1 ms): the CPU figures of this script are not the bench's.
// Run it under the bench lock like the benches: flock /tmp/sticky-bench.lock node bench/profile.mjs
import { spawn } from 'node:child_process';
import { existsSync, mkdirSync, mkdtempSync, readdirSync, readFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import { parseArgs } from 'node:util';
import { addProfile, newProfileSum, top } from './lib/cpuprofile.mjs';
import * as lib from './lib.mjs';
import { f2, f3, fmtInt, sleep } from './lib.mjs';
import { startRedis } from './servers/redis.mjs';
import { converge, newLoadCounters, runLoad, setupLoad, slotKeys } from './sessions-lib.mjs';

const { values: o } = parseArgs({
  options: {
    server: { type: 'string', default: 'sessions-sticky-mesh.mjs' },
    cycle: { type: 'string', default: '1' },
    seconds: { type: 'string', default: '5' },
    workers: { type: 'string', default: '4' },
    connections: { type: 'string', default: '32' },
    top: { type: 'string', default: '25' },
    'delay-us': { type: 'string', default: '250' },
    dir: { type: 'string' },
    summarize: { type: 'string' },
  },
});
const CYCLE = Number(o.cycle);
const SECONDS = Number(o.seconds);
const WORKERS = Number(o.workers);
const CONNECTIONS = Number(o.connections);
const SEED = 0x5e5510a5;
const dir = o.dir ?? mkdtempSync(path.join(os.tmpdir(), 'sticky-profile-'));
mkdirSync(dir, { recursive: true });
process.env.SESSIONS_SEED = String(SEED);

const cleanups = [];
async function cleanup() {
  while (cleanups.length)
    await cleanups
      .pop()()
      .catch(() => {});
}

async function startRelay(targetPort) {
  const child = spawn(process.execPath, [path.join(lib.benchDir, 'servers', 'delay-relay.mjs')], {
    stdio: ['ignore', 'pipe', 'inherit'],
    env: { ...process.env, TARGET_PORT: String(targetPort), DELAY_US: o['delay-us'] },
  });
  cleanups.push(async () => child.kill('SIGKILL'));
  let out = '';
  child.stdout.setEncoding('utf8');
  return new Promise((resolve, reject) => {
    child.on('exit', (c) => reject(new Error(`delay relay exited (${c})`)));
    child.stdout.on('data', (d) => {
      out += d;
      const m = /port=(\d+)/.exec(out);
      if (m) resolve(Number(m[1]));
    });
  });
}

function summarize(files) {
  const groups = { primary: newProfileSum(), workers: newProfileSum() };
  for (const f of files) {
    const profile = JSON.parse(readFileSync(path.join(dir, f), 'utf8'));
    addProfile(f.startsWith('primary') ? groups.primary : groups.workers, profile);
  }
  return groups;
}

// --summarize DIR: the profiles some other run left in DIR (bench/redis.mjs with
// BENCH_CPU_PROFILE=DIR), by process kind and server port; shares of the sampled busy time only
// (no /proc figures for them here).
function summarizeDir(from) {
  const byGroup = new Map();
  for (const f of readdirSync(from).filter((x) => x.endsWith('.cpuprofile'))) {
    const m = /^(primary|worker)-?\d*-port(\d+)-/.exec(f);
    const group = m
      ? `${m[1] === 'primary' ? 'primary' : 'workers'} of the server on port ${m[2]}`
      : f;
    if (!byGroup.has(group)) byGroup.set(group, newProfileSum());
    addProfile(byGroup.get(group), JSON.parse(readFileSync(path.join(from, f), 'utf8')));
  }
  for (const [group, acc] of [...byGroup].sort()) {
    console.log(`\n${group}: ${fmtInt(acc.total)} ms sampled busy, ${fmtInt(acc.idle)} ms idle`);
    for (const [label, map] of [
      ['by kind', acc.byKind],
      ['by place', acc.byPlace],
      ['by function', acc.byFunction],
    ]) {
      console.log(`  ${label} (self time):`);
      for (const [k, v, share] of top(map, acc.total, label === 'by kind' ? 20 : Number(o.top)))
        console.log(`    ${(share * 100).toFixed(1).padStart(5)}%  ${fmtInt(v)} ms  ${k}`);
    }
  }
}

async function main() {
  if (o.summarize) return summarizeDir(o.summarize);
  if (!existsSync(path.join(lib.benchDir, 'servers', o.server))) throw new Error(`no ${o.server}`);
  const env = { BENCH_CPU_PROFILE: dir };
  if (o.server.startsWith('redis-')) {
    const redis = await startRedis();
    cleanups.push(async () => redis.child.kill('SIGKILL'));
    env.REDIS_PORT = String(Number(o['delay-us']) > 0 ? await startRelay(redis.port) : redis.port);
  }
  const { rendezvous } = await import(pathToFileURL(path.join(lib.rootDir, 'dist', 'hash.js')));
  const keys = slotKeys(rendezvous(SEED, WORKERS), WORKERS, Math.ceil(CONNECTIONS / WORKERS) + 2);
  const port = await lib.findPort(['127.0.0.1']);
  const srv = await lib.startServer({
    file: o.server,
    name: o.server,
    workers: WORKERS,
    port,
    env,
  });
  cleanups.push(() => lib.stopServer(srv));
  await lib.probe(port, { headers: { 'x-forwarded-for': keys[0][0] } });
  const ctx = await setupLoad(port, {
    keys,
    workers: WORKERS,
    connections: CONNECTIONS,
    sessionsPerConn: 8,
  });
  const counters = newLoadCounters();
  await runLoad(ctx, CYCLE, 1, counters); // warm-up
  process.kill(-srv.pgid, 'SIGWINCH'); // profilers on
  await sleep(100);
  counters.active = true;
  const a = lib.cpuSnapshot(srv.pgid);
  const r = await runLoad(ctx, CYCLE, SECONDS, counters);
  const b = lib.cpuSnapshot(srv.pgid);
  counters.active = false;
  process.kill(-srv.pgid, 'SIGWINCH'); // profiles written
  const want = WORKERS + 1;
  for (let i = 0; i < 100 && readdirSync(dir).length < want; i++) await sleep(50);
  const files = readdirSync(dir).filter((f) => f.endsWith('.cpuprofile'));
  if (!o.server.includes('memorystore')) await converge([{ port, keys }]);
  const n = counters.lat.r.length + counters.lat.w.length;
  const rps = n / r.duration;
  const cpu = lib.cpuBetween(a, b);
  console.log(
    `${o.server}, 1 write in ${CYCLE}, ${WORKERS} workers, ${CONNECTIONS} connections, ${SECONDS} s (profiled, so slower than in the benches): ${fmtInt(rps)} req/s; server CPU ${f3((cpu.server * 1000) / rps)} ms/request (primary ${f3((cpu.primary * 1000) / rps)}, workers ${f3(((cpu.server - cpu.primary) * 1000) / rps)}); cores: primary ${f2(cpu.primary)}, workers ${f2(cpu.server - cpu.primary)}, bench ${f2(cpu.client)}, foreign ${f2(cpu.foreign)}`,
  );
  console.log(`profiles (${files.length}): ${dir}`);
  const g = summarize(files);
  const N = Number(o.top);
  // The profiler samples wall time: on an over-committed machine a thread waiting for a core is
  // sampled as busy too. So the profiles give the shares, and /proc the CPU they are shares of.
  const perReq = {
    primary: (cpu.primary * 1000) / rps,
    workers: ((cpu.server - cpu.primary) * 1000) / rps,
  };
  for (const [name, acc] of Object.entries(g)) {
    if (!acc.total) continue;
    const cpuMs = (share) => f3(share * perReq[name]);
    console.log(
      `\n${name}: ${f3(perReq[name])} CPU ms per request (/proc); shares of the profiled busy time (${fmtInt(acc.total)} ms sampled busy, ${fmtInt(acc.idle)} ms idle), and that share of the CPU per request:`,
    );
    for (const [label, map] of [
      ['by kind', acc.byKind],
      ['by place', acc.byPlace],
      ['by function', acc.byFunction],
    ]) {
      console.log(`  ${label} (self time):`);
      for (const [k, , share] of top(map, acc.total, label === 'by kind' ? 20 : N))
        console.log(`    ${(share * 100).toFixed(1).padStart(5)}%  ${cpuMs(share)} ms/req  ${k}`);
    }
  }
}

for (const sig of ['SIGINT', 'SIGTERM'])
  process.on(sig, () => cleanup().then(() => process.exit(130)));
main().then(
  () => cleanup().then(() => process.exit(0)),
  (err) => {
    console.error(err);
    cleanup().then(() => process.exit(1));
  },
);
