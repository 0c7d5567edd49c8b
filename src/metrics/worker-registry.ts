import { STORE_MALFORMED_HELP } from './exposition.js';
import type { Prom, Registry } from './prom.js';

/**
 * A worker's own metrics: prom-client's default process and Node.js metrics, and what only the
 * worker knows (its connections, the write-to-visible time of the session changes it receives).
 * The primary gives every series the worker's `slot` label when it merges the reports.
 */

/** What a worker's metrics read at each scrape. */
export interface WorkerSource {
  stats(): { connections: number; handedBack: number; relayed: number };
  /** The worker's replica link, once a store made one. */
  store(): { dropped: number; pending: number } | undefined;
}

export interface WorkerRegistry {
  readonly registry: Registry;
  /** A change another process wrote became visible here `ms` after its write. */
  visible(ms: number): void;
}

/** Buckets of the write-to-visible time, in seconds: 1 ms (its resolution) to 10 s. */
const VISIBLE_BUCKETS = [0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

export function workerRegistry(prom: Prom, source: WorkerSource): WorkerRegistry {
  const registry = new prom.Registry();
  prom.collectDefaultMetrics({ register: registry });
  const visible = new prom.Histogram({
    name: 'sticky_mesh_store_visible_seconds',
    help: "Time from a session write (its version's clock) to its arrival at this worker, for writes made by other processes.",
    buckets: VISIBLE_BUCKETS,
    registers: [registry],
  });
  new prom.Gauge({
    name: 'sticky_mesh_worker_connections',
    help: "Connections the slot's worker serves now (relay channels from siblings included).",
    registers: [registry],
    collect() {
      this.set(source.stats().connections);
    },
  });
  new prom.Counter({
    name: 'sticky_mesh_connections_handed_back_total',
    help: "Connections the slot's worker handed back to the primary because their next request belonged to another slot.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(source.stats().handedBack);
    },
  });
  new prom.Counter({
    name: 'sticky_mesh_requests_relayed_total',
    help: "Later requests of kept-open connections the slot's worker relayed to the sibling they belong to.",
    registers: [registry],
    collect() {
      this.reset();
      this.inc(source.stats().relayed);
    },
  });
  new prom.Counter({
    name: 'sticky_mesh_store_malformed_total',
    help: STORE_MALFORMED_HELP,
    registers: [registry],
    collect() {
      this.reset();
      this.inc(source.store()?.dropped ?? 0);
    },
  });
  new prom.Gauge({
    name: 'sticky_mesh_store_writes_pending',
    help: "Session writes of the slot's worker sent to the primary and not answered yet.",
    registers: [registry],
    collect() {
      this.set(source.store()?.pending ?? 0);
    },
  });
  return {
    registry,
    // A version stamped by a clock ahead of this one (or stepped over one) reads as 0.
    visible: (ms) => visible.observe(Math.max(0, ms) / 1000),
  };
}
