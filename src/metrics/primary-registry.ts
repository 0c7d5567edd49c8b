import type { BalancerCounters } from '../master/balancer.js';
import type { SlotStats } from '../master/pool.js';
import type { Refusals } from '../master/refusals.js';
import type { HubCounters } from '../replication/transports/ipc/hub.js';
import type { MulticastStats } from '../replication/transports/multicast/transport.js';
import type { RedisStats } from '../replication/transports/redis/stats.js';
import { STORE_MALFORMED_HELP } from './exposition.js';
import type { Prom, Registry } from './prom.js';

/**
 * The primary's own metrics: one prom-client registry whose metrics read the primary's counters
 * (stats(), the balancer's refusals, the hub's table) when scraped, so routing a connection costs
 * nothing more with metrics on; only the head-read timer and the scrape's own counters are fed
 * as things happen. Every name is documented in the README's Metrics section (a unit test holds
 * the two together).
 */

/** The part of the primary's `stats()` its metrics read. */
export interface PrimaryStats extends BalancerCounters {
  headReads: number;
  waiting: number;
  slots: SlotStats[];
  sessions: HubCounters;
  malformedMessages: number;
  multicast?: MulticastStats;
  redis?: RedisStats;
}

/** What the primary's metrics read at each scrape. */
export interface PrimarySource {
  stats(): PrimaryStats;
  refusals(): Refusals;
  /** Connections handed to `slot`'s worker that it has not taken yet. */
  queued(slot: number): number;
  /** The hub's replica: records with session data, their size, every record. */
  table(): { sessions: number; dataLength: number; size: number };
}

export interface PrimaryRegistry {
  readonly registry: Registry;
  /** A head read ended with `outcome` after `seconds`. */
  headRead(outcome: string, seconds: number): void;
  /** The worker of `slot` did not answer a scrape in time. */
  missed(slot: number): void;
  /** How many workers' metrics are in the scrape being answered. */
  answered(workers: number): void;
}

type Labels = Record<string, string | number>;
type Sample = readonly [Labels, number];

/** Slot states reported with 0 when a slot is not in them (a state series never vanishes). */
const SLOT_STATES = ['starting', 'ready', 'stopping', 'down'] as const;

/** Buckets of the head-read time, in seconds: 100 µs to 10 s. */
const HEAD_READ_BUCKETS = [
  0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10,
];

export function primaryRegistry(
  prom: Prom,
  source: PrimarySource,
  transport: 'ipc' | 'multicast' | 'redis' | undefined,
): PrimaryRegistry {
  const registry = new prom.Registry();
  // One stats() per scrape: collect callbacks run in the same turn, so they share it.
  let cached: PrimaryStats | undefined;
  const stats = (): PrimaryStats => {
    if (!cached) {
      cached = source.stats();
      queueMicrotask(() => {
        cached = undefined;
      });
    }
    return cached;
  };
  const counter = (name: string, help: string, labelNames: string[], read: () => Sample[]) =>
    new prom.Counter({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        // A counter never goes down: a difference of two counts read a moment apart is >= 0.
        for (const [labels, value] of read()) this.inc(labels, Math.max(0, value));
      },
    });
  const gauge = (name: string, help: string, labelNames: string[], read: () => Sample[]) =>
    new prom.Gauge({
      name,
      help,
      labelNames,
      registers: [registry],
      collect() {
        this.reset();
        for (const [labels, value] of read()) this.set(labels, value);
      },
    });
  const one = (value: number): Sample[] => [[{}, value]];
  const perSlot = (value: (s: PrimaryStats['slots'][number]) => number) => () =>
    stats().slots.map((s): Sample => [{ slot: s.slot }, value(s)]);

  counter(
    'sticky_mesh_connections_routed_total',
    'Connections handed to a worker, by slot.',
    ['slot'],
    perSlot((s) => s.connections),
  );
  counter(
    'sticky_mesh_connections_rerouted_total',
    'Handoffs a worker could not take, or never took before it died, routed again.',
    [],
    () => one(stats().rerouted),
  );
  counter(
    'sticky_mesh_connections_refused_total',
    'Connections answered with an error and closed instead of being handed to a worker, by reason.',
    ['reason'],
    () => {
      const s = stats();
      const r = source.refusals();
      return [
        [{ reason: 'no_worker' }, s.rejected - r.pendingCap],
        [{ reason: 'pending_cap' }, r.pendingCap],
        [{ reason: 'head_read_cap' }, s.headReadsRefused],
        [{ reason: '400' }, r.badRequest],
        [{ reason: '408' }, r.timeout],
        [{ reason: '431' }, r.tooLarge],
        [{ reason: 'bad_proxy' }, r.badProxy],
      ];
    },
  );
  counter(
    'sticky_mesh_connections_abandoned_total',
    'Connections whose client left before a worker had them.',
    [],
    () => {
      const r = source.refusals();
      return one(stats().dropped - r.badRequest - r.timeout - r.tooLarge - r.badProxy);
    },
  );
  gauge('sticky_mesh_connections_waiting', 'Connections waiting for a ready worker now.', [], () =>
    one(stats().waiting),
  );
  gauge(
    'sticky_mesh_head_reads',
    'Connections whose first request head (or PROXY header) the primary is reading now.',
    [],
    () => one(stats().headReads),
  );
  gauge(
    'sticky_mesh_handles_queued',
    "Connections handed to the slot's worker that it has not taken yet.",
    ['slot'],
    () => stats().slots.map((s): Sample => [{ slot: s.slot }, source.queued(s.slot)]),
  );
  const headReads = new prom.Histogram({
    name: 'sticky_mesh_head_read_seconds',
    help: "Time from accept to the end of the primary's read of a connection's first head, by outcome.",
    labelNames: ['outcome'],
    buckets: HEAD_READ_BUCKETS,
    registers: [registry],
  });
  counter(
    'sticky_mesh_worker_restarts_total',
    'Workers replaced in the slot, by why the one before went.',
    ['slot', 'reason'],
    () =>
      stats().slots.flatMap((s) =>
        Object.entries(s.replaced).map(([reason, n]): Sample => [{ slot: s.slot, reason }, n]),
      ),
  );
  gauge(
    'sticky_mesh_slot_state',
    "The slot's state: 1 for the state it is in, 0 for the others.",
    ['slot', 'state'],
    () =>
      stats().slots.flatMap((s) => {
        const states = new Set<string>([...SLOT_STATES, s.state]);
        return [...states].map((state): Sample => [{ slot: s.slot, state }, +(state === s.state)]);
      }),
  );
  gauge(
    'sticky_mesh_slot_generation',
    'Workers forked into the slot so far (1 for the first).',
    ['slot'],
    perSlot((s) => s.generation),
  );
  storeMetrics(source, stats, counter, gauge);
  if (transport === 'multicast') multicastMetrics(stats, counter, gauge);
  if (transport === 'redis') redisMetrics(stats, counter, gauge);

  const missed = new prom.Counter({
    name: 'sticky_mesh_metrics_workers_missed_total',
    help: "Scrapes the slot's worker did not answer in time (`metrics.timeout`); they went without its metrics.",
    labelNames: ['slot'],
    registers: [registry],
  });
  const answered = new prom.Gauge({
    name: 'sticky_mesh_metrics_workers_answered',
    help: 'Workers whose metrics are in this scrape.',
    registers: [registry],
  });
  return {
    registry,
    headRead: (outcome, seconds) => headReads.observe({ outcome }, seconds),
    missed: (slot) => missed.inc({ slot }),
    answered: (workers) => answered.set(workers),
  };
}

type Define = (name: string, help: string, labelNames: string[], read: () => Sample[]) => unknown;

function storeMetrics(
  source: PrimarySource,
  stats: () => PrimaryStats,
  counter: Define,
  gauge: Define,
): void {
  const one = (value: number): Sample[] => [[{}, value]];
  gauge(
    'sticky_mesh_store_sessions',
    "Sessions in the primary's replica (expired ones not swept yet included; they are never served).",
    [],
    () => one(source.table().sessions),
  );
  gauge(
    'sticky_mesh_store_bytes',
    "Size of the session JSON in the primary's replica, in characters (bytes for ASCII).",
    [],
    () => one(source.table().dataLength),
  );
  gauge(
    'sticky_mesh_store_records',
    "Records in the primary's replica: sessions and tombstones.",
    [],
    () => one(source.table().size),
  );
  counter(
    'sticky_mesh_store_writes_total',
    'Session writes from workers the hub took and replicated (touches included).',
    [],
    () => one(stats().sessions.writes),
  );
  counter(
    'sticky_mesh_store_touches_total',
    'Of those writes, the touches (an expiry moved later).',
    [],
    () => one(stats().sessions.touches),
  );
  counter(
    'sticky_mesh_store_refused_total',
    'Writes refused because the hub held a newer write of the session (ERR_STICKY_WRITE_REFUSED).',
    [],
    () => one(stats().sessions.refused),
  );
  counter(
    'sticky_mesh_store_resyncs_total',
    'Times a worker that fell behind (maxIpcBacklog) was given the full session state again.',
    [],
    () => one(stats().sessions.resyncs),
  );
  counter(
    'sticky_mesh_store_versions_ahead_total',
    'Changes from other machines stamped more than a minute ahead of this clock.',
    [],
    () => one(stats().sessions.versionsAhead),
  );
  counter('sticky_mesh_store_malformed_total', STORE_MALFORMED_HELP, ['slot'], () => [
    [{ slot: 'primary' }, stats().sessions.dropped],
  ]);
  counter(
    'sticky_mesh_ipc_malformed_total',
    "IPC messages from workers tagged as sticky-mesh's that did not parse.",
    [],
    () => one(stats().malformedMessages),
  );
}

function multicastMetrics(stats: () => PrimaryStats, counter: Define, gauge: Define): void {
  const m = () => stats().multicast;
  const both = (out: number | undefined, into: number | undefined): Sample[] => [
    [{ direction: 'out' }, out ?? 0],
    [{ direction: 'in' }, into ?? 0],
  ];
  const one = (value: number | undefined): Sample[] => [[{}, value ?? 0]];
  gauge('sticky_mesh_multicast_peers', 'Other machines heard on the group.', [], () =>
    one(m()?.peers.length),
  );
  counter(
    'sticky_mesh_multicast_datagrams_total',
    'Datagrams sent and received.',
    ['direction'],
    () => both(m()?.datagramsSent, m()?.datagramsReceived),
  );
  counter(
    'sticky_mesh_multicast_bytes_total',
    'Bytes of datagrams sent and received.',
    ['direction'],
    () => both(m()?.bytesSent, m()?.bytesReceived),
  );
  counter(
    'sticky_mesh_multicast_changes_total',
    'Session changes sent to the group and received from it.',
    ['direction'],
    () => both(m()?.changesSent, m()?.changesReceived),
  );
  counter(
    'sticky_mesh_multicast_nacks_total',
    'NACKs sent (gaps this node asked to be repaired) and received (asking it to send again).',
    ['direction'],
    () => both(m()?.nacksSent, m()?.nacksReceived),
  );
  counter('sticky_mesh_multicast_retransmits_total', 'Datagrams sent again after a NACK.', [], () =>
    one(m()?.retransmits),
  );
  counter(
    'sticky_mesh_multicast_state_transfers_total',
    'Full state transfers fetched from peers and served to them.',
    ['direction'],
    () => [
      [{ direction: 'fetched' }, m()?.transfers ?? 0],
      [{ direction: 'served' }, m()?.served ?? 0],
    ],
  );
  counter(
    'sticky_mesh_multicast_state_transfer_failures_total',
    'State transfers from peers that failed.',
    [],
    () => one(m()?.transferFailures),
  );
  counter(
    'sticky_mesh_multicast_rejected_total',
    'Datagrams, frames and state-transfer connections refused, by reason (auth: forged or wrong key; replay: played back).',
    ['reason'],
    () => Object.entries(m()?.rejected ?? {}).map(([reason, n]): Sample => [{ reason }, n]),
  );
}

function redisMetrics(stats: () => PrimaryStats, counter: Define, gauge: Define): void {
  const r = () => stats().redis;
  const one = (value: number | undefined): Sample[] => [[{}, value ?? 0]];
  gauge('sticky_mesh_redis_connected', '1 while the connection to Redis is up.', [], () =>
    one(r()?.connected ? 1 : 0),
  );
  gauge(
    'sticky_mesh_redis_synced',
    '1 once this machine has rebuilt its replica from Redis (0 while joining or rebuilding).',
    [],
    () => one(r()?.state === 'synced' ? 1 : 0),
  );
  gauge('sticky_mesh_redis_queue_length', 'Own writes held until Redis answers them.', [], () =>
    one(r()?.queued),
  );
  gauge('sticky_mesh_redis_queue_bytes', 'Bytes of those writes.', [], () => one(r()?.queuedBytes));
  counter('sticky_mesh_redis_writes_total', 'Own changes written to Redis.', [], () =>
    one(r()?.written),
  );
  counter(
    'sticky_mesh_redis_stale_writes_total',
    'Own changes Redis already held newer (not applied there).',
    [],
    () => one(r()?.stale),
  );
  counter('sticky_mesh_redis_received_total', 'Changes from other machines applied.', [], () =>
    one(r()?.received),
  );
  counter('sticky_mesh_redis_dropped_total', 'Own writes dropped from a full queue.', [], () =>
    one(r()?.dropped),
  );
  counter(
    'sticky_mesh_redis_rebuilds_total',
    'Full rebuilds from Redis (start, reconnects).',
    [],
    () => one(r()?.rebuilds),
  );
  counter('sticky_mesh_redis_errors_total', 'Errors from Redis.', [], () => one(r()?.errors));
}
