import net from 'node:net';
import { InvalidOptionError } from '../../../errors.js';
import { type Logger, QUIET_LOGGER, type ResolvedLogger, resolveLogger } from '../../../logger.js';
import { boolean, integer, MAX_MS, rejectUnknown } from '../../../validate.js';
import { MESH_TIMINGS } from './peer.js';

/**
 * Options of session replication between machines over UDP multicast. The first names are
 * express-session-multicast's, with its defaults. Every time is in milliseconds.
 */
export interface MulticastOptions {
  /**
   * The key every node of the cluster shares: every datagram and state transfer is encrypted
   * and authenticated with AES-256-GCM under a key derived from it. Use 32 or more random bytes
   * (`openssl rand -base64 32`). Required unless `insecure: true`.
   */
  secret?: string | Buffer;
  /**
   * Run without authentication or encryption: anyone who can send to the group can read,
   * forge and destroy sessions. Only for a network nobody else can reach.
   * @default false
   */
  insecure?: boolean;
  /**
   * Name of the cluster. Clusters with different names ignore each other on a shared group
   * (it is bound into every envelope).
   * @default "sticky-mesh"
   */
  cluster?: string;
  /**
   * Multicast group address.
   * @default "228.0.0.5" (use "v4"), "ffbe::043" (use "v6")
   */
  multicast?: string;
  /**
   * UDP port of the group.
   * @default 4000
   */
  multicastPort?: number;
  /**
   * Which IP version to use.
   * @default "v4"
   */
  use?: 'v4' | 'v6';
  /**
   * This machine's IPv4 address on the network the cluster shares: the interface multicast is
   * sent and received on, where the state-transfer server listens. Never a loopback address
   * unless every node runs on this machine.
   * @default the first non-internal IPv4 address of the host
   */
  ipv4?: string;
  /**
   * This machine's IPv6 address, as `ipv4` (with `use: "v6"`).
   * @default the first non-internal IPv6 address of the host
   */
  ipv6?: string;
  /**
   * Hops a multicast datagram may cross (1: this LAN only).
   * @default 1
   */
  multicastTTL?: number;
  /**
   * Where membership changes and problems are logged (console, pino, winston, bunyan): peers
   * joining and leaving at `info`, timeouts and failed transfers at `warn`.
   * @default the `logger` of sticky() or of the store, else quiet (NODE_DEBUG=sticky-mesh only)
   */
  logger?: Logger;
  /**
   * TCP port of the state-transfer server (joiners fetch the full state from it). 0 picks a
   * free port; peers learn it from heartbeats.
   * @default 0
   */
  syncPort?: number;
  /**
   * ms between heartbeats.
   * @default 500
   */
  heartbeatInterval?: number;
  /**
   * A peer not heard from for this long is dropped, in ms.
   * @default 3000
   */
  failureTimeout?: number;
  /**
   * How long a starting node waits for a greeting before it decides it is the first, in ms.
   * @default 1000
   */
  joinTimeout?: number;
  /**
   * How long a starting node waits for its state transfer before it serves anyway (logged), in ms.
   * @default 10000
   */
  syncTimeout?: number;
  /**
   * Envelopes whose sender clock differs from this machine's by more than this are dropped
   * (with the replay window, what stops recorded traffic being played back), in ms. Keep the
   * nodes' clocks synchronised (NTP).
   * @default 60000
   */
  maxClockSkew?: number;
  /**
   * Read on miss: a read of a session this machine holds no record of (not even a tombstone)
   * asks the group and waits up to this long, in ms, for a machine that holds it to send it
   * again (a login on another machine whose datagrams are still being repaired, a client moved
   * here right after logging in elsewhere). An id nobody holds is then remembered as unknown for
   * 60 s, so it costs one wait at most. 0 turns read on miss off.
   * @default 500
   */
  readOnMissWait?: number;
  /**
   * State-transfer connections that have not yet sent an authenticated request, held at once
   * (at most 4 of them from one address). Past either limit a new connection is closed at once
   * and counted (`stats().rejected.connections`); one that has not sent its request 5 s after it
   * was accepted is closed and counted (`rejected.deadline`). Each holds a file descriptor the
   * process's HTTP listener also needs.
   * @default 32
   */
  maxSyncConnections?: number;
}

/**
 * The defaults, in one place. `secret` has none (it is required unless `insecure`); `ipv4` and
 * `ipv6` default to the host's first non-internal address, chosen when the transport starts;
 * `logger` defaults to the logger of whoever runs the transport (sticky(), the store).
 */
export const MULTICAST_DEFAULTS = Object.freeze({
  insecure: false,
  cluster: 'sticky-mesh',
  /** The group, per `use`. */
  multicast: Object.freeze({ v4: '228.0.0.5', v6: 'ffbe::043' }),
  multicastPort: 4000,
  use: 'v4',
  multicastTTL: 1,
  syncPort: 0,
  heartbeatInterval: MESH_TIMINGS.heartbeatInterval,
  failureTimeout: MESH_TIMINGS.failureTimeout,
  joinTimeout: MESH_TIMINGS.joinTimeout,
  syncTimeout: MESH_TIMINGS.syncTimeout,
  maxClockSkew: 60_000,
  readOnMissWait: 500,
  maxSyncConnections: 32,
} as const);

export interface ResolvedMulticastOptions {
  secret: Buffer | undefined;
  cluster: string;
  group: string;
  port: number;
  use: 'v4' | 'v6';
  /** Interface address (v6: may carry a %scope). */
  address: string | undefined;
  ttl: number;
  logger: ResolvedLogger;
  syncPort: number;
  heartbeatInterval: number;
  failureTimeout: number;
  joinTimeout: number;
  syncTimeout: number;
  maxClockSkew: number;
  readOnMissWait: number;
  maxSyncConnections: number;
}

const KNOWN = new Set<string>([
  'secret',
  'insecure',
  'ipv4',
  'ipv6',
  'logger',
  ...Object.keys(MULTICAST_DEFAULTS),
]);

/**
 * Validates multicast options; `prefix` names where they were given (in errors), `logger` is
 * used when they name none of their own.
 */
export function resolveMulticastOptions(
  input: MulticastOptions,
  prefix = 'multicast',
  logger: ResolvedLogger = QUIET_LOGGER,
): ResolvedMulticastOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InvalidOptionError(prefix, 'an object of multicast options', input);
  }
  const o = input as Record<string, unknown>;
  const name = (key: string) => `${prefix}.${key}`;
  rejectUnknown(o, KNOWN, name);
  const D = MULTICAST_DEFAULTS;
  const insecure = o.insecure === undefined ? D.insecure : boolean(name('insecure'), o.insecure);
  let secret: Buffer | undefined;
  if (o.secret !== undefined) {
    if (typeof o.secret === 'string' && o.secret.length > 0) secret = Buffer.from(o.secret);
    else if (Buffer.isBuffer(o.secret) && o.secret.length > 0) secret = Buffer.from(o.secret);
    else throw new InvalidOptionError(name('secret'), 'a non-empty string or Buffer', o.secret);
  }
  if (!secret && !insecure) {
    throw InvalidOptionError.explained(
      name('secret'),
      `multicast replication needs "${name('secret')}" (a key every node shares; ` +
        `32+ random bytes) or "${name('insecure')}: true" (no authentication: anyone on the ` +
        'network could read, forge and destroy sessions)',
    );
  }
  if (secret && insecure) {
    throw new InvalidOptionError(name('insecure'), 'left out when a secret is given', true);
  }
  const use = o.use ?? D.use;
  if (use !== 'v4' && use !== 'v6') throw new InvalidOptionError(name('use'), '"v4" or "v6"', use);
  const group = (o.multicast ?? D.multicast[use]) as string;
  if (use === 'v4' ? !isV4Multicast(group) : !isV6Multicast(group)) {
    throw new InvalidOptionError(
      name('multicast'),
      `an IP${use} multicast group address (${use === 'v4' ? '224.0.0.0/4' : 'ff00::/8'})`,
      group,
    );
  }
  const cluster = (o.cluster ?? D.cluster) as string;
  if (typeof cluster !== 'string' || cluster.length === 0 || Buffer.byteLength(cluster) > 255) {
    throw new InvalidOptionError(
      name('cluster'),
      'a non-empty string of at most 255 bytes',
      cluster,
    );
  }
  const ipKey = use === 'v4' ? 'ipv4' : 'ipv6';
  const address = o[ipKey];
  if (
    address !== undefined &&
    net.isIP(String(address).split('%')[0] as string) !== (use === 'v4' ? 4 : 6)
  ) {
    throw new InvalidOptionError(name(ipKey), `an IP${use} address of this machine`, address);
  }
  const int = (key: keyof typeof D, min: number, max: number) =>
    integer(name(key), o[key] ?? D[key], min, max);
  return {
    secret,
    cluster,
    group,
    port: int('multicastPort', 1, 65535),
    use,
    address: address as string | undefined,
    ttl: int('multicastTTL', 0, 255),
    logger: resolveLogger(o.logger, name('logger'), logger),
    syncPort: int('syncPort', 0, 65535),
    heartbeatInterval: int('heartbeatInterval', 10, MAX_MS),
    failureTimeout: int('failureTimeout', 20, MAX_MS),
    joinTimeout: int('joinTimeout', 10, MAX_MS),
    syncTimeout: int('syncTimeout', 10, MAX_MS),
    maxClockSkew: int('maxClockSkew', 1000, MAX_MS),
    readOnMissWait: int('readOnMissWait', 0, 60_000),
    maxSyncConnections: int('maxSyncConnections', 1, 10_000),
  };
}

function isV4Multicast(a: unknown): boolean {
  if (typeof a !== 'string' || net.isIPv4(a) === false) return false;
  const first = Number(a.split('.')[0]);
  return first >= 224 && first <= 239;
}

function isV6Multicast(a: unknown): boolean {
  return typeof a === 'string' && net.isIPv6(a) && a.toLowerCase().startsWith('ff');
}
