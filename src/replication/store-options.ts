import { InvalidOptionError } from '../errors.js';
import { type LoggerOption, QUIET_LOGGER, type ResolvedLogger, resolveLogger } from '../logger.js';
import { boolean, definedFields, integer, MAX_MS, rejectUnknown } from '../validate.js';
import { LIMITS } from './limits.js';
import { resolveTransport } from './transports/choose.js';
import type { MulticastOptions } from './transports/multicast/options.js';
import type { RedisOption } from './transports/redis/options.js';

/** Options of {@link ReplicatedStore}. Every time is in milliseconds. */
export interface ReplicatedStoreOptions extends LoggerOption {
  /**
   * Lifetime of a session whose cookie has no `expires` (a browser-session cookie), in ms.
   * Otherwise the lifetime is the cookie's: `expires - now`; zero or less deletes the session.
   * @default 86400000 (one day)
   */
  ttl?: number;
  /**
   * Ignore express-session's `touch()` (the expiry then moves only when a session is saved).
   * @default false
   */
  disableTouch?: boolean;
  /**
   * A touch that would move a session's expiry later by less than this many ms (and less than a
   * tenth of the session's remaining lifetime) is skipped: it would replicate to every process
   * for almost nothing. A busy session then expires at most that much early.
   * @default 10000
   */
  touchAfter?: number;
  /**
   * Largest session accepted by `set()`, in bytes of its JSON form; a larger one fails with
   * `ERR_STICKY_SESSION_TOO_LARGE` and nothing is written.
   * @default 65536
   */
  maxSessionBytes?: number;
  /**
   * How long a destroyed or expired session is remembered, in ms, so that a write still in
   * flight from another replica cannot bring it back. Longer than any replication delay.
   * @default 600000
   */
  tombstoneTtl?: number;
  /**
   * How often expired sessions and old tombstones are swept from memory, in ms (an unref'd
   * timer: it never keeps the process alive). Expired sessions are never served meanwhile.
   * @default 60000
   */
  sweepInterval?: number;
  /**
   * Replicate to the other machines of the cluster over authenticated UDP multicast (see
   * {@link MulticastOptions}; `secret` or `insecure: true` is required). Standalone, the store
   * opens the machine's socket itself. In a sticky-mesh worker give these options to `sticky()`
   * instead: the primary owns the machine's one socket and the store is fed over IPC.
   * @default undefined (sessions stay in this process, or this cluster)
   */
  multicast?: MulticastOptions;
  /**
   * Replicate to the other machines through Redis (where multicast is not carried): an ioredis
   * client, a `redis://` URL, ioredis options, or `{ client | url | connection, prefix,
   * cluster, ... }`. Reads stay local; Redis holds the authoritative copy. Standalone, the store
   * connects itself; in a sticky-mesh worker give it to `sticky()` instead. Needs ioredis.
   * @default undefined
   */
  redis?: RedisOption;
}

export type ResolvedStoreOptions = Required<
  Omit<ReplicatedStoreOptions, 'multicast' | 'redis' | 'logger'>
> & {
  multicast: MulticastOptions | undefined;
  redis: RedisOption | undefined;
  logger: ResolvedLogger;
};

/** The defaults, in one place. */
export const STORE_DEFAULTS: Readonly<ResolvedStoreOptions> = Object.freeze({
  ttl: 86_400_000,
  disableTouch: false,
  touchAfter: 10_000,
  maxSessionBytes: 64 * 1024,
  tombstoneTtl: 600_000,
  sweepInterval: 60_000,
  multicast: undefined,
  redis: undefined,
  logger: QUIET_LOGGER,
});

const KNOWN = new Set(Object.keys(STORE_DEFAULTS));

/** Applies defaults and validates eagerly: a bad option throws an error that names it. */
export function resolveStoreOptions(options: ReplicatedStoreOptions): ResolvedStoreOptions {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('options', 'an object', options);
  }
  rejectUnknown(options, KNOWN);
  const out = { ...STORE_DEFAULTS, ...definedFields(options) } as ResolvedStoreOptions;
  out.logger = resolveLogger(options.logger, 'logger');
  resolveTransport(out);
  integer('ttl', out.ttl, 1, 2 ** 47);
  integer('touchAfter', out.touchAfter, 0, MAX_MS);
  integer('maxSessionBytes', out.maxSessionBytes, 1, LIMITS.maxSessionBytes);
  integer('tombstoneTtl', out.tombstoneTtl, 1, MAX_MS);
  integer('sweepInterval', out.sweepInterval, 1, MAX_MS);
  boolean('disableTouch', out.disableTouch);
  return out;
}
