#!/usr/bin/env node
// The raw replication path (issue 18): how many session writes a cluster's workers replicate to
// each other per second, and how soon a write is visible on every other worker, without HTTP in
// the measured loop.
//
//   node bench/replication.mjs    (needs dist/: `npm run build` once)
//
// Server: bench/servers/replication-raw.mjs (a ReplicatedStore in every worker of
// sticky({ num, proxy: true, seed })); the bench reaches each worker with an X-Forwarded-For key
// the balancer's own hash (dist/hash.js) routes to it.
// - writes: every worker keeps INFLIGHT writes of ~SESSION_BYTES sessions in flight
//   (`store.set`, each awaited, the next started at once: a write resolves once the primary's
//   hub has it) for DURATION s after WARMUP s; writes/s = all workers' writes / the measured
//   time; server CPU per write (primary + workers, from /proc) beside it.
// - latency: RATE writes/s in all (spread evenly over the workers, on a 1 ms timer, each
//   session carrying its write time from process.hrtime.bigint(), CLOCK_MONOTONIC, one clock for
//   every process) for LAT_DURATION s; every other worker records when each write arrived there
//   (the store's `sticky-mesh:replicated` diagnostics channel): write-to-visible per (write,
//   other worker).
// Rounds: ROUNDS, each on a fresh server, for each worker count of WORKER_COUNTS.
//
// Knobs [defaults]: BENCH_ROUNDS [3], BENCH_WORKER_COUNTS [4,2], BENCH_INFLIGHT [32],
// BENCH_DURATION s [5], BENCH_WARMUP s [1], BENCH_RATE [1000], BENCH_LAT_DURATION s [5],
// BENCH_SESSION_BYTES [1024], BENCH_WRITE [1] (0: RESULTS.md untouched), BENCH_PORT.
import path from 'node:path';
import { pathToFileURL } from 'node:url';
import * as lib from './lib.mjs';
import { f1, fmtInt, fmtMs, intEnv, median } from './lib.mjs';
import { slotKeys } from './sessions-lib.mjs';

const ROUNDS = intEnv('BENCH_ROUNDS', 3);
const WORKER_COUNTS = lib.intListEnv('BENCH_WORKER_COUNTS', '4,2');
const INFLIGHT = intEnv('BENCH_INFLIGHT', 32);
const DURATION = intEnv('BENCH_DURATION', 5);
const WARMUP = intEnv('BENCH_WARMUP', 1, 0);
const RATE = intEnv('BENCH_RATE', 1000);
const LAT_DURATION = intEnv('BENCH_LAT_DURATION', 5);
const SESSION_BYTES = intEnv('BENCH_SESSION_BYTES', 1024, 200);
const WRITE = (process.env.BENCH_WRITE ?? '1') !== '0';
const SEED = 0x5e5510a5;

function pctl(values, p) {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

async function oneRound(workers, round) {
  const port = Number(process.env.BENCH_PORT) || (await lib.findPort(['127.0.0.1']));
  const { rendezvous } = await import(pathToFileURL(path.join(lib.rootDir, 'dist', 'hash.js')));
  const keys = slotKeys(rendezvous(SEED, workers), workers, 1).map((k) => k[0]);
  const srv = await lib.startServer({
    file: 'replication-raw.mjs',
    name: 'replication-raw',
    workers,
    port,
    env: { SEED: String(SEED), SESSION_BYTES: String(SESSION_BYTES) },
  });
  const ask = (slot, p) =>
    lib.requestJson(port, { path: p, headers: { 'x-forwarded-for': keys[slot] } });
  const all = (p) => Promise.all(keys.map((_, slot) => ask(slot, p)));
  try {
    if (WARMUP > 0) await all(`/burst?inflight=${INFLIGHT}&ms=${WARMUP * 1000}`);
    const a = lib.cpuSnapshot(srv.pgid);
    const bursts = await all(`/burst?inflight=${INFLIGHT}&ms=${DURATION * 1000}`);
    const b = lib.cpuSnapshot(srv.pgid);
    const writes = bursts.reduce((n, r) => n + r.json.writes, 0);
    const errors = bursts.reduce((n, r) => n + r.json.errors, 0);
    const secs = Math.max(...bursts.map((r) => r.json.elapsedMs)) / 1000;
    const cpu = lib.cpuPerUnit(a, b, writes);
    const cores = lib.cpuBetween(a, b);
    const perWorker = Math.round(RATE / workers);
    await all(`/applied`);
    const paced = await all(`/paced?rate=${perWorker}&ms=${LAT_DURATION * 1000}`);
    await lib.sleep(200);
    const applied = (await all('/applied')).flatMap((r) => r.json.applied);
    const expected = paced.reduce((n, r) => n + r.json.writes, 0) * (workers - 1);
    const result = {
      round,
      workers,
      writesPerS: writes / secs,
      errors,
      cpu,
      cores,
      latency: { p50: pctl(applied, 50), p99: pctl(applied, 99), n: applied.length, expected },
    };
    console.log(
      `round ${round} workers ${workers}: ${fmtInt(result.writesPerS)} writes/s (errors ${errors}), cpu/write ${f1(cpu.total)} us (${f1(cpu.primary)} / ${f1(cpu.workers)}), cores client/server/foreign ${cores.client.toFixed(2)} / ${cores.server.toFixed(2)} / ${cores.foreign.toFixed(2)}; write-to-visible at ${RATE}/s p50 ${fmtMs(result.latency.p50)} p99 ${fmtMs(result.latency.p99)} ms (${applied.length} of ${expected})`,
    );
    return result;
  } finally {
    await lib.stopServer(srv);
  }
}

async function main() {
  const results = [];
  for (let round = 1; round <= ROUNDS; round++) {
    for (const workers of WORKER_COUNTS) results.push(await oneRound(workers, round));
  }
  const rows = WORKER_COUNTS.map((workers) => {
    const rs = results.filter((r) => r.workers === workers);
    const m = (f) => median(rs.map(f));
    return {
      workers,
      writes: m((r) => r.writesPerS),
      perRound: rs.map((r) => fmtInt(r.writesPerS)).join(', '),
      cpu: m((r) => r.cpu.total),
      primary: m((r) => r.cpu.primary),
      workersCpu: m((r) => r.cpu.workers),
      p50: m((r) => r.latency.p50),
      p99: m((r) => r.latency.p99),
      p99s: rs.map((r) => fmtMs(r.latency.p99)).join(', '),
      seen: rs.map((r) => `${r.latency.n}/${r.latency.expected}`).join(', '),
      errors: rs.reduce((n, r) => n + r.errors, 0),
    };
  });
  const lines = [
    '<!-- BEGIN replication-raw (written by bench/replication.mjs; do not edit by hand) -->',
    '## Raw replication (issue 18)',
    '',
    `Date ${new Date().toISOString()}; commit ${lib.gitCommit()}; Node ${process.version}; ${ROUNDS} rounds, each on a fresh server; sessions of ~${SESSION_BYTES} B of JSON; ${INFLIGHT} writes in flight per worker for ${DURATION} s after ${WARMUP} s; latency at ${RATE} writes/s in all for ${LAT_DURATION} s. Targets (issue 18): >= 40,000 writes/s with 4 workers; write-to-visible p99 <= 5 ms at 1,000 writes/s.`,
    '',
    '| workers | writes/s (median) | per round | server CPU us/write (primary / workers) | write-to-visible p50 / p99 ms at the rate | p99 per round | seen / expected per round | errors |',
    '|---:|---:|---|---:|---:|---|---|---:|',
    ...rows.map(
      (r) =>
        `| ${r.workers} | ${fmtInt(r.writes)} | ${r.perRound} | ${f1(r.cpu)} (${f1(r.primary)} / ${f1(r.workersCpu)}) | ${fmtMs(r.p50)} / ${fmtMs(r.p99)} | ${r.p99s} | ${r.seen} | ${r.errors} |`,
    ),
    '<!-- END replication-raw -->',
  ];
  console.log(`\n${lines.slice(3, -1).join('\n')}`);
  if (WRITE) lib.writeResults('replication-raw', lines.join('\n'));
}

lib.runMain(main);
