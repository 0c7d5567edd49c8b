import type { MissCounters } from '../../miss.js';

/** What a machine's Redis transport reports (`stats().redis`, a store's `redisStats()`). */
export interface RedisStats {
  machineId: string;
  state: 'idle' | 'syncing' | 'synced' | 'closed';
  connected: boolean;
  /** Own changes written to Redis, and how many of those Redis already held newer. */
  written: number;
  stale: number;
  /** Changes from other machines applied. */
  received: number;
  /**
   * Own writes held until Redis answers them (waiting or in flight) and their bytes (see
   * `maxQueue`, `maxQueueBytes`), and how many were dropped from a full queue.
   */
  queued: number;
  queuedBytes: number;
  dropped: number;
  /** Full rebuilds from Redis (start and every reconnect), and records written back after one. */
  rebuilds: number;
  reconciled: number;
  /** Sessions dropped after an outage longer than `tombstoneTtl` (Redis no longer held them). */
  forgotten: number;
  /** Messages on the channel that did not parse. */
  malformed: number;
  errors: number;
  /** Reads that missed here and read the record from Redis (see `readOnMissWait`). */
  readOnMiss: MissCounters;
}
