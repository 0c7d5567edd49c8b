// Hostile traffic against real clusters (issue 14): while good keep-alive clients run, attackers
// hold slowloris connections, trickle 16 KiB heads byte by byte, send oversized heads, garbage and
// truncated PROXY headers, and one worker blocks its event loop for 30 s. The run is
// bench/hostile.mjs (its header describes it; its figures are in bench/RESULTS.md), started here
// as a process group of its own with shorter phases; this test asserts on the figures it writes.
//
// The bounds, for this run on 2 cores shared by everything (measured: bench/RESULTS.md):
// - both primaries live through it, emit no `error` and print nothing on stderr;
// - good clients get no error at all. A request a reused keep-alive connection lost unanswered
//   (the blocked worker's connections, when it is killed) is sent again on a new connection, as
//   every HTTP client and proxy does; it counts with the latency of both tries;
// - good clients' p99 under attack is at most P99_FACTOR x the quiet run's (measured 1.06-3.28x
//   over 13 runs; the high ones are cluster B's 10 clients, whose p99 is their ~30 slowest
//   requests: ~150 ms of the whole machine busy, e.g. the attackers' connection burst at the
//   start or the blocked worker's replacement starting, moves it);
// - the attack costs each primary at most CPU_SHARE of one core (measured 12-13% for cluster A);
// - each primary's RSS grows by at most RSS_GROWTH_MIB (measured ~24 MiB for A); what it holds
//   per connection is bounded by `maxHeadReads` heads of at most `maxHeaderBytes` each;
// - the blocked worker is taken out of routing within `unresponsiveTimeout` plus one ping
//   interval, and its replacement runs the factory within that plus `respawnDelay` plus the
//   start-up of a process; its clients are served by other slots in between.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { afterEach, describe, expect, it } from 'vitest';
import { waitUntilGone } from '../helpers/proc.js';

const root = fileURLToPath(new URL('../../', import.meta.url));
const QUIET_S = 8;
const ATTACK_S = 15;
const P99_FACTOR = 4;
const CPU_SHARE = 0.3;
const RSS_GROWTH_MIB = 64;
const UNRESPONSIVE_TIMEOUT = 5000; // the default
const PING_INTERVAL = 1000; // min(1 s, unresponsiveTimeout / 5)
const RESPAWN_DELAY = 100; // the default, first crash
const PROCESS_START = 1500; // fork, load the fixture and the package, run the factory

interface Latency {
  n: number;
  p50: number;
  p99: number;
  max: number;
}
interface GoodRun {
  requests: number;
  errors: unknown[];
  retried: number;
  latency: Latency;
}
interface Tally {
  opened: number;
  answered: Record<string, number>;
  closedUnanswered: number;
}
interface Primary {
  alive: boolean;
  errorEvents: unknown[];
  stderr: string;
  stats: { headReadsRefused: number; dropped: number };
}
interface Report {
  good: Record<'a' | 'b', { quiet: GoodRun; attack: GoodRun }>;
  cpu: Record<'a' | 'b', { quiet: number; attack: number }>;
  memory: Record<'a' | 'b', { quietMedianKiB: number; attackMaxKiB: number }>;
  headReads: Record<'a' | 'b', { max: number }>;
  blocked: {
    reason: string;
    unresponsiveMs: number;
    exitSignal: string;
    newWorkerStartMs: number;
    newWorkerUpMs: number;
    victims: number;
    victimsServedDuringOutage: number;
    outageServedByVictimSlot: number;
    servedByBlockedAfterBlock: number;
  };
  attackers: Record<'slowloris' | 'trickle' | 'oversized' | 'garbage', Tally>;
  primaries: Record<'a' | 'b', Primary>;
}

let bench: ChildProcess | undefined;
let dir: string | undefined;

afterEach(async () => {
  // The bench and everything it started (clusters, workers, attackers) share its process group.
  if (bench?.pid !== undefined) {
    try {
      process.kill(-bench.pid, 'SIGKILL');
    } catch {}
    expect(await waitUntilGone([bench.pid], 5000)).toEqual([]);
  }
  bench = undefined;
  if (dir) rmSync(dir, { recursive: true, force: true });
  dir = undefined;
});

function runBench(out: string): Promise<{ code: number | null; output: string }> {
  return new Promise((resolve) => {
    bench = spawn(process.execPath, [path.join(root, 'bench', 'hostile.mjs')], {
      cwd: root,
      detached: true,
      stdio: ['ignore', 'pipe', 'pipe'],
      env: {
        ...process.env,
        QUIET_S: String(QUIET_S),
        ATTACK_S: String(ATTACK_S),
        RESULTS: '0',
        JSON_OUT: out,
      },
    });
    let output = '';
    bench.stdout?.on('data', (d) => {
      output += d;
    });
    bench.stderr?.on('data', (d) => {
      output += d;
    });
    bench.once('exit', (code) => resolve({ code, output }));
  });
}

describe('under hostile traffic and a stuck worker', () => {
  it('the primaries hold, good clients are served, the stuck worker is replaced', async () => {
    dir = mkdtempSync(path.join(tmpdir(), 'sticky-hostile-'));
    const out = path.join(dir, 'report.json');
    const { code, output } = await runBench(out);
    expect(code, output).toBe(0);
    const r = JSON.parse(readFileSync(out, 'utf8')) as Report;
    const what = output;

    for (const k of ['a', 'b'] as const) {
      const p = r.primaries[k];
      expect(p.alive, what).toBe(true);
      expect(p.errorEvents, what).toEqual([]);
      expect(p.stderr, what).toBe('');
      // Every phase ran: a run that did nothing cannot pass.
      expect(r.good[k].quiet.requests, what).toBeGreaterThan(0);
      expect(r.good[k].attack.requests, what).toBeGreaterThan(0);
      expect(r.good[k].quiet.errors, what).toEqual([]);
      expect(r.good[k].attack.errors, what).toEqual([]);
      expect(r.good[k].attack.latency.p99, what).toBeLessThanOrEqual(
        P99_FACTOR * r.good[k].quiet.latency.p99,
      );
      expect(r.cpu[k].attack - r.cpu[k].quiet, what).toBeLessThan(CPU_SHARE);
      expect(r.memory[k].attackMaxKiB - r.memory[k].quietMedianKiB, what).toBeLessThan(
        RSS_GROWTH_MIB * 1024,
      );
      expect(r.primaries[k].stats.headReadsRefused, what).toBe(0);
    }
    // Only the blocked worker's kept-open connections lost a request (sent again, then served).
    expect(r.good.a.attack.retried, what).toBeLessThanOrEqual(r.blocked.victims);
    expect(r.good.b.attack.retried, what).toBe(0);

    // The attack happened, all of it at once, and each kind got the answer it should.
    const { slowloris, trickle, oversized, garbage } = r.attackers;
    expect(r.headReads.a.max, what).toBeGreaterThanOrEqual(300);
    expect(r.headReads.b.max, what).toBeGreaterThanOrEqual(100);
    expect(slowloris.answered, what).toEqual({ 'HTTP/1.1 408 Request Timeout': 300 });
    expect(trickle.answered['HTTP/1.1 200 OK'], what).toBeGreaterThanOrEqual(20);
    expect(Object.keys(trickle.answered), what).toEqual(['HTTP/1.1 200 OK']);
    expect(Object.keys(oversized.answered), what).toEqual([
      'HTTP/1.1 431 Request Header Fields Too Large',
    ]);
    expect(oversized.closedUnanswered, what).toBe(0);
    expect(oversized.opened, what).toBeGreaterThan(100);
    // Garbage is closed unanswered, a truncated header at the head deadline with 408; never 200.
    expect(Object.keys(garbage.answered), what).toEqual(['HTTP/1.1 408 Request Timeout']);
    expect(garbage.closedUnanswered, what).toBeGreaterThan(100);
    expect(r.primaries.b.stats.dropped, what).toBeGreaterThan(garbage.closedUnanswered);

    // The stuck worker.
    const b = r.blocked;
    expect(b.reason, what).toBe('ping');
    expect(b.exitSignal, what).toBe('SIGKILL');
    expect(b.unresponsiveMs, what).toBeGreaterThanOrEqual(UNRESPONSIVE_TIMEOUT - PING_INTERVAL);
    expect(b.unresponsiveMs, what).toBeLessThanOrEqual(UNRESPONSIVE_TIMEOUT + PING_INTERVAL + 500);
    expect(b.newWorkerStartMs, what).toBeLessThanOrEqual(
      UNRESPONSIVE_TIMEOUT + PING_INTERVAL + RESPAWN_DELAY + PROCESS_START,
    );
    expect(b.newWorkerUpMs, what).toBeGreaterThan(b.newWorkerStartMs - 1);
    expect(b.victims, what).toBeGreaterThan(0);
    expect(b.victimsServedDuringOutage, what).toBe(b.victims);
    expect(b.outageServedByVictimSlot, what).toBe(0);
    expect(b.servedByBlockedAfterBlock, what).toBe(0);
  }, 90_000);
});
