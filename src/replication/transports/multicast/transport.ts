import dgram from 'node:dgram';
import type net from 'node:net';
import { debug } from '../../../debug.js';
import { StickyMeshError } from '../../../errors.js';
import { newNodeId } from '../../clock.js';
import { type MissCounters, MissLookups } from '../../miss.js';
import type { Change } from '../../table.js';
import type { ReplicaHost, Transport } from '../../transport.js';
import { decodeMessage, encodeMessage, Kind, type MeshMessage } from './codec.js';
import { type MulticastInterface, pickInterface } from './interface.js';
import { MeshNode } from './mesh.js';
import type { ResolvedMulticastOptions } from './options.js';
import {
  MESH_TIMINGS,
  type MeshCounters,
  type MeshIO,
  newRejections,
  type PeerAddress,
  type Rejections,
  type StateTransfer,
} from './peer.js';
import { Keyring, type Opened, open, ReplayWindow, Sealer } from './seal.js';
import { DATAGRAM_BUDGET } from './stream.js';
import {
  fetchState,
  MAX_UNAUTHENTICATED_PER_ADDRESS,
  REQUEST_DEADLINE,
  type TransferContext,
  type TransferRefusal,
  TransferServer,
} from './transfer.js';

/** Socket buffer sizes asked of the kernel (it caps them at net.core.rmem_max / wmem_max). */
const RECV_BUFFER = 4 * 1024 * 1024;
/** ms between queries for a session while a read waits for it. */
const QUERY_INTERVAL = 100;

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
  /** Bytes of those datagrams (rejected ones included). */
  bytesReceived: number;
  /** Datagrams, frames and connections refused, by reason; none of them was acted on. */
  rejected: Rejections;

  /** State transfers served to other nodes. */
  served: number;
  /** State-transfer connections held now that have not sent an authenticated request yet. */
  syncWaiting: number;
  socketErrors: number;
  /** Reads that missed here and asked the group (see `readOnMissWait`). */
  readOnMiss: MissCounters;
}

/**
 * One machine's replication endpoint: a UDP socket on the group, a TCP server for state
 * transfers, and the {@link MeshNode} between them. Owned by the cluster primary, or by a
 * standalone store.
 */
export class MulticastTransport implements Transport<MulticastStats>, MeshIO, TransferContext {
  readonly kind = 'multicast' as const;
  readonly id = newNodeId();
  readonly node: MeshNode;
  readonly ring: Keyring;
  private readonly sealer: Sealer;
  private readonly replay: ReplayWindow;
  private socket: dgram.Socket | undefined;
  private readonly server: TransferServer;
  private readonly misses: MissLookups;
  private iface: MulticastInterface | undefined;
  /** Datagrams handed to the socket and not yet sent (close() waits for them). */
  private sending = 0;
  private sent: (() => void) | undefined;
  readonly conns = new Set<net.Socket>();
  closed = false;
  private starting: Promise<void> | undefined;
  private closing: Promise<void> | undefined;
  private readonly extra = {
    datagramsReceived: 0,
    bytesReceived: 0,
    socketErrors: 0,
    rejected: newRejections(),
  };

  constructor(
    private readonly options: ResolvedMulticastOptions,
    host: ReplicaHost,
  ) {
    this.ring = new Keyring(options.secret, options.cluster);
    this.sealer = new Sealer(this.ring, this.id);
    this.replay = new ReplayWindow(options.maxClockSkew);
    this.misses = new MissLookups(host.table, options.readOnMissWait);
    this.node = new MeshNode(
      this.id,
      this.misses.watching(host),
      this,
      { ...MESH_TIMINGS, ...pickTimings(options) },
      options.logger,
    );
    this.server = new TransferServer(
      this,
      () => this.node.snapshot(),
      (err) => {
        this.extra.socketErrors++;
        this.options.logger.warn(`sticky-mesh: state-transfer server error: ${err.message}`);
      },
      {
        maxConnections: options.maxSyncConnections,
        perAddress: MAX_UNAUTHENTICATED_PER_ADDRESS,
        deadline: REQUEST_DEADLINE,
      },
    );
  }

  /**
   * Read on miss: asks the group who holds `sid` (again every 100 ms, datagrams get lost) and
   * resolves once its record arrived, or after `readOnMissWait`; see replication/miss.ts.
   */
  fetch(sid: string): Promise<void> {
    return this.misses.lookup(sid, () => this.query(sid), {
      askEvery: QUERY_INTERVAL,
      rememberSilence: true,
    });
  }

  /** Asks the group who holds `sid`; holders send its record again (mesh.ts, 'query'). */
  private query(sid: string): void {
    const phase = this.node.phase;
    if (phase !== 'synced' && phase !== 'syncing') return;
    this.node.counters.queriesSent++;
    this.send({ k: 'query', sid });
  }

  /** The state-transfer server's port (0 until it listens). */
  get port(): number {
    return this.server.port;
  }

  /**
   * Opens the socket and the state-transfer server, joins the group and resolves once this
   * machine holds the cluster's sessions (or `syncTimeout` passed, logged). Rejects with
   * `ERR_STICKY_TRANSPORT_FAILED` when the sockets cannot be opened. Every call returns the
   * same promise.
   */
  start(): Promise<void> {
    this.starting ??= this.open();
    return this.starting;
  }

  synced(): Promise<void> {
    return this.start();
  }

  private async open(): Promise<void> {
    const o = this.options;
    this.iface = pickInterface(o.use, o.address, o.logger);
    try {
      await this.server.listen(this.iface.address, o.syncPort);
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

  publish(change: Change, encoded?: Buffer): void {
    this.node.publish(change, encoded);
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
    this.misses.close();
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
      this.server.close(),
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
      bytesReceived: this.extra.bytesReceived,
      rejected: { ...this.extra.rejected },
      served: this.server.served,
      syncWaiting: this.server.waiting,
      socketErrors: this.extra.socketErrors,
      readOnMiss: { ...this.misses.counters },
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
    return fetchState(this, peer, sink);
  }

  // ---- TransferContext ------------------------------------------------------------------------

  /**
   * Opens and freshness-checks an envelope, counting why it was refused. Every envelope is
   * checked, this node's own id included: nothing this node sealed may be played back to it.
   */
  openFrame(buf: Buffer): Opened | undefined {
    const opened = open(this.ring, buf, this.replay);
    if (typeof opened === 'string') {
      this.extra.rejected[opened]++;
      return undefined;
    }
    return opened;
  }

  malformed(): void {
    this.extra.rejected.malformed++;
  }

  refused(why: TransferRefusal): void {
    this.extra.rejected[why]++;
  }

  // ---- sockets ----------------------------------------------------------------------------------

  private bindUdp(iface: MulticastInterface): Promise<void> {
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
    this.extra.bytesReceived += buf.length;
    try {
      if (buf.length > DATAGRAM_BUDGET) {
        this.extra.rejected.oversize++;
        return;
      }
      const opened = this.openFrame(buf);
      if (!opened || opened.sender === this.id) return;
      // A state-transfer frame belongs on TCP, answering a request: in a datagram it answers none.
      if (opened.kind >= Kind.SyncRequest && opened.kind <= Kind.SyncEnd) {
        this.extra.rejected.unsolicited++;
        return;
      }
      const msg = decodeMessage(opened.kind, opened.body);
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
}

function pickTimings(o: ResolvedMulticastOptions) {
  return {
    heartbeatInterval: o.heartbeatInterval,
    failureTimeout: o.failureTimeout,
    joinTimeout: o.joinTimeout,
    syncTimeout: o.syncTimeout,
  };
}
