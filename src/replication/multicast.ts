import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import net from 'node:net';
import os from 'node:os';
import { debug } from '../debug.js';
import { InvalidOptionError, StickyMeshError } from '../errors.js';
import { boolean, integer, MAX_MS } from '../options.js';
import { newNodeId } from './clock.js';
import {
  decodeMessage,
  decodeSyncFrame,
  encodeChange,
  encodeMessage,
  encodeSyncFrame,
  Kind,
  type MeshMessage,
  type SyncFrame,
} from './codec.js';
import {
  DATAGRAM_BUDGET,
  MESH_TIMINGS,
  type MeshCounters,
  type MeshIO,
  type MeshLogger,
  MeshNode,
  type PeerAddress,
  type ReplicaHost,
  type StateTransfer,
} from './mesh.js';
import { Keyring, type Opened, open, ReplayWindow, Sealer, sameBytes } from './seal.js';
import type { Change } from './table.js';

/**
 * A logger: `console`, bunyan, winston and pino all fit. Only `info`, `warn` and `error` are
 * called, each with one string.
 */
export interface MulticastLogger {
  info?(msg: string): unknown;
  warn?(msg: string): unknown;
  error?(msg: string): unknown;
}

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
   * Where membership changes and problems are logged (console, bunyan, winston, pino).
   * @default warnings and errors to console, the rest to the debug channel (NODE_DEBUG=sticky-mesh)
   */
  logger?: MulticastLogger;
  /**
   * TCP port of the state-transfer server (joiners fetch the full state from it). 0 picks a
   * free port; peers learn it from heartbeats.
   * @default 0
   */
  syncPort?: number;
  /** @default 500 */
  heartbeatInterval?: number;
  /**
   * A peer not heard from for this long is dropped.
   * @default 3000
   */
  failureTimeout?: number;
  /**
   * How long a starting node waits for a greeting before it decides it is the first.
   * @default 1000
   */
  joinTimeout?: number;
  /**
   * How long a starting node waits for its state transfer before it serves anyway (logged).
   * @default 10000
   */
  syncTimeout?: number;
  /**
   * Envelopes whose sender clock differs from this machine's by more than this are dropped
   * (with the replay window, what stops recorded traffic being played back). Keep the nodes'
   * clocks synchronised (NTP).
   * @default 60000
   */
  maxClockSkew?: number;
}

export interface ResolvedMulticastOptions {
  secret: Buffer | undefined;
  cluster: string;
  group: string;
  port: number;
  use: 'v4' | 'v6';
  /** Interface address (v6: may carry a %scope). */
  address: string | undefined;
  ttl: number;
  logger: MeshLogger & { error(msg: string): void };
  syncPort: number;
  heartbeatInterval: number;
  failureTimeout: number;
  joinTimeout: number;
  syncTimeout: number;
  maxClockSkew: number;
}

const KNOWN = new Set([
  'secret',
  'insecure',
  'cluster',
  'multicast',
  'multicastPort',
  'use',
  'ipv4',
  'ipv6',
  'multicastTTL',
  'logger',
  'syncPort',
  'heartbeatInterval',
  'failureTimeout',
  'joinTimeout',
  'syncTimeout',
  'maxClockSkew',
]);

/** Validates multicast options; `prefix` names where they were given (in errors). */
export function resolveMulticastOptions(
  input: MulticastOptions,
  prefix = 'multicast',
): ResolvedMulticastOptions {
  if (typeof input !== 'object' || input === null || Array.isArray(input)) {
    throw new InvalidOptionError(prefix, 'an object of multicast options', input);
  }
  const o = input as Record<string, unknown>;
  const name = (key: string) => `${prefix}.${key}`;
  for (const key of Object.keys(o)) {
    if (!KNOWN.has(key)) {
      throw new InvalidOptionError(name(key), 'a known option (is it misspelt?)', o[key]);
    }
  }
  const insecure = o.insecure === undefined ? false : boolean(name('insecure'), o.insecure);
  let secret: Buffer | undefined;
  if (o.secret !== undefined) {
    if (typeof o.secret === 'string' && o.secret.length > 0) secret = Buffer.from(o.secret);
    else if (Buffer.isBuffer(o.secret) && o.secret.length > 0) secret = Buffer.from(o.secret);
    else throw new InvalidOptionError(name('secret'), 'a non-empty string or Buffer', o.secret);
  }
  if (!secret && !insecure) {
    throw new StickyMeshError(
      'ERR_STICKY_INVALID_OPTION',
      `sticky-mesh: multicast replication needs "${name('secret')}" (a key every node shares; ` +
        `32+ random bytes) or "${name('insecure')}: true" (no authentication: anyone on the ` +
        'network could read, forge and destroy sessions)',
    );
  }
  if (secret && insecure) {
    throw new InvalidOptionError(name('insecure'), 'left out when a secret is given', true);
  }
  const use = o.use ?? 'v4';
  if (use !== 'v4' && use !== 'v6') throw new InvalidOptionError(name('use'), '"v4" or "v6"', use);
  const group = (o.multicast ?? (use === 'v4' ? '228.0.0.5' : 'ffbe::043')) as string;
  if (use === 'v4' ? !isV4Multicast(group) : !isV6Multicast(group)) {
    throw new InvalidOptionError(
      name('multicast'),
      `an IP${use} multicast group address (${use === 'v4' ? '224.0.0.0/4' : 'ff00::/8'})`,
      group,
    );
  }
  const cluster = (o.cluster ?? 'sticky-mesh') as string;
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
  const logger = o.logger;
  if (logger !== undefined && (typeof logger !== 'object' || logger === null)) {
    throw new InvalidOptionError(
      name('logger'),
      'an object with info / warn / error methods',
      logger,
    );
  }
  const int = (key: string, fallback: number, min: number, max: number) =>
    integer(name(key), o[key] ?? fallback, min, max);
  return {
    secret,
    cluster,
    group,
    port: int('multicastPort', 4000, 1, 65535),
    use,
    address: address as string | undefined,
    ttl: int('multicastTTL', 1, 0, 255),
    logger: toLogger(logger as MulticastLogger | undefined),
    syncPort: int('syncPort', 0, 0, 65535),
    heartbeatInterval: int('heartbeatInterval', MESH_TIMINGS.heartbeatInterval, 10, MAX_MS),
    failureTimeout: int('failureTimeout', MESH_TIMINGS.failureTimeout, 20, MAX_MS),
    joinTimeout: int('joinTimeout', MESH_TIMINGS.joinTimeout, 10, MAX_MS),
    syncTimeout: int('syncTimeout', MESH_TIMINGS.syncTimeout, 10, MAX_MS),
    maxClockSkew: int('maxClockSkew', 60_000, 1000, MAX_MS),
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

/** A user's logger (console, bunyan, winston, pino) with defaults for the missing levels. */
export function toLogger(l: MulticastLogger | undefined): ResolvedMulticastOptions['logger'] {
  const call = (level: 'info' | 'warn' | 'error', fallback: (m: string) => void) => {
    const fn = l?.[level];
    return typeof fn === 'function' ? (m: string) => void fn.call(l, m) : fallback;
  };
  return {
    info: call('info', (m) => debug('%s', m)),
    warn: call('warn', (m) => console.warn(m)),
    error: call('error', (m) => console.error(m)),
  };
}

/** The interface address to use, and for IPv6 the `::%name` form Node wants for multicast. */
function pickInterface(
  use: 'v4' | 'v6',
  wanted: string | undefined,
  logger: MeshLogger,
): { address: string; multicastInterface: string } {
  const all = Object.entries(os.networkInterfaces()).flatMap(([ifname, list]) =>
    (list ?? []).map((i) => ({ ...i, ifname })),
  );
  const family = use === 'v4' ? 'IPv4' : 'IPv6';
  const bare = wanted?.split('%')[0];
  const found = bare
    ? all.find((i) => i.family === family && i.address === bare)
    : (all.find(
        (i) =>
          i.family === family && !i.internal && !(use === 'v6' && i.address.startsWith('fe80')),
      ) ?? all.find((i) => i.family === family && !i.internal));
  if (!found) {
    if (wanted) return { address: wanted, multicastInterface: wanted };
    const loop = use === 'v4' ? '127.0.0.1' : '::1';
    logger.warn(
      `sticky-mesh: no non-internal ${family} address on this host; multicast stays on ${loop} ` +
        '(only nodes on this machine will see each other)',
    );
    const lo = all.find((i) => i.address === loop);
    return { address: loop, multicastInterface: use === 'v4' ? loop : `::%${lo?.ifname ?? 'lo'}` };
  }
  return use === 'v4'
    ? { address: found.address, multicastInterface: found.address }
    : {
        address: found.address.startsWith('fe80')
          ? `${found.address}%${found.ifname}`
          : found.address,
        multicastInterface: `::%${found.ifname}`,
      };
}

export interface MulticastStats extends MeshCounters {
  nodeId: string;
  state: string;
  /** Last sequence number sent. */
  seq: number;
  group: string;
  port: number;
  address: string;
  syncPort: number;
  peers: { id: string; address: string; port: number; lastSeen: number; synced: boolean }[];
  datagramsReceived: number;
  /** Datagrams and frames refused, by reason; none of them was acted on. */
  rejected: {
    oversize: number;
    truncated: number;
    /** Not this product's, another protocol version, another cluster, or sealed vs insecure. */
    foreign: number;
    /** Failed AES-GCM authentication: wrong secret, forged or altered. */
    auth: number;
    /** Sender clock outside `maxClockSkew`. */
    stale: number;
    replay: number;
    /** Authenticated but not a well-formed message. */
    malformed: number;
  };
  /** State transfers served to other nodes. */
  served: number;
  socketErrors: number;
}

/** Changes per state-transfer frame are packed up to about this many bytes. */
const FRAME_TARGET = 256 * 1024;
/** Largest frame accepted (a session can be up to 64 MiB with maxSessionBytes raised). */
const MAX_FRAME = 72 * 1024 * 1024;
const MAX_SERVING = 4;
const RECV_BUFFER = 4 * 1024 * 1024;
const CONNECT_TIMEOUT = 5000;
const IDLE_TIMEOUT = 15_000;

/**
 * One machine's replication endpoint: a UDP socket on the group, a TCP server for state
 * transfers, and the {@link MeshNode} between them. Owned by the cluster primary, or by a
 * standalone store.
 */
export class MulticastTransport implements MeshIO {
  readonly id = newNodeId();
  readonly node: MeshNode;
  private readonly ring: Keyring;
  private readonly sealer: Sealer;
  private readonly replay: ReplayWindow;
  private socket: dgram.Socket | undefined;
  private server: net.Server | undefined;
  private iface: { address: string; multicastInterface: string } | undefined;
  private serving = 0;
  /** Datagrams handed to the socket and not yet sent (close() waits for them). */
  private sending = 0;
  private sent: (() => void) | undefined;
  private readonly conns = new Set<net.Socket>();
  private closed = false;
  private closing: Promise<void> | undefined;
  private readonly extra = {
    datagramsReceived: 0,
    served: 0,
    socketErrors: 0,
    rejected: { oversize: 0, truncated: 0, foreign: 0, auth: 0, stale: 0, replay: 0, malformed: 0 },
  };

  constructor(
    private readonly options: ResolvedMulticastOptions,
    host: ReplicaHost,
  ) {
    this.ring = new Keyring(options.secret, options.cluster);
    this.sealer = new Sealer(this.ring, this.id);
    this.replay = new ReplayWindow(options.maxClockSkew);
    this.node = new MeshNode(
      this.id,
      host,
      this,
      { ...MESH_TIMINGS, ...pickTimings(options) },
      options.logger,
    );
  }

  get port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /**
   * Opens the socket and the state-transfer server, joins the group and resolves once this
   * machine holds the cluster's sessions (or `syncTimeout` passed, logged). Rejects with
   * `ERR_STICKY_TRANSPORT_FAILED` when the sockets cannot be opened.
   */
  async start(): Promise<void> {
    const o = this.options;
    this.iface = pickInterface(o.use, o.address, o.logger);
    try {
      await this.listenTcp(this.iface.address);
      if (!this.closed) await this.bindUdp(this.iface);
    } catch (err) {
      await this.close();
      throw new StickyMeshError(
        'ERR_STICKY_TRANSPORT_FAILED',
        `sticky-mesh: cannot open multicast ${o.group}:${o.port} on ${this.iface.address}: ` +
          (err as Error).message,
        { cause: err },
      );
    }
    if (this.closed) return;
    o.logger.info(
      `sticky-mesh: node ${this.id} on ${o.group}:${o.port} via ${this.iface.address}, ` +
        `state transfers on port ${this.port}`,
    );
    await this.node.start();
  }

  publish(change: Change): void {
    this.node.publish(change);
  }

  /**
   * Sends a leave message, answers NACKs for its last datagrams for `leaveLinger` (300 ms), then
   * closes both sockets. Idempotent: every call returns the same promise.
   */
  close(): Promise<void> {
    this.closing ??= this.shutdown();
    return this.closing;
  }

  private async shutdown(): Promise<void> {
    this.closed = true;
    for (const c of this.conns) c.destroy();
    // Goodbye, then a short wait answering NACKs, so a peer that lost the last datagrams
    // can still have them.
    if (this.node.leave()) {
      await new Promise((resolve) => setTimeout(resolve, MESH_TIMINGS.leaveLinger).unref());
    }
    this.node.close();
    // Closing the socket cancels sends still queued: let the last changes and the leave go.
    if (this.sending > 0) {
      await new Promise<void>((resolve) => {
        this.sent = resolve;
        setTimeout(resolve, 500).unref();
      });
    }
    const socket = this.socket;
    this.socket = undefined;
    await Promise.all([
      socket ? new Promise<void>((r) => socket.close(() => r())) : undefined,
      this.server ? new Promise<void>((r) => this.server?.close(() => r())) : undefined,
    ]);
  }

  stats(): MulticastStats {
    return {
      nodeId: this.id,
      state: this.node.phase,
      seq: this.node.lastSeq,
      group: this.options.group,
      port: this.options.port,
      address: this.iface?.address ?? '',
      syncPort: this.port,
      peers: this.node.peerList(),
      ...this.node.counters,
      datagramsReceived: this.extra.datagramsReceived,
      rejected: { ...this.extra.rejected },
      served: this.extra.served,
      socketErrors: this.extra.socketErrors,
    };
  }

  // ---- MeshIO ---------------------------------------------------------------------------------

  send(msg: MeshMessage): void {
    const socket = this.socket;
    if (!socket) return;
    const [kind, body] = encodeMessage(msg);
    const datagram = this.sealer.seal(kind, body);
    this.node.counters.datagramsSent++;
    this.node.counters.bytesSent += datagram.length;
    this.sending++;
    socket.send(datagram, this.options.port, this.options.group, (err) => {
      if (--this.sending === 0) this.sent?.();
      if (err) {
        this.extra.socketErrors++;
        debug('multicast send failed: %s', err.message);
      }
    });
  }

  fetchState(peer: PeerAddress, sink: (changes: Change[]) => void): Promise<StateTransfer> {
    return new Promise<StateTransfer>((resolve, reject) => {
      const challenge = randomBytes(16);
      const socket = net.connect({ host: peer.address, port: peer.port });
      this.conns.add(socket);
      let header: Extract<SyncFrame, { k: 'header' }> | undefined;
      let received = 0;
      let lastCounter = 0;
      let settled = false;
      const fail = (why: string) => {
        if (settled) return;
        settled = true;
        socket.destroy();
        reject(new Error(why));
      };
      socket.setTimeout(CONNECT_TIMEOUT, () => fail('timed out'));
      socket.once('connect', () => {
        socket.setTimeout(IDLE_TIMEOUT);
        socket.setNoDelay(true);
        // Each connection seals with a sealer of its own (own salt and counter), so its frames do
        // not move the replay window of this node's datagrams.
        socket.write(
          frame(new Sealer(this.ring, this.id), ...encodeSyncFrame({ k: 'request', challenge })),
        );
      });
      socket.on('error', (err) => fail(err.message));
      socket.on('close', () => {
        this.conns.delete(socket);
        fail('connection closed before the transfer ended');
      });
      readFrames(
        socket,
        (buf) => {
          if (settled) return false;
          const opened = this.openFrame(buf);
          if (!opened || opened.sender !== peer.id || opened.counter <= lastCounter) {
            fail('a frame failed authentication or came out of order');
            return false;
          }
          lastCounter = opened.counter;
          const f = decodeSyncFrame(opened.kind, opened.body);
          if (!f) {
            this.extra.rejected.malformed++;
            fail('malformed frame');
            return false;
          }
          if (!header) {
            if (f.k !== 'header' || !sameBytes(f.challenge, challenge)) {
              fail('the transfer did not answer this request');
              return false;
            }
            header = f;
          } else if (f.k === 'chunk') {
            received += f.changes.length;
            sink(f.changes as Change[]);
          } else if (f.k === 'end' && f.total === received) {
            settled = true;
            socket.end();
            resolve({ vector: header.vector });
            return false;
          } else {
            fail(`unexpected ${f.k} frame`);
            return false;
          }
          return true;
        },
        () => fail('frame too large'),
      );
    });
  }

  // ---- sockets ----------------------------------------------------------------------------------

  private bindUdp(iface: { address: string; multicastInterface: string }): Promise<void> {
    const o = this.options;
    return new Promise<void>((resolve, reject) => {
      const socket = dgram.createSocket({
        type: o.use === 'v4' ? 'udp4' : 'udp6',
        reuseAddr: true,
      });
      socket.once('error', reject);
      socket.bind(o.port, o.use === 'v4' ? '0.0.0.0' : '::', () => {
        try {
          socket.addMembership(o.group, iface.multicastInterface);
          socket.setMulticastInterface(iface.multicastInterface);
          socket.setMulticastTTL(o.ttl);
          socket.setMulticastLoopback(true);
        } catch (err) {
          socket.close();
          reject(err);
          return;
        }
        try {
          // Bursts of writes arrive faster than one event-loop turn reads them; a larger buffer
          // means fewer losses to repair (the kernel caps it at net.core.rmem_max).
          socket.setRecvBufferSize(RECV_BUFFER);
          socket.setSendBufferSize(RECV_BUFFER);
        } catch (err) {
          debug('socket buffer size not set: %s', (err as Error).message);
        }
        socket.off('error', reject);
        socket.on('error', (err) => {
          this.extra.socketErrors++;
          o.logger.warn(`sticky-mesh: multicast socket error: ${err.message}`);
        });
        socket.on('message', (buf, rinfo) => this.onDatagram(buf, rinfo.address));
        // Like the store's timers, the sockets never keep a process alive by themselves.
        socket.unref();
        if (this.closed) socket.close();
        else this.socket = socket;
        resolve();
      });
    });
  }

  private onDatagram(buf: Buffer, address: string): void {
    // This node's own datagrams come back (loopback is on for peers on this machine): the
    // sender id is in clear in the header, so they are skipped before any decryption.
    if (buf.length >= 12 && buf.toString('hex', 4, 12) === this.id) return;
    this.extra.datagramsReceived++;
    try {
      if (buf.length > DATAGRAM_BUDGET) {
        this.extra.rejected.oversize++;
        return;
      }
      const opened = this.openFrame(buf);
      if (!opened || opened.sender === this.id) return;
      const msg =
        opened.kind < Kind.SyncRequest ? decodeMessage(opened.kind, opened.body) : undefined;
      if (!msg) {
        this.extra.rejected.malformed++;
        return;
      }
      this.node.receive({ id: opened.sender, address }, msg);
    } catch (err) {
      // Nothing from the network may crash the process; this would be a bug, so it is logged.
      this.extra.rejected.malformed++;
      this.options.logger.error(`sticky-mesh: datagram handling failed: ${(err as Error).stack}`);
    }
  }

  /** Opens and freshness-checks an envelope, counting why it was refused. */
  private openFrame(buf: Buffer): Opened | undefined {
    const opened = open(this.ring, buf);
    if (typeof opened === 'string') {
      this.extra.rejected[opened]++;
      return undefined;
    }
    if (opened.sender === this.id) return opened;
    const fresh = this.replay.accept(opened);
    if (fresh !== 'ok') {
      this.extra.rejected[fresh]++;
      return undefined;
    }
    return opened;
  }

  private listenTcp(address: string): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const server = net.createServer((socket) => this.serve(socket));
      server.once('error', reject);
      server.listen({ host: address, port: this.options.syncPort }, () => {
        server.off('error', reject);
        server.on('error', (err) => {
          this.extra.socketErrors++;
          this.options.logger.warn(`sticky-mesh: state-transfer server error: ${err.message}`);
        });
        server.unref();
        // close() came first: nothing opened after it may stay open.
        if (this.closed) server.close();
        else this.server = server;
        resolve();
      });
    });
  }

  /** Answers one authenticated state-transfer request with this node's whole state. */
  private serve(socket: net.Socket): void {
    this.conns.add(socket);
    socket.on('close', () => this.conns.delete(socket));
    socket.on('error', () => socket.destroy());
    if (this.serving >= MAX_SERVING || this.closed) {
      socket.destroy();
      return;
    }
    socket.setTimeout(CONNECT_TIMEOUT, () => socket.destroy());
    socket.setNoDelay(true);
    let started = false;
    readFrames(
      socket,
      (buf) => {
        if (started) return false;
        const opened = this.openFrame(buf);
        const f = opened && decodeSyncFrame(opened.kind, opened.body);
        if (!opened || !f || f.k !== 'request') {
          if (opened) this.extra.rejected.malformed++;
          socket.destroy();
          return false;
        }
        started = true;
        this.serving++;
        socket.setTimeout(IDLE_TIMEOUT);
        this.stream(socket, f.challenge)
          .then(() => {
            this.extra.served++;
          })
          .catch((err: Error) => {
            debug('state transfer to %s failed: %s', socket.remoteAddress, err.message);
            socket.destroy();
          })
          .finally(() => {
            this.serving--;
          });
        return false;
      },
      () => socket.destroy(),
      4096,
    );
  }

  private async stream(socket: net.Socket, challenge: Buffer): Promise<void> {
    const { vector, changes } = this.node.snapshot();
    const sealer = new Sealer(this.ring, this.id);
    await write(socket, frame(sealer, ...encodeSyncFrame({ k: 'header', challenge, vector })));
    let parts: Buffer[] = [];
    let size = 0;
    let total = 0;
    const flush = async () => {
      const body = Buffer.concat(parts, size);
      parts = [];
      size = 0;
      await write(socket, frame(sealer, Kind.SyncChunk, body));
    };
    for (const change of changes) {
      const bytes = encodeChange(change);
      parts.push(bytes);
      size += bytes.length;
      total++;
      if (size >= FRAME_TARGET) await flush();
      if (socket.destroyed) throw new Error('connection closed');
    }
    if (size > 0) await flush();
    await write(socket, frame(sealer, ...encodeSyncFrame({ k: 'end', total })));
    socket.end();
  }
}

function pickTimings(o: ResolvedMulticastOptions) {
  return {
    heartbeatInterval: o.heartbeatInterval,
    failureTimeout: o.failureTimeout,
    joinTimeout: o.joinTimeout,
    syncTimeout: o.syncTimeout,
  };
}

/** A length-prefixed sealed frame. */
function frame(sealer: Sealer, kind: number, body: Buffer): Buffer {
  const sealed = sealer.seal(kind, body);
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(sealed.length, 0);
  return Buffer.concat([len, sealed]);
}

function write(socket: net.Socket, buf: Buffer): Promise<void> {
  if (socket.destroyed) return Promise.reject(new Error('connection closed'));
  if (socket.write(buf)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      socket.off('drain', ok);
      socket.off('close', closed);
      if (err) reject(err);
      else resolve();
    };
    const ok = () => done();
    const closed = () => done(new Error('connection closed'));
    socket.once('drain', ok);
    socket.once('close', closed);
  });
}

/**
 * Splits a stream into length-prefixed frames; `onFrame` returns false to stop reading.
 * A length over `max` calls `tooLarge` and stops.
 */
function readFrames(
  socket: net.Socket,
  onFrame: (buf: Buffer) => boolean,
  tooLarge: () => void,
  max = MAX_FRAME,
): void {
  let chunks: Buffer[] = [];
  let have = 0;
  let need = -1;
  const onData = (data: Buffer) => {
    chunks.push(data);
    have += data.length;
    for (;;) {
      if (need < 0) {
        if (have < 4) return;
        const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, have);
        chunks = [all];
        need = all.readUInt32BE(0);
        if (need > max || need === 0) {
          socket.off('data', onData);
          tooLarge();
          return;
        }
        need += 4;
      }
      if (have < need) return;
      const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, have);
      const body = all.subarray(4, need);
      const rest = all.subarray(need);
      chunks = rest.length > 0 ? [rest] : [];
      have = rest.length;
      need = -1;
      if (!onFrame(body)) {
        socket.off('data', onData);
        return;
      }
    }
  };
  socket.on('data', onData);
}
