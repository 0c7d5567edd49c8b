import os from 'node:os';
import { InvalidOptionError } from './errors.js';
import { type LoggerOption, QUIET_LOGGER, type ResolvedLogger, resolveLogger } from './logger.js';
import type { MetricsOptions, ResolvedMetricsOptions } from './metrics/options.js';
import { resolveMetricsOptions } from './metrics/options.js';
import {
  type ResolvedSessionAffinity,
  reloadSignal,
  type SessionAffinityOptions,
  type SyncOptions,
  sessionAffinity,
  sync,
} from './option-shapes.js';
import type { MulticastOptions } from './replication/transports/multicast/options.js';
import type { RedisOption } from './replication/transports/redis/options.js';
import { checkScope, isEveryRequest, type RoutingScope } from './routing/scope.js';
import { boolean, HTTP_TOKEN, integer, MAX_MS, rejectUnknown } from './validate.js';

export {
  type ResolvedSessionAffinity,
  SESSION_AFFINITY_DEFAULTS,
  type SessionAffinityOptions,
  type SyncOptions,
} from './option-shapes.js';

/** Options of {@link sticky}. Every time is in milliseconds. */
export interface StickyOptions extends LoggerOption {
  /**
   * Number of worker processes, each in a fixed slot `0 .. num-1`.
   * @default os.availableParallelism()
   */
  num?: number;
  /**
   * Seed of the routing hash (an unsigned 32-bit integer). Balancers that share a seed and a
   * worker count route a key to the same slot, so siblings agree without talking.
   * @default 0x5eed1e55
   */
  seed?: number;
  /**
   * Drain gracefully on SIGTERM and SIGINT in the primary (then re-raise the signal so the process
   * ends as it would have); workers ignore those signals and wait for the primary's word, so a
   * terminal's Ctrl-C, which reaches every process of the group, still drains.
   * @default true
   */
  handleSignals?: boolean;
  /**
   * The signal that starts a rolling reload (`reload()`) in the primary, when `handleSignals` is
   * on; `false`: no signal does.
   * @default 'SIGHUP'
   */
  reloadSignal?: NodeJS.Signals | false;
  /**
   * A worker replaced by a rolling reload closes its upgraded connections (WebSockets) at random
   * moments spread over this many ms, so their clients do not all reconnect at once (at most half
   * of `shutdownTimeout` is used).
   * @default 2000
   */
  closeJitter?: number;
  /**
   * How long `close()` lets workers finish in-flight requests before they are killed, in ms.
   * The same bounds the drain of a worker a rolling reload replaces.
   * @default 10000
   */
  shutdownTimeout?: number;
  /**
   * Delay before re-forking a crashed worker, in ms. Doubles with each crash in a row.
   * @default 100
   */
  respawnDelay?: number;
  /**
   * Upper bound of the respawn delay, in ms.
   * @default 30000
   */
  maxRespawnDelay?: number;
  /**
   * A worker that stays up this long after becoming ready resets its crash count, in ms.
   * @default 30000
   */
  respawnResetAfter?: number;
  /**
   * How long a connection may wait for a worker while no worker at all is ready (startup, every
   * worker crashed), in ms. After it the client gets `503 Service Unavailable`. 0 answers at once.
   * @default 5000
   */
  pendingTimeout?: number;
  /**
   * Most connections held while no worker is ready; further ones get `503` at once.
   * @default 1024
   */
  maxPendingConnections?: number;
  /**
   * A worker that is not ready this long after it was forked is killed and re-forked, in ms.
   * @default 30000
   */
  readyTimeout?: number;
  /**
   * IPC serialization between primary and workers (`cluster.setupPrimary`). Use `'advanced'` when
   * something else in the app (e.g. `@socket.io/cluster-adapter` with binary payloads) needs it.
   * @default 'json'
   */
  serialization?: 'json' | 'advanced';
  /**
   * Proxy mode: the primary reads each connection's request head and routes by the client
   * address in `header` instead of the TCP peer (a reverse proxy or CDN). Every request of a
   * kept-open proxy connection is routed by its own header: the worker reads each next request
   * head before its server does, and hands the connection back to the primary when the request
   * belongs to another worker (the connection stays open, no byte is lost).
   * @default false
   */
  proxy?: boolean;
  /**
   * The request header that holds the client address in proxy mode, matched exactly and
   * case-insensitively: an `X-Forwarded-For`-style list, or `forwarded` for RFC 7239.
   * @default 'x-forwarded-for'
   */
  header?: string;
  /**
   * How many proxies of yours append to `header`: n takes the n-th address from the right, the
   * one your outermost proxy wrote, so nothing a client writes into the header picks its worker.
   * 0 takes the left-most address, which the client wrote itself (any client can choose its
   * worker; only for a header nobody but your proxy can set).
   * @default 1 (one proxy, e.g. nginx with `$proxy_add_x_forwarded_for`)
   */
  trustedProxies?: number;
  /**
   * Proxy mode, header missing or unusable: `true` routes by the TCP peer address, `false`
   * answers `400 Bad Request` and closes.
   * @default false
   */
  ignoreMissingHeader?: boolean;
  /**
   * Proxy mode: largest request head the primary reads, in bytes; a larger one gets `431`.
   * @default 16384
   */
  maxHeaderBytes?: number;
  /**
   * Proxy mode: time a client has to send its whole request head, in ms, counted from accept
   * (a deadline, not an idle timer: a client that trickles bytes gains nothing); then `408`.
   * @default 10000
   */
  headTimeout?: number;
  /**
   * Most connections whose request head (or PROXY header) the primary is reading at once (proxy
   * mode, `sessionAffinity`, `proxyProtocol`); one more is answered `503` and closed at once, so
   * slow or silent clients cannot make the primary hold without bound.
   * @default 4096
   */
  maxHeadReads?: number;
  /**
   * A worker that answers none of the primary's liveness pings for this long (its event loop is
   * blocked: an infinite loop, a long synchronous call) is taken out of routing, its queued
   * connections go elsewhere, and it is killed and re-forked (`workerUnresponsive`), in ms.
   * @default 5000
   */
  unresponsiveTimeout?: number;
  /**
   * Most connections handed to one worker and not yet taken by it: a worker that holds this
   * many and has taken none of them for a ping interval (at most 1 s) is treated as
   * unresponsive (taken out of routing, replaced) instead of queueing without bound. A burst at
   * a worker whose event loop runs drains, and is left alone.
   * @default 1024
   */
  maxQueuedHandles?: number;
  /**
   * Bytes of session changes queued to one worker's IPC channel (a worker that does not read
   * it: blocked, or far behind) past which the primary stops feeding that worker change by
   * change; once its channel has drained it gets the full session state again instead.
   * @default 16777216 (16 MiB)
   */
  maxIpcBacklog?: number;
  /**
   * Serve the whole machine's Prometheus metrics from the primary: `true` or
   * {@link MetricsOptions}. Needs prom-client (an optional peer dependency). @default false
   */
  metrics?: boolean | MetricsOptions;
  /**
   * Every connection starts with a PROXY protocol header (v1 or v2: HAProxy `send-proxy`,
   * AWS NLB): the client address is taken from it. It precedes any TLS, so https factories work.
   * A connection without a valid header is closed. With `proxy` too, `header` decides and the
   * PROXY address is the fallback for a missing header when `ignoreMissingHeader` is set.
   * @default false
   */
  proxyProtocol?: boolean;
  /**
   * Session-id affinity: route a request by the session id it carries when that id names its
   * owning worker slot (ids made by the `genid` / `generateId` helpers of the object `sticky()`
   * returns). `true` looks at the express-session cookie `connect.sid` (signed `s:` values
   * included) and the engine.io `sid` query parameter; an object names either or both. A request
   * without such an id, or whose slot has no ready worker, is routed by its address key as
   * usual. The primary then reads each connection's request head, also without `proxy`.
   * @default false
   */
  sessionAffinity?: boolean | SessionAffinityOptions;
  /**
   * socketio-sticky-session's `sync`: with `isSynced` (or its other spelling `isSyncable`) true,
   * a worker gives each connection to the server at once but replays the request bytes the
   * primary read only when the application emits `event` on that socket (say, once per-connection
   * state is loaded in a 'connection' listener). Needs `proxy` or `sessionAffinity` (otherwise
   * the primary reads nothing that could be held back).
   * @default false
   */
  sync?: false | SyncOptions;
  /**
   * Which later requests of a kept-open connection (proxy mode, `sessionAffinity`) must reach
   * their key's worker; the others are served by the worker the connection is on. With a
   * replicated session store most requests do not need a particular worker, and a request that
   * stays costs next to nothing while one that moves costs a hand-over:
   * - `'all'`: every request goes to its key's worker;
   * - `'engine.io'`: only engine.io requests (Socket.io's polling and upgrades: their query
   *   carries `EIO`, whatever the path), whose session lives in one worker's memory;
   * - `'session-id'`: only requests carrying a session id that names a slot (`sessionAffinity`);
   * - a function `(req) => boolean` on `req.method`, `req.url` and `req.header(name)`: true for
   *   the requests that must move (called in the worker for each request; keep it cheap);
   * - a list of these: a request moves when any of them says so.
   * A connection's first request always goes to its key's worker (the primary routes it).
   * Requests outside the scope are not routed, so their `header` is not read (a missing one is
   * no `400`), and a draining worker answers them itself, closing the connection after.
   * A predicate that throws routes that request by its key.
   * @default 'all'
   */
  scope?: RoutingScope | readonly RoutingScope[];
  /**
   * Replicate the sessions of every ReplicatedStore in the workers to the other machines of the
   * cluster over authenticated UDP multicast. The primary owns the machine's one socket (the
   * workers' stores are fed over IPC as before) and binds the port only once it holds the
   * cluster's sessions. `secret` (or `insecure: true`) is required; see {@link MulticastOptions}.
   * @default undefined (sessions stay on this machine)
   */
  multicast?: MulticastOptions;
  /**
   * Replicate the sessions of every ReplicatedStore in the workers to the other machines through
   * Redis, where multicast is not carried: an ioredis client, a `redis://` URL, ioredis options,
   * or `{ client | url | connection, prefix, cluster, ... }` ({@link RedisTransportOptions}).
   * The primary holds the machine's one connection pair and binds the port once it has rebuilt
   * the sessions from Redis. Needs the ioredis package (an optional peer dependency).
   * @default undefined
   */
  redis?: RedisOption;
}

/** Options after defaults are applied and validation passed. */
export type ResolvedStickyOptions = Omit<
  Required<StickyOptions>,
  'sessionAffinity' | 'sync' | 'multicast' | 'redis' | 'logger' | 'metrics'
> & {
  logger: ResolvedLogger;
  metrics: ResolvedMetricsOptions | false;
  /** Validated when the primary starts (resolveRedisOptions). */
  redis: RedisOption | undefined;
  /** Validated when the primary starts (resolveMulticastOptions). */
  multicast: MulticastOptions | undefined;
  sessionAffinity: ResolvedSessionAffinity;
  /** The event that releases a connection's request bytes, or `false`. */
  sync: { event: string } | false;
};

/** The defaults, in one place. `num` depends on the machine and is filled in by `resolveOptions`. */
export const DEFAULTS: Readonly<Omit<ResolvedStickyOptions, 'num'>> = Object.freeze({
  seed: 0x5eed1e55,
  handleSignals: true,
  reloadSignal: 'SIGHUP',
  closeJitter: 2_000,
  shutdownTimeout: 10_000,
  respawnDelay: 100,
  maxRespawnDelay: 30_000,
  respawnResetAfter: 30_000,
  pendingTimeout: 5_000,
  maxPendingConnections: 1024,
  readyTimeout: 30_000,
  serialization: 'json',
  logger: QUIET_LOGGER,
  proxy: false,
  header: 'x-forwarded-for',
  trustedProxies: 1,
  ignoreMissingHeader: false,
  maxHeaderBytes: 16 * 1024,
  headTimeout: 10_000,
  maxHeadReads: 4096,
  unresponsiveTimeout: 5_000,
  maxQueuedHandles: 1024,
  maxIpcBacklog: 16 * 1024 * 1024,
  metrics: false,
  proxyProtocol: false,
  sessionAffinity: false,
  sync: false,
  scope: 'all',
  multicast: undefined,
  redis: undefined,
});

const MAX_WORKERS = 1024;
const KNOWN = new Set<string>(['num', ...Object.keys(DEFAULTS)]);

/** Applies defaults and validates eagerly: a bad option throws an error that names it. */
export function resolveOptions(input: StickyOptions | undefined): ResolvedStickyOptions {
  const options: Record<string, unknown> = { ...(input ?? {}) };
  rejectUnknown(options, KNOWN);
  const given = (name: keyof ResolvedStickyOptions, fallback: unknown): unknown =>
    options[name] === undefined ? fallback : options[name];
  const int = (name: keyof typeof DEFAULTS, min: number, max: number) =>
    integer(name, given(name, DEFAULTS[name]), min, max);
  const bool = (name: keyof typeof DEFAULTS) => boolean(name, given(name, DEFAULTS[name]));

  const resolved: ResolvedStickyOptions = {
    num: integer('num', given('num', os.availableParallelism()), 1, MAX_WORKERS),
    seed: int('seed', 0, 0xffffffff),
    handleSignals: bool('handleSignals'),
    reloadSignal: reloadSignal(given('reloadSignal', DEFAULTS.reloadSignal)),
    closeJitter: int('closeJitter', 0, MAX_MS),
    shutdownTimeout: int('shutdownTimeout', 0, MAX_MS),
    respawnDelay: int('respawnDelay', 0, MAX_MS),
    maxRespawnDelay: int('maxRespawnDelay', 0, MAX_MS),
    respawnResetAfter: int('respawnResetAfter', 0, MAX_MS),
    pendingTimeout: int('pendingTimeout', 0, MAX_MS),
    maxPendingConnections: int('maxPendingConnections', 0, 1_000_000),
    readyTimeout: int('readyTimeout', 1, MAX_MS),
    serialization: given(
      'serialization',
      DEFAULTS.serialization,
    ) as ResolvedStickyOptions['serialization'],
    logger: resolveLogger(options.logger, 'logger'),
    proxy: bool('proxy'),
    header: given('header', DEFAULTS.header) as string,
    trustedProxies: int('trustedProxies', 0, 64),
    ignoreMissingHeader: bool('ignoreMissingHeader'),
    maxHeaderBytes: int('maxHeaderBytes', 256, 1024 * 1024),
    headTimeout: int('headTimeout', 1, MAX_MS),
    maxHeadReads: int('maxHeadReads', 1, 1_000_000),
    unresponsiveTimeout: int('unresponsiveTimeout', 100, MAX_MS),
    maxQueuedHandles: int('maxQueuedHandles', 1, 1_000_000),
    maxIpcBacklog: int('maxIpcBacklog', 64 * 1024, 2 ** 40),
    metrics: resolveMetricsOptions(options.metrics),
    proxyProtocol: bool('proxyProtocol'),
    sessionAffinity: sessionAffinity(given('sessionAffinity', false)),
    sync: sync(given('sync', false)),
    scope: given('scope', DEFAULTS.scope) as ResolvedStickyOptions['scope'],
    multicast: options.multicast as MulticastOptions | undefined,
    redis: options.redis as RedisOption | undefined,
  };
  if (resolved.sync && !resolved.proxy && !resolved.sessionAffinity) {
    throw new InvalidOptionError(
      'sync',
      'used with proxy: true or sessionAffinity (only then does the primary read request bytes)',
      options.sync,
    );
  }
  checkScope(resolved.scope, resolved.sessionAffinity);
  if (!isEveryRequest(resolved.scope) && !resolved.proxy && !resolved.sessionAffinity) {
    throw new InvalidOptionError(
      'scope',
      'used with proxy: true or sessionAffinity (only then are later requests routed)',
      options.scope,
    );
  }
  if (typeof resolved.header !== 'string' || !HTTP_TOKEN.test(resolved.header)) {
    throw new InvalidOptionError('header', 'an HTTP header name', resolved.header);
  }
  resolved.header = resolved.header.toLowerCase();
  if (resolved.serialization !== 'json' && resolved.serialization !== 'advanced') {
    throw new InvalidOptionError('serialization', '"json" or "advanced"', resolved.serialization);
  }
  if (resolved.maxRespawnDelay < resolved.respawnDelay) {
    throw new InvalidOptionError(
      'maxRespawnDelay',
      `at least respawnDelay (${resolved.respawnDelay})`,
      resolved.maxRespawnDelay,
    );
  }
  return resolved;
}
