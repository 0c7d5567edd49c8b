import os from 'node:os';
import { InvalidOptionError } from './errors.js';

/** Options of {@link sticky}. Every time is in milliseconds. */
export interface StickyOptions {
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
   * How long `close()` lets workers finish in-flight requests before they are killed, in ms.
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
   * address in `header` instead of the TCP peer (a reverse proxy or CDN). A connection then
   * carries one request (the worker answers with `Connection: close`), so every request of a
   * keep-alive proxy connection is routed by its own header.
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
   * How many proxies you run in front append to `header`: 0 takes the left-most address (what
   * the client sent, spoofable), n takes the n-th from the right (written by your outermost one).
   * @default 0
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
   * Proxy mode: time a client has to send its whole request head, in ms; then `408`.
   * @default 10000
   */
  headTimeout?: number;
  /**
   * Every connection starts with a PROXY protocol header (v1 or v2: HAProxy `send-proxy`,
   * AWS NLB): the client address is taken from it. It precedes any TLS, so https factories work.
   * A connection without a valid header is closed. With `proxy` too, `header` decides and the
   * PROXY address is the fallback for a missing header when `ignoreMissingHeader` is set.
   * @default false
   */
  proxyProtocol?: boolean;
}

/** Options after defaults are applied and validation passed. */
export type ResolvedStickyOptions = Required<StickyOptions>;

/** The defaults, in one place. `num` depends on the machine and is filled in by `resolveOptions`. */
export const DEFAULTS: Readonly<Omit<ResolvedStickyOptions, 'num'>> = Object.freeze({
  seed: 0x5eed1e55,
  handleSignals: true,
  shutdownTimeout: 10_000,
  respawnDelay: 100,
  maxRespawnDelay: 30_000,
  respawnResetAfter: 30_000,
  pendingTimeout: 5_000,
  maxPendingConnections: 1024,
  readyTimeout: 30_000,
  serialization: 'json',
  proxy: false,
  header: 'x-forwarded-for',
  trustedProxies: 0,
  ignoreMissingHeader: false,
  maxHeaderBytes: 16 * 1024,
  headTimeout: 10_000,
  proxyProtocol: false,
});

const MAX_WORKERS = 1024;
const MAX_MS = 2 ** 31 - 1; // largest delay setTimeout honours

/** Option names that belong to the proxy mode, which this version does not yet implement. */
/** An HTTP token (RFC 9110 section 5.6.2): what a method or header name consists of. */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** Options of proxy mode that this version does not implement yet. */
const PROXY_OPTIONS = ['sync'] as const;

function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidOptionError(name, 'a boolean', value);
  return value;
}

/** Applies defaults and validates eagerly: a bad option throws an error that names it. */
export function resolveOptions(input: StickyOptions | undefined): ResolvedStickyOptions {
  const options: Record<string, unknown> = { ...(input ?? {}) };
  for (const name of PROXY_OPTIONS) {
    if (options[name] !== undefined && options[name] !== false) {
      throw new InvalidOptionError(
        name,
        'unset: it is not available in this version',
        options[name],
      );
    }
    delete options[name];
  }
  const known = new Set<string>(['num', ...Object.keys(DEFAULTS)]);
  for (const name of Object.keys(options)) {
    if (!known.has(name))
      throw new InvalidOptionError(name, 'a known option (is it misspelt?)', options[name]);
  }
  const given = (name: keyof ResolvedStickyOptions, fallback: unknown): unknown =>
    options[name] === undefined ? fallback : options[name];
  const int = (name: keyof typeof DEFAULTS, min: number, max: number) =>
    integer(name, given(name, DEFAULTS[name]), min, max);
  const bool = (name: keyof typeof DEFAULTS) => boolean(name, given(name, DEFAULTS[name]));

  const resolved: ResolvedStickyOptions = {
    num: integer('num', given('num', os.availableParallelism()), 1, MAX_WORKERS),
    seed: int('seed', 0, 0xffffffff),
    handleSignals: bool('handleSignals'),
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
    proxy: bool('proxy'),
    header: given('header', DEFAULTS.header) as string,
    trustedProxies: int('trustedProxies', 0, 64),
    ignoreMissingHeader: bool('ignoreMissingHeader'),
    maxHeaderBytes: int('maxHeaderBytes', 256, 1024 * 1024),
    headTimeout: int('headTimeout', 1, MAX_MS),
    proxyProtocol: bool('proxyProtocol'),
  };
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
