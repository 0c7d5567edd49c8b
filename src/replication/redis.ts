import { createRequire } from 'node:module';
import { debug } from '../debug.js';
import { InvalidOptionError, StickyMeshError } from '../errors.js';
import { integer, MAX_MS } from '../options.js';
import { compareVersions, newNodeId } from './clock.js';
import type { ReplicaHost } from './mesh.js';
import { type MulticastLogger, toLogger } from './multicast.js';
import type { Change } from './table.js';
import { parseChange } from './wire.js';

/**
 * Replication between machines through Redis, for networks without multicast.
 *
 * Redis holds the authoritative shared copy: one hash per session (`t`, `c`, `n`: the version;
 * `e`: the expiry; `d`: the session JSON, absent in a tombstone), written only through a Lua
 * script that compares versions, so a stale write never overwrites a newer one and a tombstone
 * blocks a late write, atomically. The same script publishes each change it applied on the
 * cluster's channel, and every machine applies it to its local replica: reads stay local.
 *
 * Pub/sub rather than streams: a machine that was disconnected (or is new) rebuilds from the
 * records themselves by scanning, so it needs no replayable log; pub/sub keeps nothing in Redis
 * to trim, and a message reaches every machine once. A machine subscribes before it scans and
 * applies what arrived meanwhile after, so nothing published during the scan is missed.
 *
 * While Redis is unreachable the machine serves from its replica and queues its own writes
 * (bounded, counted); on reconnect it sends the queue, rebuilds by scanning, and then writes
 * back every local record Redis lacks or holds older (so even writes dropped from a full queue
 * reach Redis and the other machines).
 */

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
  pipeline(): { hgetall(key: string): unknown; exec(): Promise<[Error | null, unknown][] | null> };
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
   * Most own writes queued while Redis is unreachable; beyond it the oldest are dropped and
   * counted (they still reach Redis: every local record newer than Redis's is written back on
   * reconnect).
   * @default 10000
   */
  maxQueue?: number;
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
  /** Where connection changes and rebuilds are logged (console, bunyan, winston, pino). */
  logger?: MulticastLogger;
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
  syncTimeout: number;
  tombstoneTtl: number;
  logger: { info(m: string): void; warn(m: string): void; error(m: string): void };
}

const OWN_KEYS = new Set([
  'client',
  'url',
  'connection',
  'prefix',
  'cluster',
  'maxQueue',
  'syncTimeout',
  'tombstoneTtl',
  'logger',
]);

function isClient(value: unknown): value is RedisClientLike {
  return (
    typeof value === 'object' &&
    value !== null &&
    typeof (value as RedisClientLike).duplicate === 'function' &&
    typeof (value as RedisClientLike).defineCommand === 'function'
  );
}

/** Validates the `redis` option; `name` is where it was given (in errors). */
export function resolveRedisOptions(value: unknown, name = 'redis'): ResolvedRedisOptions {
  let o: RedisTransportOptions;
  if (typeof value === 'string') o = { url: value };
  else if (isClient(value)) o = { client: value };
  else if (typeof value === 'object' && value !== null && !Array.isArray(value)) {
    const keys = Object.keys(value);
    o = keys.some((k) => OWN_KEYS.has(k))
      ? (value as RedisTransportOptions)
      : { connection: value as Record<string, unknown> };
    if (o !== value) {
      // ioredis options: nothing to check here, ioredis does.
    } else {
      for (const key of keys) {
        if (!OWN_KEYS.has(key)) {
          throw new InvalidOptionError(`${name}.${key}`, 'a known option (is it misspelt?)', value);
        }
      }
    }
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
  const prefix = o.prefix ?? 'sticky-mesh:';
  const cluster = o.cluster ?? 'sticky-mesh';
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
    maxQueue: integer(`${name}.maxQueue`, o.maxQueue ?? 10_000, 0, 10_000_000),
    syncTimeout: integer(`${name}.syncTimeout`, o.syncTimeout ?? 10_000, 1, MAX_MS),
    tombstoneTtl: integer(`${name}.tombstoneTtl`, o.tombstoneTtl ?? 600_000, 1, MAX_MS),
    logger: toLogger(o.logger),
  };
}

/**
 * Applies one change to a session's hash if its version is newer, and publishes it.
 * KEYS[1]: the session's key. ARGV: op, t, c, n, expiresAt, data, tombstoneTtl, now, channel,
 * message. Returns 1 if applied, 0 if stale. (HGET per field: it behaves the same in Redis and
 * in the Lua of test doubles.)
 */
const APPLY_LUA = `
local key = KEYS[1]
local op, t, c, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local e, ttl, now = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function field(f)
  local v = redis.call('HGET', key, f)
  if v == false or v == nil then return nil end
  return v
end
local ct = field('t')
if ct then
  ct = tonumber(ct)
  local cc, cn = tonumber(field('c')), field('n')
  local newer = t > ct or (t == ct and (c > cc or (c == cc and n > cn)))
  if not newer then return 0 end
end
if op == 'touch' then
  local cur = tonumber(field('e'))
  if not ct or not cur or field('d') == nil or e <= cur then return 0 end
  redis.call('HSET', key, 'e', e)
  redis.call('PEXPIREAT', key, e + ttl)
elseif op == 'set' then
  if e <= now then return 0 end
  redis.call('DEL', key)
  redis.call('HSET', key, 't', t, 'c', c, 'n', n, 'e', e, 'd', ARGV[6])
  redis.call('PEXPIREAT', key, e + ttl)
else
  redis.call('DEL', key)
  redis.call('HSET', key, 't', t, 'c', c, 'n', n, 'e', now + ttl)
  redis.call('PEXPIREAT', key, now + ttl)
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return 1
`;

export interface RedisStats {
  machineId: string;
  state: 'idle' | 'syncing' | 'synced' | 'closed';
  connected: boolean;
  /** Own changes written to Redis, and how many of those Redis already held newer. */
  written: number;
  stale: number;
  /** Changes from other machines applied. */
  received: number;
  /** Own writes waiting for Redis, and how many were dropped from a full queue. */
  queued: number;
  dropped: number;
  /** Full rebuilds from Redis (start and every reconnect), and records written back after one. */
  rebuilds: number;
  reconciled: number;
  /** Messages on the channel that did not parse. */
  malformed: number;
  errors: number;
}

type Command = (key: string, ...args: (string | number)[]) => Promise<number>;

/**
 * One machine's link to Redis: a command connection (the Lua writes, scans) and a subscriber.
 * Owned by the cluster primary, or by a standalone store.
 */
export class RedisTransport {
  readonly machineId = newNodeId();
  private readonly counters = {
    written: 0,
    stale: 0,
    received: 0,
    dropped: 0,
    rebuilds: 0,
    reconciled: 0,
    malformed: 0,
    errors: 0,
  };
  private state: RedisStats['state'] = 'idle';
  private cmd: RedisClientLike | undefined;
  private sub: RedisClientLike | undefined;
  private ownsCmd = false;
  private queue: Change[] = [];
  /** Messages received while a rebuild scans: applied after it. */
  private held: Change[] | undefined;
  /** During a rebuild, the newest version heard per session (not to be written back). */
  private heard: Map<string, Change['version']> | undefined;
  /** The subscription is confirmed on the current subscriber connection. */
  private subscribed = false;
  private rebuilding: Promise<void> | undefined;
  /** Set at start and whenever a connection drops: the next ready rebuilds. */
  private stale = true;
  private readyResolve: (() => void) | undefined;
  private readonly readyPromise: Promise<void>;
  private synced = false;
  private closing: Promise<void> | undefined;
  private readonly channel: string;
  private readonly keyPrefix: string;
  private readonly listeners: [RedisClientLike, string, (...a: unknown[]) => void][] = [];
  /** Called when the store cannot serve at all (no state yet and no Redis), and when it can. */
  onAvailability: ((available: boolean) => void) | undefined;

  constructor(
    private readonly options: ResolvedRedisOptions,
    private readonly host: ReplicaHost,
  ) {
    this.channel = `${options.prefix}${options.cluster}:changes`;
    this.keyPrefix = `${options.prefix}${options.cluster}:s:`;
    this.readyPromise = new Promise((resolve) => {
      this.readyResolve = resolve;
    });
  }

  /**
   * Connects, subscribes and rebuilds the replica from Redis; resolves once that is done, or
   * after `syncTimeout` (logged; the rebuild goes on in the background).
   */
  start(): Promise<void> {
    if (this.state !== 'idle') return this.readyPromise;
    this.state = 'syncing';
    const o = this.options;
    try {
      this.cmd = o.client ?? this.connect();
    } catch (err) {
      this.state = 'closed';
      return Promise.reject(err);
    }
    this.ownsCmd = o.client === undefined;
    this.cmd.defineCommand('stickyMeshApply', { numberOfKeys: 1, lua: APPLY_LUA });
    this.sub = this.cmd.duplicate();
    this.listen(this.sub, 'message', (channel, message) => this.onMessage(channel, message));
    this.listen(this.cmd, 'ready', () => this.onReady());
    for (const c of [this.cmd, this.sub]) {
      this.listen(c, 'error', (err) => {
        this.counters.errors++;
        debug('redis: %s', (err as Error).message);
      });
      this.listen(c, 'end', () => this.onLost(c));
      this.listen(c, 'close', () => this.onLost(c));
    }
    // Subscribe on every (re)connection of the subscriber (a repeated SUBSCRIBE is harmless) and
    // rebuild only once it is confirmed: what is published from then on is never missed.
    const subscribe = () => {
      (this.sub as RedisClientLike).subscribe(this.channel).then(
        () => {
          this.subscribed = true;
          this.onReady();
        },
        (err: Error) => debug('redis: subscribe failed: %s', err.message),
      );
    };
    this.listen(this.sub, 'ready', subscribe);
    if (this.sub.status === 'ready') subscribe();
    const timer = setTimeout(() => {
      if (!this.synced) {
        o.logger.warn(
          `sticky-mesh: no session state from Redis in ${o.syncTimeout} ms; serving with what ` +
            'this machine holds, and still trying',
        );
        this.onAvailability?.(false);
        this.resolveReady();
      }
    }, o.syncTimeout);
    timer.unref();
    return this.readyPromise;
  }

  ready(): Promise<void> {
    return this.readyPromise;
  }

  /** Writes a local change to Redis (queued while Redis is unreachable). */
  publish(change: Change): void {
    if (this.state === 'closed' || this.state === 'idle') return;
    if (!this.connected()) {
      this.enqueue(change);
      return;
    }
    this.write(change).catch(() => this.enqueue(change));
  }

  stats(): RedisStats {
    return {
      machineId: this.machineId,
      state: this.state,
      connected: this.connected(),
      ...this.counters,
      queued: this.queue.length,
    };
  }

  /** Closes the connections it opened (a client passed in stays open). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.state = 'closed';
      this.resolveReady();
      for (const [client, event, fn] of this.listeners) client.off(event, fn);
      const quit = async (c: RedisClientLike | undefined) => {
        if (!c) return;
        try {
          await Promise.race([c.quit(), new Promise((r) => setTimeout(r, 1000).unref())]);
        } catch {
          // already gone
        }
        c.disconnect();
      };
      // Let writes already sent finish before the connection goes.
      await quit(this.sub);
      if (this.ownsCmd) await quit(this.cmd);
    })();
    return this.closing;
  }

  // ---- internals -------------------------------------------------------------------------------

  private connect(): RedisClientLike {
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
    const o = this.options;
    // The offline queue is off: while Redis is away this transport queues (bounded) itself.
    const common = { enableOfflineQueue: false, maxRetriesPerRequest: 1 };
    return o.url !== undefined
      ? new Redis(o.url, common)
      : new Redis({ ...o.connection, ...common });
  }

  private listen(client: RedisClientLike, event: string, fn: (...a: unknown[]) => void): void {
    client.on(event, fn);
    this.listeners.push([client, event, fn]);
  }

  private connected(): boolean {
    return this.cmd?.status === 'ready' && this.sub?.status === 'ready' && this.subscribed;
  }

  private write(change: Change): Promise<number> {
    const cmd = this.cmd as unknown as Record<string, Command>;
    const apply = cmd.stickyMeshApply as Command;
    const v = change.version;
    const message = JSON.stringify({ m: this.machineId, c: change });
    return apply
      .call(
        this.cmd,
        this.keyPrefix + change.sid,
        change.op,
        v.t,
        v.c,
        v.n,
        change.op === 'destroy' ? 0 : change.expiresAt,
        change.op === 'set' ? change.data : '',
        this.options.tombstoneTtl,
        Date.now(),
        this.channel,
        message,
      )
      .then((applied) => {
        this.counters.written++;
        if (applied !== 1) this.counters.stale++;
        return applied;
      });
  }

  private enqueue(change: Change): void {
    if (this.options.maxQueue === 0) {
      this.counters.dropped++;
      return;
    }
    if (this.queue.length >= this.options.maxQueue) {
      this.queue.shift();
      this.counters.dropped++;
    }
    this.queue.push(change);
  }

  private onMessage(channel: unknown, message: unknown): void {
    if (channel !== this.channel || this.state === 'closed') return;
    let parsed: { m?: unknown; c?: unknown };
    try {
      parsed = JSON.parse(String(message)) as typeof parsed;
    } catch {
      this.counters.malformed++;
      return;
    }
    if (parsed?.m === this.machineId) return;
    const change = parseChange(parsed?.c);
    if (!change) {
      this.counters.malformed++;
      return;
    }
    this.counters.received++;
    if (this.heard && change.op !== 'touch') {
      const before = this.heard.get(change.sid);
      if (!before || compareVersions(change.version, before) > 0) {
        this.heard.set(change.sid, change.version);
      }
    }
    if (this.held) this.held.push(change);
    else this.host.applyRemote([change]);
  }

  private onLost(client: RedisClientLike): void {
    if (client === this.sub) this.subscribed = false;
    this.stale = true;
    if (this.state === 'synced') {
      this.options.logger.warn(
        "sticky-mesh: Redis connection lost; serving from this machine's replica, queueing writes",
      );
      this.state = 'syncing';
    }
  }

  /** Both connections are up (first time or again): send the queue, rebuild, reconcile. */
  private onReady(): void {
    if (this.state === 'closed' || !this.connected() || !this.stale || this.rebuilding) return;
    this.stale = false;
    this.rebuilding = this.rebuild()
      .catch((err: Error) => {
        this.counters.errors++;
        this.options.logger.warn(`sticky-mesh: rebuild from Redis failed: ${err.message}`);
      })
      .finally(() => {
        this.rebuilding = undefined;
        // A drop during the rebuild (or a failed one): again, once connected.
        if (this.state === 'syncing') this.stale = true;
        if (this.stale) setTimeout(() => this.onReady(), 200).unref();
      });
  }

  private async rebuild(): Promise<void> {
    this.state = 'syncing';
    this.held = [];
    try {
      // Own writes made while away go first: the scan then sees them.
      const queued = this.queue;
      this.queue = [];
      for (let i = 0; i < queued.length; i++) {
        try {
          await this.write(queued[i] as Change);
        } catch (err) {
          // Still away: this one and every later one wait for the next attempt.
          for (const change of queued.slice(i)) this.enqueue(change);
          throw err;
        }
      }
      this.heard = new Map();
      const inRedis = await this.scan();
      const held = this.held;
      this.held = undefined;
      this.host.applyRemote(held);
      await this.writeBack(inRedis);
      if ((this.state as RedisStats['state']) === 'closed') return;
      this.counters.rebuilds++;
      this.state = 'synced';
      if (!this.synced) {
        this.synced = true;
        this.options.logger.info(
          `sticky-mesh: sessions rebuilt from Redis (${inRedis.size} records)`,
        );
      }
      this.onAvailability?.(true);
      this.resolveReady();
    } finally {
      this.heard = undefined;
      if (this.held) {
        const held = this.held;
        this.held = undefined;
        this.host.applyRemote(held);
      }
    }
  }

  /**
   * Writes back whatever this machine holds newer than Redis (writes dropped from a full queue,
   * made while the rebuild ran, or lost when Redis restarted empty), so Redis and every machine
   * end up the same. What came from Redis itself (scanned, or heard during the rebuild) is not
   * sent again. A session is written back with its touched expiry, not its last save's.
   */
  private async writeBack(
    inRedis: Map<string, { version: Change['version']; e: number }>,
  ): Promise<void> {
    const table = this.host.table;
    const pending: Promise<unknown>[] = [];
    const known = (sid: string) => {
      const scanned = inRedis.get(sid)?.version;
      const heard = this.heard?.get(sid);
      if (!scanned) return heard;
      if (!heard) return scanned;
      return compareVersions(heard, scanned) > 0 ? heard : scanned;
    };
    for (const change of table.changes()) {
      if (this.state === 'closed') return;
      let out: Change | undefined;
      if (change.op === 'touch') {
        // A touch Redis has not seen: its record is there with an earlier expiry.
        const r = inRedis.get(change.sid);
        if (r && compareVersions(change.version, r.version) > 0 && change.expiresAt > r.e) {
          out = change;
        }
      } else {
        const there = known(change.sid);
        if (there === undefined || compareVersions(change.version, there) > 0) {
          out =
            change.op === 'set'
              ? { ...change, expiresAt: table.record(change.sid)?.expiresAt ?? change.expiresAt }
              : change;
        }
      }
      if (!out) continue;
      this.counters.reconciled++;
      pending.push(this.write(out));
      // Pipelined, in bounded batches.
      if (pending.length >= 256) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
  }

  /** Reads every record of the cluster into the replica; returns what Redis holds of each. */
  private async scan(): Promise<Map<string, { version: Change['version']; e: number }>> {
    const cmd = this.cmd as RedisClientLike;
    const clientPrefix = cmd.options?.keyPrefix ?? '';
    const pattern = `${clientPrefix}${this.keyPrefix}*`;
    const versions = new Map<string, { version: Change['version']; e: number }>();
    let cursor = '0';
    do {
      const [next, keys] = await cmd.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
      cursor = next;
      if (keys.length === 0) continue;
      const pipe = cmd.pipeline();
      const names = keys.map((k) => k.slice(clientPrefix.length));
      for (const k of names) pipe.hgetall(k);
      const results = (await pipe.exec()) ?? [];
      const changes: Change[] = [];
      results.forEach(([err, value], i) => {
        if (err) return;
        const change = toChange((names[i] as string).slice(this.keyPrefix.length), value);
        if (!change) return;
        versions.set(change.sid, {
          version: change.version,
          e: change.op === 'set' ? change.expiresAt : 0,
        });
        changes.push(change);
      });
      this.host.applyRemote(changes);
    } while (cursor !== '0');
    return versions;
  }

  private resolveReady(): void {
    this.readyResolve?.();
    this.readyResolve = undefined;
  }
}

/** A session hash as the script writes it, back to a change; `undefined` if it is not one. */
function toChange(sid: string, value: unknown): Change | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const h = value as Record<string, string>;
  if (h.t === undefined) return undefined;
  const version = { t: Number(h.t), c: Number(h.c), n: h.n };
  const expiresAt = Number(h.e);
  return parseChange(
    h.d === undefined
      ? { op: 'destroy', sid, version }
      : { op: 'set', sid, data: h.d, expiresAt, version },
  );
}
