export { InvalidOptionError, StickyMeshError, type StickyMeshErrorCode } from './errors.js';
export type { SlotState, SlotStats, WorkerExitInfo } from './master/pool.js';
export type { PrimaryEvents, PrimaryState, PrimaryStats, StickyPrimary } from './master/primary.js';
export {
  DEFAULTS,
  type SessionAffinityOptions,
  type StickyOptions,
  type SyncOptions,
} from './options.js';
export type {
  MulticastLogger,
  MulticastOptions,
  MulticastStats,
} from './replication/multicast.js';
export {
  type MulticastStoreConstructor,
  type MulticastStoreOptions,
  multicastStore,
} from './replication/multicast-store.js';
export {
  ReplicatedStore,
  type ReplicatedStoreOptions,
  type SessionData,
} from './replication/store.js';
export { type StickyCluster, sticky } from './sticky.js';
export type {
  AnyServer,
  ServerFactory,
  StickyWorker,
  WorkerEvents,
  WorkerState,
} from './worker/worker.js';
