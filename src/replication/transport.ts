import { StickyMeshError } from '../errors.js';
import type { ReplicaHost } from './mesh.js';
import {
  type MulticastOptions,
  type MulticastStats,
  MulticastTransport,
  resolveMulticastOptions,
} from './multicast.js';
import { type RedisOption, type RedisStats, RedisTransport, resolveRedisOptions } from './redis.js';
import type { Change } from './table.js';

/** What carries a machine's changes to the other machines. */
export interface Transport {
  readonly kind: 'multicast' | 'redis';
  /** Resolves once this machine holds the cluster's sessions (or gave up waiting, logged). */
  start(): Promise<void>;
  publish(change: Change): void;
  close(): Promise<void>;
  stats(): MulticastStats | RedisStats;
}

export interface TransportOptions {
  multicast?: MulticastOptions | undefined;
  redis?: RedisOption | undefined;
}

/** Validates whichever transport option is given (at most one); returns what to build. */
export function resolveTransport(
  options: TransportOptions,
): ((host: ReplicaHost) => Transport) | undefined {
  const { multicast, redis } = options;
  if (multicast !== undefined && redis !== undefined) {
    throw new StickyMeshError(
      'ERR_STICKY_INVALID_OPTION',
      'sticky-mesh: give either "multicast" or "redis", not both: one transport replicates a machine',
    );
  }
  if (multicast !== undefined) {
    const resolved = resolveMulticastOptions(multicast);
    return (host) =>
      Object.assign(new MulticastTransport(resolved, host), { kind: 'multicast' as const });
  }
  if (redis !== undefined) {
    const resolved = resolveRedisOptions(redis);
    return (host) => Object.assign(new RedisTransport(resolved, host), { kind: 'redis' as const });
  }
  return undefined;
}
