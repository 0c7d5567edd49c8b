import type { Change, SessionTable } from './table.js';

/**
 * What carries a replica's changes to the other replicas. Three implementations:
 * - `ipc`: a worker's link to the hub in its cluster primary (transports/ipc/), which applies
 *   every worker's writes and passes them on to the other workers and to the machine's
 *   transport to other machines;
 * - `multicast`: authenticated UDP multicast between machines (transports/multicast/);
 * - `redis`: a shared Redis between machines (transports/redis/).
 * A store holds one (or none: a plain in-process store) and does not know which it is.
 * `S` is what `stats()` reports.
 */
export interface Transport<S = unknown> {
  readonly kind: TransportKind;
  /**
   * Opens the link. Resolves once local writes may go out (multicast, Redis: once this process
   * holds the cluster's sessions, or gave up waiting, logged); rejects with
   * `ERR_STICKY_TRANSPORT_FAILED` if it cannot open. Every call returns the same promise.
   */
  start(): Promise<void>;
  /**
   * Resolves once reads may be served: this process holds the sessions it should. Reads wait
   * for it; it is cheap once true. (In a worker, a store created after the worker became ready
   * asks the hub for the state here.)
   */
  synced(): Promise<void>;
  /**
   * Sends a change already applied to the local table. `ipc` resolves once the hub has it (what
   * read-your-writes across workers rests on); the others return at once and deliver on their
   * own (queued and written back while unreachable).
   */
  /**
   * `encoded`: the change in the binary form of multicast/codec.ts `encodeChange`, when the
   * caller has it already (the hub passes the bytes a worker sent on), so it is not encoded again.
   */
  publish(change: Change, encoded?: Buffer): void | Promise<void>;
  /**
   * Read on miss (transports between machines, and a worker's link to a primary that runs one):
   * asks the cluster for a session this replica holds no record of, and resolves once it has
   * arrived, the cluster said it has none, or the bounded wait is over (see replication/miss.ts).
   */
  fetch?(sid: string): Promise<void>;
  /** Closes what this link opened. Idempotent: every call returns the same promise. */
  close(): Promise<void>;
  stats(): S;
  /**
   * Set by the store: called with `false` when it cannot serve at all (no state yet and no way
   * to get it: a Redis that is away at start), and with `true` once it can.
   */
  onAvailability?: ((available: boolean) => void) | undefined;
}

export type TransportKind = 'ipc' | 'multicast' | 'redis';

/**
 * Where a transport between machines delivers what it receives: the machine's replica (the
 * hub's in a cluster primary, a standalone store's otherwise) and whatever that feeds.
 */
export interface ReplicaHost {
  readonly table: SessionTable;
  /** Applies changes received from other machines. */
  applyRemote(changes: readonly Change[]): void;
  /**
   * Drops sessions the cluster no longer knows of, found after this machine was cut off longer
   * than `tombstoneTtl` (what was destroyed elsewhere meanwhile, its tombstone since forgotten):
   * they are not served here any more, and nothing is sent to other machines. Without it, the
   * records are dropped from `table`.
   */
  forget?(sids: readonly string[]): void;
}

/** `host.forget`, or dropping the records from its table. Returns how many it held. */
export function forgetSessions(host: ReplicaHost, sids: readonly string[]): number {
  const held = sids.filter((sid) => host.table.record(sid) !== undefined);
  if (host.forget) host.forget(held);
  else for (const sid of held) host.table.forget(sid);
  return held.length;
}
