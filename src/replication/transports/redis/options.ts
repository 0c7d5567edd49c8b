import { createRequire } from 'node:module';
import { InvalidOptionError, StickyMeshError } from '../../../errors.js';
import { type Logger, QUIET_LOGGER, type ResolvedLogger, resolveLogger } from '../../../logger.js';
import { hasMethods, integer, MAX_MS, rejectUnknown } from '../../../validate.js';

/** The part of an ioredis client this transport uses. */
export interface RedisClientLike {
  readonly status: string;
  readonly options?: { keyPrefix?: string };
  duplicate(): RedisClientLike;
  defineCommand(name: string, def: { numberOfKeys: number; lua: string }): void;
  subscribe(channel: string): Promise<unknown>;
  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]>;
  hgetall(key: string): Promise<Record<string, string>>;
  quit(): Promise<unknown>;
  disconnect(): void;
  on(event: string, listener: (...args: unknown[]) => void): unknown;
  off(event: string, listener: (...args: unknown[]) => void): unknown;
  pipeline(): RedisPipelineLike;
}

/**
 * The commands of an ioredis pipeline the transport uses: HGETALL (scans) and its Lua write
 * (`defineCommand` adds it to pipelines too), queued, then sent in one write by `exec`.
 */
export interface RedisPipelineLike {
  hgetall(key: string): unknown;
  exec(): Promise<[Error | null, unknown][] | null>;
}

/** Options of replication through Redis (the `redis` option of sticky() and ReplicatedStore). */
export interface RedisTransportOptions {
  /** An ioredis client to use (the transport adds a duplicate for pub/sub; yours stays open). */
  client?: RedisClientLike;
  /** A Redis URL (`redis://user:pass@host:6379/0`); needs ioredis installed. */
  url?: string;
  /** ioredis connection options (host, port, password, tls...); needs ioredis installed. */
  connection?: Record<string, unknown>;
  /**
   * Prefix of every key and channel this transport uses.
   * @default "sticky-mesh:"
   */
  prefix?: string;
  /**
   * Name of the cluster: clusters sharing a Redis with different names never see each other's
   * sessions.
   * @default "sticky-mesh"
   */
  cluster?: string;
  /**
   * Most own writes held until Redis has answered them: queued while Redis is unreachable or
   * not answering, and in flight. Beyond it (or `maxQueueBytes`) the oldest waiting write is
   * dropped and counted (it still reaches Redis: every local record newer than Redis's is
   * written back at the next rebuild, after the reconnect or once the queue has drained). A
   * write alone is always sent while Redis is reachable (`0`: one at a time, nothing waits).
   * @default 10000
   */
  maxQueue?: number;
  /**
   * Most bytes of own writes held until Redis has answered them (each its session JSON, counted
   * in characters, plus about 256), in flight included; beyond it the oldest waiting write is
   * dropped and counted, as with `maxQueue`.
   * @default 16777216 (16 MiB)
   */
  maxQueueBytes?: number;
  /**
   * How long a starting machine waits for its first rebuild from Redis before serving anyway
   * (logged), in ms.
   * @default 10000
   */
  syncTimeout?: number;
  /**
   * How long a destroyed session's tombstone is kept in Redis, in ms, so that a late write
   * cannot bring it back. Records also stay this long after they expire.
   * @default 600000
   */
  tombstoneTtl?: number;
  /**
   * Read on miss: a read of a session this machine holds no record of (not even a tombstone)
   * reads it from Redis and waits up to this long, in ms (a client moved here right after its
   * login elsewhere, before the change was published here). An id Redis does not hold is then
   * remembered as unknown for 60 s. 0 turns read on miss off.
   * @default 500
   */
  readOnMissWait?: number;
  /**
   * Where connection changes and rebuilds are logged (console, pino, winston, bunyan): the first
   * rebuild at `info`, a lost connection, failed rebuilds and dropped sessions at `warn`.
   * @default the `logger` of sticky() or of the store, else quiet (NODE_DEBUG=sticky-mesh only)
   */
  logger?: Logger;
}

/** The `redis` option: a client, a URL, ioredis options, or {@link RedisTransportOptions}. */
export type RedisOption =
  | RedisClientLike
  | string
  | RedisTransportOptions
  | Record<string, unknown>;

export interface ResolvedRedisOptions {
  client: RedisClientLike | undefined;
  url: string | undefined;
  connection: Record<string, unknown> | undefined;
  prefix: string;
  cluster: string;
  maxQueue: number;
  maxQueueBytes: number;
  syncTimeout: number;
  tombstoneTtl: number;
  readOnMissWait: number;
  logger: ResolvedLogger;
}

/** The defaults, in one place (`client`, `url` and `connection` have none: one is required). */
export const REDIS_DEFAULTS = Object.freeze({
  prefix: 'sticky-mesh:',
  cluster: 'sticky-mesh',
  maxQueue: 10_000,
  maxQueueBytes: 16 * 1024 * 1024,
  syncTimeout: 10_000,
  tombstoneTtl: 600_000,
  readOnMissWait: 500,
});

const OWN_KEYS = new Set<string>([
  'client',
  'url',
  'connection',
  'logger',
  ...Object.keys(REDIS_DEFAULTS),
]);

function isClient(value: unknown): value is RedisClientLike {
  return hasMethods(value, 'duplicate', 'defineCommand');
}

/**
 * Validates the `redis` option; `name` is where it was given (in errors), `logger` is used when
 * it names none of its own.
 */
export function resolveRedisOptions(
  value: unknown,
  name = 'redis',
  logger: ResolvedLogger = QUIET_LOGGER,
): ResolvedRedisOptions {
  let o: RedisTransportOptions;
  if (typeof value === 'string') o = { url: value };
  else if (isClient(value)) o = { client: value };
  else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    o = keys.some((k) => OWN_KEYS.has(k))
      ? (value as RedisTransportOptions)
      : { connection: value as Record<string, unknown> };
    // Plain ioredis options are ioredis's to check.
    if (o === value) rejectUnknown(o, OWN_KEYS, (key) => `${name}.${key}`);
  } else {
    throw new InvalidOptionError(
      name,
      'an ioredis client, a redis:// URL, ioredis options or { client | url | connection, prefix, cluster, ... }',
      value,
    );
  }
  const given = [o.client, o.url, o.connection].filter((v) => v !== undefined).length;
  if (given !== 1) {
    throw new InvalidOptionError(name, 'exactly one of client, url or connection', value);
  }
  if (o.client !== undefined && !isClient(o.client)) {
    throw new InvalidOptionError(`${name}.client`, 'an ioredis client', o.client);
  }
  if (o.url !== undefined && (typeof o.url !== 'string' || !/^rediss?:\/\//.test(o.url))) {
    throw new InvalidOptionError(`${name}.url`, 'a redis:// or rediss:// URL', o.url);
  }
  const D = REDIS_DEFAULTS;
  const prefix = o.prefix ?? D.prefix;
  const cluster = o.cluster ?? D.cluster;
  for (const [key, v] of [
    ['prefix', prefix],
    ['cluster', cluster],
  ] as const) {
    if (typeof v !== 'string' || v.length > 200 || /[*?[\]\\]/.test(v)) {
      throw new InvalidOptionError(`${name}.${key}`, 'a string without * ? [ ] \\', v);
    }
  }
  if (cluster.length === 0 || cluster.includes(':')) {
    // With a ':' one cluster's key pattern could match another's keys.
    throw new InvalidOptionError(`${name}.cluster`, 'a non-empty string without ":"', cluster);
  }
  return {
    client: o.client,
    url: o.url,
    connection: o.connection,
    prefix,
    cluster,
    maxQueue: integer(`${name}.maxQueue`, o.maxQueue ?? D.maxQueue, 0, 10_000_000),
    maxQueueBytes: integer(`${name}.maxQueueBytes`, o.maxQueueBytes ?? D.maxQueueBytes, 0, 2 ** 40),
    syncTimeout: integer(`${name}.syncTimeout`, o.syncTimeout ?? D.syncTimeout, 1, MAX_MS),
    tombstoneTtl: integer(`${name}.tombstoneTtl`, o.tombstoneTtl ?? D.tombstoneTtl, 1, MAX_MS),
    readOnMissWait: integer(
      `${name}.readOnMissWait`,
      o.readOnMissWait ?? D.readOnMissWait,
      0,
      60_000,
    ),
    logger: resolveLogger(o.logger, `${name}.logger`, logger),
  };
}

/** A new ioredis client for the URL or connection options (ioredis is an optional peer). */
export function openClient(o: ResolvedRedisOptions): RedisClientLike {
  let Redis: new (...args: unknown[]) => RedisClientLike;
  try {
    const loaded = createRequire(import.meta.url)('ioredis') as {
      default?: unknown;
      Redis?: unknown;
    };
    Redis = (loaded.Redis ?? loaded.default ?? loaded) as typeof Redis;
  } catch (err) {
    throw new StickyMeshError(
      'ERR_STICKY_TRANSPORT_FAILED',
      'sticky-mesh: the redis option needs the ioredis package: npm install ioredis',
      { cause: err },
    );
  }
  // The offline queue is off: while Redis is away this transport queues (bounded) itself, and it
  // never has more than MAX_IN_FLIGHT writes outstanding, which bounds ioredis's command queue
  // when a link swallows commands. No commandTimeout: a command that timed out stays in that
  // queue until answered or the connection closes, so sending it again would grow it again.
  const common = { enableOfflineQueue: false, maxRetriesPerRequest: 1 };
  return o.url !== undefined ? new Redis(o.url, common) : new Redis({ ...o.connection, ...common });
}
