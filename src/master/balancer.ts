import net from 'node:net';
import { debug } from '../debug.js';
import type { ResolvedStickyOptions } from '../options.js';
import { type ConnectionMessage, MessageType, message } from '../protocol/messages.js';
import { normaliseAddress } from './address.js';
import type { Pick } from './hash.js';
import type { WorkerPool } from './pool.js';

export interface BalancerCounters {
  /** Connections handed to a worker. */
  connections: number;
  /** Connections answered `503` because no worker was ready in time. */
  rejected: number;
  /** Handoffs that failed or that a dying worker never took, sent to another slot. */
  rerouted: number;
  /** Connections closed before they could be handed off (client left, no address, no worker). */
  dropped: number;
}

interface Pending {
  socket: net.Socket;
  key: string;
  timer: NodeJS.Timeout;
}

const CONNECTION: ConnectionMessage = message<ConnectionMessage>(MessageType.Connection, {});

/** The primary gives its copy of the socket away: Node closes it once the worker has it. */
const SEND_OPTIONS = { keepOpen: false } as const;

function onClientError(err: Error): void {
  debug('client socket error: %s', err.message);
}

const UNAVAILABLE = Buffer.from(
  'HTTP/1.1 503 Service Unavailable\r\nContent-Type: text/plain\r\nContent-Length: 20\r\n' +
    'Retry-After: 1\r\nConnection: close\r\n\r\nno worker available\n',
);

/**
 * The listening side of the primary, IP mode: accepts with `pauseOnConnect` (the primary never
 * reads a byte, so nothing can be lost), keys each connection by its normalised remote address
 * and hands the socket to the worker of the slot the picker chooses among the ready slots.
 */
export class Balancer {
  readonly server: net.Server;
  readonly counters: BalancerCounters = { connections: 0, rejected: 0, rerouted: 0, dropped: 0 };
  private readonly pending = new Set<Pending>();
  private closed = false;

  constructor(
    private readonly options: ResolvedStickyOptions,
    private readonly pool: WorkerPool,
    private readonly pick: Pick,
  ) {
    this.server = net.createServer({ pauseOnConnect: true }, (socket) => this.accept(socket));
    pool.on('change', () => this.flushPending());
    pool.on('orphans', (sockets) => {
      debug('re-routing %d sockets a dead worker never took', sockets.length);
      for (const socket of sockets) {
        this.counters.rerouted++;
        this.accept(socket);
      }
    });
  }

  /** Stops accepting; connections still waiting for a worker get `503`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    for (const p of this.pending) this.reject(p);
  }

  private accept(socket: net.Socket): void {
    // A reset while the socket waits or travels must not become an uncaught 'error'.
    socket.on('error', onClientError);
    const key = normaliseAddress(socket.remoteAddress);
    if (key === undefined) {
      // The client is already gone: Node reports no address for a closed handle.
      this.counters.dropped++;
      socket.destroy();
      return;
    }
    this.route(socket, key, undefined);
  }

  private route(socket: net.Socket, key: string, exclude: ReadonlySet<number> | undefined): void {
    const live = exclude ? this.pool.live.filter((slot) => !exclude.has(slot)) : this.pool.live;
    const slot = this.pick(key, live);
    const worker = slot === undefined ? undefined : this.pool.worker(slot);
    if (slot === undefined || !worker) {
      if (exclude) {
        // Every ready worker refused this socket in turn: give up on it rather than loop.
        this.counters.dropped++;
        socket.destroy();
      } else {
        this.hold(socket, key);
      }
      return;
    }
    worker.send(CONNECTION, socket, SEND_OPTIONS, (err: Error | null) => {
      if (!err) {
        this.counters.connections++;
        this.pool.countConnection(slot);
        return;
      }
      // The worker died between pick and send, or its channel broke (EPIPE). If the handle is
      // still ours, try the next choice; a socket Node already released is gone.
      debug('handoff to slot %d failed: %s', slot, err.message);
      if (socket.destroyed || !hasHandle(socket)) {
        this.counters.dropped++;
        return;
      }
      this.counters.rerouted++;
      const tried = new Set(exclude);
      tried.add(slot);
      this.route(socket, key, tried);
    });
  }

  /** No worker is ready: keep the socket (unread) until one is, or answer 503. */
  private hold(socket: net.Socket, key: string): void {
    if (this.closed || this.pending.size >= this.options.maxPendingConnections) {
      this.respond503(socket);
      return;
    }
    const entry: Pending = {
      socket,
      key,
      timer: setTimeout(() => this.reject(entry), this.options.pendingTimeout),
    };
    entry.timer.unref();
    this.pending.add(entry);
  }

  private flushPending(): void {
    if (this.pool.live.length === 0 || this.pending.size === 0) return;
    const waiting = [...this.pending];
    this.pending.clear();
    for (const p of waiting) {
      clearTimeout(p.timer);
      if (p.socket.destroyed) this.counters.dropped++;
      else this.route(p.socket, p.key, undefined);
    }
  }

  private reject(p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(p);
    this.respond503(p.socket);
  }

  private respond503(socket: net.Socket): void {
    this.counters.rejected++;
    if (socket.destroyed) return;
    // Read (and discard) what the client sent so that closing does not turn into a reset that
    // could swallow the answer; give up on clients that never finish.
    socket.resume();
    socket.end(UNAVAILABLE);
    socket.once('end', () => socket.destroy());
    setTimeout(() => socket.destroy(), 2_000).unref();
  }
}

function hasHandle(socket: net.Socket): boolean {
  return (socket as unknown as { _handle: unknown })._handle != null;
}
