export { InvalidOptionError, StickyMeshError, type StickyMeshErrorCode } from './errors.js';
export type { Logger, Logger as MulticastLogger } from './logger.js';
export type { ReplaceReason, SlotState, SlotStats, WorkerExitInfo } from './master/pool.js';
export type { PrimaryEvents, PrimaryState, PrimaryStats, StickyPrimary } from './master/primary.js';
export {
  ReloadError,
  type ReloadReport,
  type ReloadSlot,
  type ReloadStep,
} from './master/reload.js';
export { METRICS_DEFAULTS, type MetricsOptions } from './metrics/options.js';
export {
  DEFAULTS,
  SESSION_AFFINITY_DEFAULTS,
  type SessionAffinityOptions,
  type StickyOptions,
  type SyncOptions,
} from './options.js';
export { LIMITS } from './replication/limits.js';
export { ReplicatedStore, type SessionData } from './replication/store.js';
export { type ReplicatedStoreOptions, STORE_DEFAULTS } from './replication/store-options.js';
export {
  MULTICAST_DEFAULTS,
  type MulticastOptions,
} from './replication/transports/multicast/options.js';
export {
  MULTICAST_STORE_DEFAULTS,
  type MulticastStoreConstructor,
  type MulticastStoreOptions,
  multicastStore,
} from './replication/transports/multicast/store.js';
export type { MulticastStats } from './replication/transports/multicast/transport.js';
export {
  REDIS_DEFAULTS,
  type RedisClientLike,
  type RedisOption,
  type RedisTransportOptions,
} from './replication/transports/redis/options.js';
export type { RedisStats } from './replication/transports/redis/transport.js';
export type { RoutingScope, ScopedRequest } from './routing/scope.js';
export { type StickyCluster, sticky } from './sticky.js';
export type {
  AnyServer,
  ServerFactory,
  StickyWorker,
  WorkerEvents,
  WorkerState,
  WorkerStats,
} from './worker/worker.js';
