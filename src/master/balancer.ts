import net from 'node:net';
import { channels, debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import type { Pick } from '../hash.js';
import type { ResolvedStickyOptions } from '../options.js';
import { normaliseAddress } from './address.js';
import { fromForwarded, fromForwardedFor } from './forwarded.js';
import type { RawHandle } from './handoff.js';
import { parseHead } from './head.js';
import { type HeadReadOptions, type HeadReadResult, readHead } from './head-reader.js';
import type { WorkerPool } from './pool.js';

export interface BalancerCounters {
  /** Connections handed to a worker. */
  connections: number;
  /** Connections answered `503` because no worker was ready in time. */
  rejected: number;
  /** Handoffs that failed, or that a dying worker never took, sent to another slot. */
  rerouted: number;
  /** Connections closed before they could be handed off (client left, no address, no worker). */
  dropped: number;
}

interface Pending {
  handle: RawHandle;
  key: string;
  timer: NodeJS.Timeout;
}

/** Proxy mode: what the primary learned from a connection's head, kept for retries. */
interface Routed {
  key: string;
  head: Buffer;
}

/** What the listening socket's handle calls for each accepted connection (libuv's callback). */
type OnConnection = (status: number, client?: RawHandle) => void;

function answer(status: string, text: string, extra = ''): Buffer {
  return Buffer.from(
    `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length + 1}\r\n` +
      `${extra}Connection: close\r\n\r\n${text}\n`,
    'latin1',
  );
}

const UNAVAILABLE = answer('503 Service Unavailable', 'no worker available', 'Retry-After: 1\r\n');
const TOO_LARGE = answer('431 Request Header Fields Too Large', 'request head too large');
const TIMEOUT = answer('408 Request Timeout', 'request head not received in time');

/**
 * The listening side of the primary, IP mode. A `net.Server` binds and closes the port; each
 * accepted connection is taken as the raw handle libuv produced (as Node's own round-robin
 * scheduler does) and never read: it is keyed by the peer's normalised address and handed to the
 * worker of the slot the picker chooses among the ready slots. Nothing is read in the primary,
 * so nothing can be lost.
 */
export class Balancer {
  readonly server: net.Server;
  readonly counters: BalancerCounters = { connections: 0, rejected: 0, rerouted: 0, dropped: 0 };
  private readonly pending = new Set<Pending>();
  /** Slots a returned connection already failed on, so a retry never goes back to one. */
  private readonly tried = new WeakMap<RawHandle, Set<number>>();
  /** Proxy mode: each connection's key and head, until a worker has it. */
  private readonly routed = new WeakMap<RawHandle, Routed>();
  private readonly missingHeader: Buffer;
  /**
   * How the primary reads a connection (proxy mode, PROXY protocol) before routing it; undefined
   * in IP mode, where it reads nothing.
   */
  private readonly headOptions: HeadReadOptions | undefined;
  private closed = false;

  constructor(
    private readonly options: ResolvedStickyOptions,
    private readonly pool: WorkerPool,
    private readonly pick: Pick,
  ) {
    this.headOptions =
      options.proxy || options.proxyProtocol
        ? {
            maxBytes: options.maxHeaderBytes,
            timeoutMs: options.headTimeout,
            proxyProtocol: options.proxyProtocol,
            untilHead: options.proxy,
          }
        : undefined;
    this.missingHeader = answer('400 Bad Request', `missing or unusable ${options.header} header`);
    this.server = net.createServer({ pauseOnConnect: true });
    // Registered before listen()'s own callback, so no connection is accepted the usual way.
    this.server.once('listening', () => this.takeOverAccept());
    pool.on('change', () => this.flushPending());
    pool.on('returned', (handle, slot) => this.retry(handle, slot));
    pool.on('orphans', (handles) => {
      debug('re-routing %d connections a dead worker never took', handles.length);
      for (const handle of handles) {
        this.counters.rerouted++;
        this.keyAndRoute(handle);
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

  private takeOverAccept(): void {
    const handle = (this.server as unknown as { _handle?: { onconnection?: OnConnection } })
      ._handle;
    if (typeof handle?.onconnection !== 'function') {
      // Every supported Node version has this callback; say so plainly if one does not.
      this.server.emit(
        'error',
        new StickyMeshError(
          'ERR_STICKY_LISTEN_FAILED',
          'sticky-mesh: this Node.js version does not expose accepted connections to the primary',
        ),
      );
      return;
    }
    handle.onconnection = (status, client) => this.accept(status, client);
  }

  private accept(status: number, client: RawHandle | undefined): void {
    if (status !== 0 || !client) {
      // An accept error (EMFILE, ...): the client, if any, was never connected to us.
      debug('accept failed: %d', status);
      return;
    }
    if (this.headOptions) {
      readHead(client, this.headOptions, (r) => this.onHead(r));
    } else {
      this.keyAndRoute(client);
    }
  }

  /** Proxy mode: the first request head of a connection has been read (or could not be). */
  private onHead(result: HeadReadResult): void {
    switch (result.status) {
      case 'ok': {
        const key = this.options.proxy
          ? this.keyFromHead(result.bytes.subarray(0, result.headLength))
          : result.source;
        // Without `proxy` a PROXY header without an address (LOCAL, UNKNOWN) keys by the peer.
        const fallback = !this.options.proxy || this.options.ignoreMissingHeader;
        if (key !== undefined) {
          this.routed.set(result.handle, { key, head: result.bytes });
          this.route(result.handle, key);
        } else if (fallback) {
          this.routed.set(result.handle, { key: result.source ?? '', head: result.bytes });
          this.keyAndRoute(result.handle);
        } else {
          this.counters.dropped++;
          this.respond(result.handle, this.missingHeader);
        }
        return;
      }
      case 'too-large':
        this.counters.dropped++;
        this.respond(result.socket, TOO_LARGE);
        return;
      case 'timeout':
        this.counters.dropped++;
        this.respond(result.socket, TIMEOUT);
        return;
      case 'bad-proxy':
        this.counters.dropped++;
        result.socket.destroy();
        return;
      case 'closed':
        this.counters.dropped++;
        return;
    }
  }

  private keyFromHead(head: Buffer): string | undefined {
    const values = parseHead(head)?.headers.get(this.options.header);
    if (!values) return undefined;
    return this.options.header === 'forwarded'
      ? fromForwarded(values, this.options.trustedProxies)
      : fromForwardedFor(values, this.options.trustedProxies);
  }

  private keyAndRoute(handle: RawHandle): void {
    const known = this.headOptions ? this.routed.get(handle)?.key : undefined;
    if (known) {
      this.route(handle, known);
      return;
    }
    const peer: { address?: string } = {};
    handle.getpeername(peer);
    const key = normaliseAddress(peer.address);
    if (key === undefined) {
      // The client is already gone: the kernel reports no peer for it.
      this.counters.dropped++;
      handle.close();
      return;
    }
    this.route(handle, key);
  }

  private route(handle: RawHandle, key: string): void {
    const tried = this.tried.get(handle);
    const live = tried ? this.pool.live.filter((slot) => !tried.has(slot)) : this.pool.live;
    const slot = this.pick(key, live);
    const handoff = slot === undefined ? undefined : this.pool.handoff(slot);
    if (slot === undefined || !handoff) {
      if (tried) {
        // Every ready worker failed to take this connection in turn: give up rather than loop.
        this.counters.dropped++;
        handle.close();
      } else {
        this.hold(handle, key);
      }
      return;
    }
    const head = this.headOptions ? this.routed.get(handle)?.head : undefined;
    handoff.send(handle, head, () => {
      this.counters.connections++;
      this.pool.countConnection(slot);
      if (channels.connection.hasSubscribers) channels.connection.publish({ slot, key });
    });
  }

  /** The worker of `slot` could not take `handle` (it died, or its channel broke): try the next. */
  private retry(handle: RawHandle, slot: number): void {
    const tried = this.tried.get(handle) ?? new Set<number>();
    tried.add(slot);
    this.tried.set(handle, tried);
    this.counters.rerouted++;
    this.keyAndRoute(handle);
  }

  /** No worker is ready: keep the connection (unread) until one is, or answer 503. */
  private hold(handle: RawHandle, key: string): void {
    if (this.closed || this.pending.size >= this.options.maxPendingConnections) {
      this.respond503(handle);
      return;
    }
    const entry: Pending = {
      handle,
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
      this.route(p.handle, p.key);
    }
  }

  private reject(p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(p);
    this.respond503(p.handle);
  }

  private respond503(handle: RawHandle): void {
    this.counters.rejected++;
    this.respond(handle, UNAVAILABLE);
  }

  /** Answers and closes. Takes a raw handle or a socket that still holds its handle. */
  private respond(target: RawHandle | net.Socket, response: Buffer): void {
    const socket =
      target instanceof net.Socket
        ? target
        : new net.Socket({
            handle: target,
            readable: true,
            writable: true,
          } as net.SocketConstructorOpts);
    // Reading (and discarding) what the client sent keeps the close from turning into a reset
    // that could swallow the answer; clients that never finish are cut off after 2 s.
    socket.on('error', (err) => debug('client socket error: %s', err.message));
    socket.resume();
    socket.end(response);
    socket.once('end', () => socket.destroy());
    setTimeout(() => socket.destroy(), 2_000).unref();
  }
}
