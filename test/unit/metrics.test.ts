// The metrics' pure parts: what the primary's registry reads from its counters, the workers'
// registry, how reports from several processes are checked, labelled by slot and merged into
// one exposition by prom-client's cluster aggregation, and the per-scrape deadline.
import type { Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { Registry } from 'prom-client';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StickyMeshError } from '../../src/errors.js';
import {
  checkMetrics,
  type MetricJson,
  render,
  without,
  withSlot,
} from '../../src/metrics/exposition.js';
import {
  type PrimarySource,
  type PrimaryStats,
  primaryRegistry,
} from '../../src/metrics/primary-registry.js';
import { loadPromClient, requirePromClient } from '../../src/metrics/prom.js';
import { WorkerScrapes } from '../../src/metrics/scrape.js';
import { workerRegistry } from '../../src/metrics/worker-registry.js';
import { MessageType, type MetricsReportMessage, message } from '../../src/protocol/messages.js';
import { parseExposition } from '../helpers/prom-text.js';

const prom = loadPromClient();

function slotStats(slot: number, connections: number) {
  return {
    slot,
    pid: 100 + slot,
    state: 'ready' as const,
    connections,
    restarts: 1,
    generation: 2,
    replaced: { crash: 1, unresponsive: 0, planned: 0, reload: 3 },
  };
}

function primaryStats(over: Partial<PrimaryStats> = {}): PrimaryStats {
  return {
    connections: 12,
    rejected: 5,
    rerouted: 2,
    dropped: 9,
    handedBack: 4,
    headReadsRefused: 6,
    headReads: 3,
    waiting: 1,
    slots: [slotStats(0, 7), slotStats(1, 5)],
    sessions: { writes: 40, touches: 10, dropped: 1, resyncs: 2, refused: 3, versionsAhead: 0 },
    malformedMessages: 8,
    ...over,
  };
}

function source(stats: PrimaryStats = primaryStats()): PrimarySource {
  return {
    stats: () => stats,
    refusals: () => ({ pendingCap: 2, badRequest: 1, timeout: 2, tooLarge: 3, badProxy: 1 }),
    queued: (slot) => slot + 10,
    table: () => ({ sessions: 30, dataLength: 4096, size: 35 }),
  };
}

async function exposition(registry: Registry) {
  return parseExposition(await registry.metrics());
}

describe('prom-client, an optional peer dependency', () => {
  it('is loaded once, and its absence is a coded error saying what to install', () => {
    expect(loadPromClient()).toBe(prom);
    const missing = new Error("Cannot find module 'prom-client'");
    let thrown: unknown;
    try {
      requirePromClient(() => {
        throw missing;
      });
    } catch (err) {
      thrown = err;
    }
    expect(thrown).toBeInstanceOf(StickyMeshError);
    expect(thrown).toMatchObject({
      code: 'ERR_STICKY_METRICS_FAILED',
      message: expect.stringContaining('npm install prom-client'),
      cause: missing,
    });
  });
});

describe("the primary's registry", () => {
  it('reads routing, refusals, restarts and slot state from the counters at scrape time', async () => {
    const m = await exposition(primaryRegistry(prom, source(), undefined).registry);
    expect(m.find('sticky_mesh_connections_routed_total').map((s) => [s.labels, s.value])).toEqual([
      [{ slot: '0' }, 7],
      [{ slot: '1' }, 5],
    ]);
    expect(m.sum('sticky_mesh_connections_rerouted_total')).toBe(2);
    const refused = Object.fromEntries(
      m.find('sticky_mesh_connections_refused_total').map((s) => [s.labels.reason, s.value]),
    );
    // rejected (5) = no worker (3) + pending cap (2); dropped (9) = 400 + 408 + 431 + bad PROXY
    // (7) + clients that left (2).
    expect(refused).toEqual({
      no_worker: 3,
      pending_cap: 2,
      head_read_cap: 6,
      '400': 1,
      '408': 2,
      '431': 3,
      bad_proxy: 1,
    });
    expect(m.sum('sticky_mesh_connections_abandoned_total')).toBe(2);
    expect(m.sum('sticky_mesh_connections_waiting')).toBe(1);
    expect(m.sum('sticky_mesh_head_reads')).toBe(3);
    expect(m.sum('sticky_mesh_handles_queued', { slot: '1' })).toBe(11);
    expect(m.sum('sticky_mesh_worker_restarts_total', { slot: '0', reason: 'reload' })).toBe(3);
    expect(m.sum('sticky_mesh_worker_restarts_total', { slot: '1', reason: 'crash' })).toBe(1);
    expect(m.sum('sticky_mesh_slot_state', { slot: '0', state: 'ready' })).toBe(1);
    expect(m.sum('sticky_mesh_slot_state', { slot: '0' })).toBe(1);
    expect(m.sum('sticky_mesh_slot_generation', { slot: '1' })).toBe(2);
    expect(m.sum('sticky_mesh_store_sessions')).toBe(30);
    expect(m.sum('sticky_mesh_store_bytes')).toBe(4096);
    expect(m.sum('sticky_mesh_store_records')).toBe(35);
    expect(m.sum('sticky_mesh_store_writes_total')).toBe(40);
    expect(m.sum('sticky_mesh_store_touches_total')).toBe(10);
    expect(m.sum('sticky_mesh_store_malformed_total', { slot: 'primary' })).toBe(1);
    expect(m.sum('sticky_mesh_ipc_malformed_total')).toBe(8);
    expect(m.types.get('sticky_mesh_connections_routed_total')).toBe('counter');
    expect(m.types.get('sticky_mesh_head_read_seconds')).toBe('histogram');
  });

  it('follows the counters from one scrape to the next', async () => {
    const stats = primaryStats();
    const { registry } = primaryRegistry(prom, source(stats), undefined);
    stats.slots = [slotStats(0, 70), slotStats(1, 50)];
    stats.rerouted = 20;
    const m = await exposition(registry);
    expect(m.sum('sticky_mesh_connections_routed_total')).toBe(120);
    expect(m.sum('sticky_mesh_connections_rerouted_total')).toBe(20);
  });

  it('times head reads by outcome, and counts the scrape itself', async () => {
    const r = primaryRegistry(prom, source(), undefined);
    r.headRead('ok', 0.0003);
    r.headRead('ok', 0.02);
    r.headRead('timeout', 10);
    r.missed(1);
    r.missed(1);
    r.answered(3);
    const m = await exposition(r.registry);
    expect(m.sum('sticky_mesh_head_read_seconds_count', { outcome: 'ok' })).toBe(2);
    expect(m.sum('sticky_mesh_head_read_seconds_bucket', { outcome: 'ok', le: '0.0005' })).toBe(1);
    expect(m.sum('sticky_mesh_head_read_seconds_count', { outcome: 'timeout' })).toBe(1);
    expect(m.sum('sticky_mesh_metrics_workers_missed_total', { slot: '1' })).toBe(2);
    expect(m.sum('sticky_mesh_metrics_workers_answered')).toBe(3);
  });

  it('has the multicast and Redis metrics only with that transport', async () => {
    const rejected = {
      oversize: 0,
      truncated: 0,
      foreign: 1,
      auth: 4,
      stale: 0,
      replay: 2,
      malformed: 0,
      unsolicited: 0,
      connections: 0,
      deadline: 0,
    };
    const multicast = {
      peers: [{}, {}],
      datagramsSent: 10,
      datagramsReceived: 20,
      bytesSent: 1000,
      bytesReceived: 2000,
      changesSent: 3,
      changesReceived: 4,
      nacksSent: 5,
      nacksReceived: 6,
      retransmits: 7,
      transfers: 1,
      served: 2,
      transferFailures: 0,
      rejected,
    };
    const withMulticast = primaryStats({ multicast } as unknown as Partial<PrimaryStats>);
    const m = await exposition(primaryRegistry(prom, source(withMulticast), 'multicast').registry);
    expect(m.sum('sticky_mesh_multicast_peers')).toBe(2);
    expect(m.sum('sticky_mesh_multicast_datagrams_total', { direction: 'in' })).toBe(20);
    expect(m.sum('sticky_mesh_multicast_bytes_total', { direction: 'out' })).toBe(1000);
    expect(m.sum('sticky_mesh_multicast_nacks_total', { direction: 'in' })).toBe(6);
    expect(m.sum('sticky_mesh_multicast_retransmits_total')).toBe(7);
    expect(m.sum('sticky_mesh_multicast_state_transfers_total', { direction: 'served' })).toBe(2);
    expect(m.sum('sticky_mesh_multicast_rejected_total', { reason: 'auth' })).toBe(4);
    expect(m.sum('sticky_mesh_multicast_rejected_total', { reason: 'replay' })).toBe(2);
    expect(m.types.has('sticky_mesh_redis_connected')).toBe(false);

    const redis = {
      connected: true,
      state: 'synced',
      queued: 3,
      queuedBytes: 900,
      written: 50,
      stale: 2,
      received: 8,
      dropped: 1,
      rebuilds: 4,
      errors: 0,
    };
    const withRedis = primaryStats({ redis } as unknown as Partial<PrimaryStats>);
    const r = await exposition(primaryRegistry(prom, source(withRedis), 'redis').registry);
    expect(r.sum('sticky_mesh_redis_connected')).toBe(1);
    expect(r.sum('sticky_mesh_redis_synced')).toBe(1);
    expect(r.sum('sticky_mesh_redis_queue_length')).toBe(3);
    expect(r.sum('sticky_mesh_redis_queue_bytes')).toBe(900);
    expect(r.sum('sticky_mesh_redis_rebuilds_total')).toBe(4);
    expect(r.sum('sticky_mesh_redis_stale_writes_total')).toBe(2);
    expect(r.types.has('sticky_mesh_multicast_peers')).toBe(false);
  });
});

describe("a worker's registry", () => {
  it('reports its connections and store, and times write-to-visible from 1 ms up', async () => {
    const w = workerRegistry(prom, {
      stats: () => ({ connections: 4, handedBack: 2, relayed: 9 }),
      store: () => ({ dropped: 1, pending: 3 }),
    });
    w.visible(0.4);
    w.visible(-50); // a version stamped by a clock ahead of this one
    w.visible(30);
    // prom-client counts the CPU time used since the registry was made: use some (by the
    // process's own clock, not wall time), so the count cannot be 0 on a busy machine.
    const start = process.cpuUsage().user;
    while (process.cpuUsage().user - start < 20_000) Math.sqrt(Math.random());
    const m = await exposition(w.registry);
    expect(m.sum('sticky_mesh_worker_connections')).toBe(4);
    expect(m.sum('sticky_mesh_connections_handed_back_total')).toBe(2);
    expect(m.sum('sticky_mesh_requests_relayed_total')).toBe(9);
    expect(m.sum('sticky_mesh_store_malformed_total')).toBe(1);
    expect(m.sum('sticky_mesh_store_writes_pending')).toBe(3);
    expect(m.sum('sticky_mesh_store_visible_seconds_count')).toBe(3);
    expect(m.sum('sticky_mesh_store_visible_seconds_bucket', { le: '0.001' })).toBe(2);
    expect(m.sum('sticky_mesh_store_visible_seconds_bucket', { le: '0.05' })).toBe(3);
    expect(m.sum('process_cpu_user_seconds_total')).toBeGreaterThan(0);
  });
});

/** A counter, a gauge averaged by prom-client's cluster mode, and one it leaves out. */
async function processReport(requests: number, lag: number): Promise<MetricJson[]> {
  const registry = new prom.Registry();
  new prom.Counter({ name: 'app_requests_total', help: 'requests', registers: [registry] }).inc(
    requests,
  );
  new prom.Gauge({
    name: 'app_lag_seconds',
    help: 'lag',
    aggregator: 'average',
    registers: [registry],
  }).set(lag);
  new prom.Gauge({
    name: 'app_started_seconds',
    help: 'start',
    aggregator: 'omit',
    registers: [registry],
  }).set(1000 + requests);
  return JSON.parse(JSON.stringify(await registry.getMetricsAsJSON())) as MetricJson[];
}

describe('merging the processes of a machine', () => {
  it('keeps each process apart by slot, and combines two workers of one slot by aggregator', async () => {
    const text = await render(prom, [
      withSlot(await processReport(5, 0.1), '0'),
      withSlot(await processReport(7, 0.2), '1'),
      // Slot 1's replacement, while both serve during a reload.
      withSlot(await processReport(1, 0.4), '1'),
    ]);
    const m = parseExposition(text);
    expect(m.sum('app_requests_total', { slot: '0' })).toBe(5);
    expect(m.sum('app_requests_total', { slot: '1' })).toBe(8);
    expect(m.sum('app_lag_seconds', { slot: '1' })).toBeCloseTo(0.3);
    // Left out by prom-client's cluster sum, kept per process here (the first of a slot's two).
    expect(m.find('app_started_seconds').map((s) => [s.labels.slot, s.value])).toEqual([
      ['0', 1005],
      ['1', 1007],
    ]);
    expect(m.types.get('app_requests_total')).toBe('counter');
  });

  it("keeps a series' own slot label, and drops names the library reports itself", async () => {
    const mine = [
      {
        name: 'x_total',
        help: 'x',
        type: 'counter' as const,
        aggregator: 'sum' as const,
        values: [{ value: 1, labels: { slot: 'mine' } }],
      },
    ];
    expect(withSlot(mine, '3')[0]?.values[0]?.labels).toEqual({ slot: 'mine' });
    expect(without(mine, new Set(['x_total']))).toEqual([]);
    expect(without(mine, new Set(['y_total']))).toEqual(mine);
  });

  it('leaves out what is not a well-formed metric, and a name reported with another type', async () => {
    const good = (await processReport(2, 0.1))[0] as MetricJson;
    const checked = checkMetrics([
      good,
      null,
      'x',
      { name: 'bad name', type: 'counter', values: [] },
      { name: 'no_type', values: [] },
      { name: 'odd_values', type: 'gauge', help: 'h', values: [{ value: 'x' }, { value: 2 }] },
      { name: 'bad_label', type: 'gauge', help: 'h', values: [{ value: 1, labels: { 'a-b': 1 } }] },
      { name: 'strange_aggregator', type: 'gauge', help: 'h', aggregator: 'eval', values: [] },
    ]);
    expect(checked.map((m) => m.name)).toEqual([
      'app_requests_total',
      'odd_values',
      'bad_label',
      'strange_aggregator',
    ]);
    expect(checked[1]?.values).toEqual([{ value: 2, labels: {} }]);
    expect(checked[2]?.values).toEqual([]);
    expect(checked[3]?.aggregator).toBe('sum');
    const clash = {
      ...good,
      type: 'gauge' as const,
      values: [{ value: 99, labels: { slot: '1' } }],
    };
    const m = parseExposition(await render(prom, [withSlot([good], '0'), [clash]]));
    expect(m.types.get('app_requests_total')).toBe('counter');
    expect(m.find('app_requests_total').map((s) => s.labels.slot)).toEqual(['0']);
  });
});

/** A stand-in for a cluster worker: an IPC channel whose sends are recorded. */
class FakeWorker extends EventEmitter {
  readonly sent: unknown[] = [];
  connected = true;
  constructor(readonly process: { pid: number }) {
    super();
  }
  isConnected(): boolean {
    return this.connected;
  }
  send(msg: unknown, cb?: (err: Error | null) => void): boolean {
    this.sent.push(msg);
    cb?.(null);
    return true;
  }
}

function report(id: number, metrics: unknown[] = []): MetricsReportMessage {
  return message<MetricsReportMessage>(MessageType.MetricsReport, { id, metrics });
}

function requestId(w: FakeWorker): number {
  return (w.sent.at(-1) as { id: number }).id;
}

describe('a scrape of the workers', () => {
  afterEach(() => {
    vi.useRealTimers();
  });

  function cluster(...slots: number[]) {
    const scrapes = new WorkerScrapes();
    const workers = slots.map((slot, i) => {
      const w = new FakeWorker({ pid: 1000 + i });
      scrapes.track(w as unknown as Worker, slot);
      scrapes.up(w.process.pid);
      return w;
    });
    const answer = (w: FakeWorker, id = requestId(w)) =>
      scrapes.receive(w as unknown as Worker, report(id, [{ pid: w.process.pid }]));
    return { scrapes, workers, answer };
  }

  it('ends as soon as every ready worker answered', async () => {
    const { scrapes, workers, answer } = cluster(0, 1);
    const round = scrapes.gather(60_000);
    for (const w of workers) answer(w);
    const gathered = await round;
    expect(gathered.missed).toEqual([]);
    expect(gathered.reports.map((r) => [r.slot, r.pid]).sort()).toEqual([
      [0, 1000],
      [1, 1001],
    ]);
  });

  it('asks no worker before it is ready, and asks both workers of a slot being replaced', async () => {
    const { scrapes, workers, answer } = cluster(0, 1);
    const replacement = new FakeWorker({ pid: 2000 });
    scrapes.track(replacement as unknown as Worker, 1);
    let round = scrapes.gather(60_000);
    expect(replacement.sent).toEqual([]);
    for (const w of workers) answer(w);
    expect((await round).reports).toHaveLength(2);
    scrapes.up(2000);
    round = scrapes.gather(60_000);
    for (const w of [...workers, replacement]) answer(w);
    expect((await round).reports.map((r) => r.slot).sort()).toEqual([0, 1, 1]);
  });

  it('leaves a silent worker out at the deadline, counted, and drops its late answer', async () => {
    vi.useFakeTimers();
    const { scrapes, workers, answer } = cluster(0, 1, 2);
    const [a, stuck, c] = workers as [FakeWorker, FakeWorker, FakeWorker];
    let done: Awaited<ReturnType<WorkerScrapes['gather']>> | undefined;
    void scrapes.gather(1000).then((g) => {
      done = g;
    });
    answer(a);
    answer(c);
    await vi.advanceTimersByTimeAsync(999);
    expect(done).toBeUndefined();
    await vi.advanceTimersByTimeAsync(1);
    expect(done?.missed).toEqual([1]);
    expect(done?.reports.map((r) => r.slot)).toEqual([0, 2]);
    answer(stuck); // too late: its round is over
    expect(done?.reports).toHaveLength(2);
  });

  it('neither waits for nor counts a worker that leaves, nor asks one whose channel is closed', async () => {
    const { scrapes, workers, answer } = cluster(0, 1, 2, 3);
    const [a, dying, closed, leaving] = workers as FakeWorker[] as [
      FakeWorker,
      FakeWorker,
      FakeWorker,
      FakeWorker,
    ];
    closed.connected = false;
    const round = scrapes.gather(60_000);
    answer(a);
    dying.emit('exit', 1, null);
    leaving.emit('disconnect');
    const gathered = await round;
    expect(gathered.missed).toEqual([]);
    expect(gathered.reports.map((r) => r.slot)).toEqual([0]);
    expect(closed.sent).toEqual([]);
    // Gone for good: the next round asks neither of those that left.
    closed.connected = true;
    const next = scrapes.gather(60_000);
    answer(a);
    answer(closed);
    expect((await next).reports.map((r) => r.slot)).toEqual([0, 2]);
    expect(dying.sent).toHaveLength(1);
    expect(leaving.sent).toHaveLength(1);
  });

  it('ignores an answer to no round, or from a worker it did not ask', async () => {
    const { scrapes, workers, answer } = cluster(0);
    const stranger = new FakeWorker({ pid: 3000 });
    const round = scrapes.gather(60_000);
    const w = workers[0] as FakeWorker;
    answer(w, requestId(w) + 100);
    scrapes.receive(stranger as unknown as Worker, report(requestId(w)));
    answer(w);
    const gathered = await round;
    expect(gathered.reports.map((r) => r.pid)).toEqual([1000]);
  });
});
