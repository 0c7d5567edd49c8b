import net from 'node:net';
import { channels, debug, trace } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import type { SlotPicker } from '../hash.js';
import { inheritNoDelay, interceptAccept, type RawHandle } from '../node-internals.js';
import type { ResolvedStickyOptions } from '../options.js';
import { normaliseAddress } from '../routing/address.js';
import {
  BUSY,
  drop,
  missingHeader,
  respond,
  TIMEOUT,
  TOO_LARGE,
  UNAVAILABLE,
} from '../routing/answer.js';
import { findHeadEnd } from '../routing/head.js';
import { type HeadReadOptions, type HeadReadResult, readHead } from '../routing/head-reader.js';
import { type RouteKey, routeKey, slotFor } from '../routing/key.js';
import { sidFromTarget } from '../routing/session-id.js';
import type { Handoff } from './handoff.js';
import type { WorkerPool } from './pool.js';
import { type HeadReadTimer, newRefusals } from './refusals.js';
import { routeReason } from './trace.js';

export interface BalancerCounters {
  /** Connections handed to a worker. */
  connections: number;
  /** Connections answered `503` because no worker was ready in time. */
  rejected: number;
  /** Handoffs that failed, or that a dying worker never took, sent to another slot. */
  rerouted: number;
  /** Connections closed before they could be handed off (client left, no address, no worker). */
  dropped: number;
  /** Connections a worker handed back because their next request belonged to another slot. */
  handedBack: number;
  /**
   * Connections answered `503` and closed at once, unread, because `maxHeadReads` request heads
   * (or PROXY headers) were already being read (proxy mode, session affinity, PROXY protocol).
   */
  headReadsRefused: number;
}

interface Pending {
  handle: RawHandle;
  route: RouteKey;
  timer: NodeJS.Timeout;
}

/** Proxy mode: what the primary learned from a connection's head, kept for retries. */
interface Routed {
  route: RouteKey;
  /** Every byte read from the connection (the head and what followed), to be replayed. */
  head: Buffer;
  /** The connection's address key: PROXY protocol source or TCP peer. */
  peer: string | undefined;
}

function peerKey(handle: RawHandle): string | undefined {
  const peer: { address?: string } = {};
  handle.getpeername(peer);
  return normaliseAddress(peer.address);
}

/**
 * The listening side of the primary. A `net.Server` binds and closes the port; each accepted
 * connection is taken as the raw handle libuv produced (as Node's own round-robin scheduler
 * does) and handed to the worker of the slot the picker chooses among the ready slots.
 * - IP mode: the connection is never read; it is keyed by the peer's normalised address, so
 *   nothing is read in the primary and nothing can be lost.
 * - Proxy mode, session-id affinity, PROXY protocol: the primary reads the first request head
 *   (routing/head-reader.ts), keys it (routing/key.ts) and hands over the connection with every
 *   byte it read, for the worker to replay. Later requests of a kept-open connection are keyed by
 *   the worker; one that belongs elsewhere comes back here (`reroute`) with its bytes.
 * - Heads being read are bounded in number (`maxHeadReads`; one more gets `503`), size
 *   (`maxHeaderBytes`) and time from accept (`headTimeout`).
 * - Connections wait (unread, bounded in number and time) while no worker is ready; a handoff a
 *   worker could not take, or never took before it died, is routed again.
 */
export class Balancer {
  readonly server: net.Server;
  readonly counters: BalancerCounters = {
    connections: 0,
    rejected: 0,
    rerouted: 0,
    dropped: 0,
    handedBack: 0,
    headReadsRefused: 0,
  };
  /** Why connections were refused, where `counters` does not say. */
  readonly refusals = newRefusals();
  /** Set by the metrics (unset: no clock is read). */
  onHeadRead: HeadReadTimer | undefined;
  private readonly pending = new Set<Pending>();
  /** Connections whose head is being read now: at most `maxHeadReads`. */
  private headReads = 0;
  /**
   * Slots a returned connection already failed on, with the generation of the worker that
   * failed it: a retry never goes back to that worker, but does go to its replacement.
   */
  private readonly tried = new WeakMap<RawHandle, Map<number, number>>();
  /** Proxy mode: each connection's key and head, until a worker has it. */
  private readonly routed = new WeakMap<RawHandle, Routed>();
  private readonly missingHeader: Buffer;
  /**
   * How the primary reads a connection (proxy mode, PROXY protocol, `sync` with session-id
   * affinity) before routing it; undefined in IP mode, where it reads nothing.
   */
  private readonly headOptions: HeadReadOptions | undefined;
  private closed = false;
  /** Accepted connections already have TCP_NODELAY (inherited from the listening socket). */
  noDelayInherited = false;
  /** Whether a request's key can be the connection's address (no proxy, or its fallback). */
  private readonly peerNeeded: boolean;

  constructor(
    private readonly options: ResolvedStickyOptions,
    private readonly pool: WorkerPool,
    private readonly pick: SlotPicker,
  ) {
    // In IP mode the key is the connection's address, known at accept: with session-id
    // affinity a worker checks each request's id itself (worker/keep-alive.ts), the first one
    // too, and only a request whose id names another worker costs anything. `sync` (it holds
    // back bytes the primary read) and the PROXY protocol (the primary reads anyway) keep the
    // head read here.
    const untilHead =
      options.proxy ||
      (options.sessionAffinity !== false && (options.sync !== false || options.proxyProtocol));
    this.headOptions =
      untilHead || options.proxyProtocol
        ? {
            maxBytes: options.maxHeaderBytes,
            timeoutMs: options.headTimeout,
            proxyProtocol: options.proxyProtocol,
            untilHead,
            readNow: true,
          }
        : undefined;
    this.missingHeader = missingHeader(options.header);
    this.peerNeeded = !options.proxy || options.ignoreMissingHeader;
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

  /** Connections being held now: heads being read, and connections waiting for a worker. */
  gauges(): { headReads: number; waiting: number } {
    return { headReads: this.headReads, waiting: this.pending.size };
  }

  /** Stops accepting; connections still waiting for a worker get `503`. */
  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.server.close();
    for (const p of this.pending) this.reject(p);
  }

  private takeOverAccept(): void {
    if (!interceptAccept(this.server, (status, client) => this.accept(status, client))) {
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
    this.noDelayInherited = inheritNoDelay(this.server);
  }

  private accept(status: number, client: RawHandle | undefined): void {
    if (status !== 0 || !client) {
      // An accept error (EMFILE, ...): the client, if any, was never connected to us.
      debug('accept failed: %d', status);
      return;
    }
    if (!this.headOptions) {
      this.keyAndRoute(client);
    } else if (this.headReads >= this.options.maxHeadReads) {
      // Each read holds a descriptor, a buffer and a timer until its deadline: slow or silent
      // clients must not make the primary hold them without bound.
      this.counters.headReadsRefused++;
      trace.route?.('%d request heads being read (maxHeadReads): 503', this.headReads);
      respond(client, BUSY);
    } else {
      this.headReads++;
      const timer = this.onHeadRead;
      const started = timer ? performance.now() : 0;
      // Every outcome, also one reported before readHead returns, ends the read once.
      readHead(client, this.headOptions, (r) => {
        this.headReads--;
        timer?.(r.status, (performance.now() - started) / 1000);
        this.onHead(r);
      });
    }
  }

  /** Proxy mode: the first request head of a connection has been read (or could not be). */
  private onHead(result: HeadReadResult): void {
    if (result.status !== 'ok') trace.route?.('request head not read (%s): refused', result.status);
    switch (result.status) {
      case 'ok': {
        const head = this.headOptions?.untilHead
          ? result.bytes.subarray(0, result.headLength)
          : undefined;
        // The address key is only asked of the kernel where it can be the key.
        const peer = result.source ?? (this.peerNeeded ? peerKey(result.handle) : undefined);
        this.routeHead(result.handle, head, result.bytes, peer);
        return;
      }
      case 'too-large':
        this.counters.dropped++;
        this.refusals.tooLarge++;
        respond(result.connection, TOO_LARGE);
        return;
      case 'timeout':
        this.counters.dropped++;
        this.refusals.timeout++;
        respond(result.connection, TIMEOUT);
        return;
      case 'bad-proxy':
        this.counters.dropped++;
        this.refusals.badProxy++;
        drop(result.connection);
        return;
      case 'closed':
        this.counters.dropped++;
        return;
    }
  }

  /**
   * A worker handed back a connection whose next request belongs elsewhere: route that request
   * as if the connection were new (the bytes read so far travel with it).
   */
  reroute(handle: RawHandle, bytes: Buffer, peer: string | undefined): void {
    this.counters.handedBack++;
    trace.handoff?.('a worker handed back a connection whose next request is not its own');
    const end = findHeadEnd(bytes);
    this.routeHead(handle, end === -1 ? bytes : bytes.subarray(0, end), bytes, peer);
  }

  private routeHead(
    handle: RawHandle,
    head: Buffer | undefined,
    bytes: Buffer,
    peer: string | undefined,
  ): void {
    const route = routeKey(head, peer, this.options);
    if (route.key === undefined && route.owner === undefined) {
      this.counters.dropped++;
      this.refusals.badRequest++;
      trace.route?.('no usable %s address and no session id: 400', this.options.header);
      respond(handle, this.missingHeader);
      return;
    }
    this.routed.set(handle, { route, head: bytes, peer });
    const retained = this.retainedFor(head ?? bytes);
    if (retained) {
      // An engine.io session still polling on a worker that a reload replaced: it stays there
      // until it ends or that worker has drained.
      trace.route?.('engine.io session of a worker a reload replaced: to that worker');
      retained.send(handle, bytes, peer, () => this.counters.connections++);
      return;
    }
    this.route(handle, route);
  }

  /** The draining worker that still serves the engine.io session this request names, if any. */
  private retainedFor(head: Buffer): Handoff | undefined {
    if (!this.pool.succession.retaining) return undefined;
    const lineEnd = head.indexOf('\r\n');
    const line = head.toString('latin1', 0, lineEnd === -1 ? Math.min(head.length, 8192) : lineEnd);
    const target = line.split(' ')[1];
    const sid = target?.includes('EIO=') ? sidFromTarget(target) : undefined;
    return sid === undefined ? undefined : this.pool.succession.retainedHandoff(sid);
  }

  private keyAndRoute(handle: RawHandle): void {
    // Also where the primary reads no heads: a worker may hand a connection back with its bytes.
    const known = this.routed.get(handle)?.route;
    if (known) {
      this.route(handle, known);
      return;
    }
    const key = peerKey(handle);
    if (key === undefined) {
      // The client is already gone: the kernel reports no peer for it.
      this.counters.dropped++;
      handle.close();
      return;
    }
    this.route(handle, { key });
  }

  private route(handle: RawHandle, route: RouteKey): void {
    const tried = this.tried.get(handle);
    const live = tried
      ? this.pool.live.filter((slot) => tried.get(slot) !== this.pool.generation(slot))
      : this.pool.live;
    const slot = slotFor(route, this.pick, live);
    const handoff = slot === undefined ? undefined : this.pool.handoff(slot);
    if (slot !== undefined && handoff && this.pool.overQueued(slot)) {
      // The worker has taken none of its many waiting connections for a while: it is stuck.
      // Out it goes; its queue and this connection go elsewhere.
      this.pool.unresponsive(slot, 'queue');
      this.route(handle, route);
      return;
    }
    if (slot === undefined || !handoff) {
      trace.route?.('%s: no ready worker%s', route.key ?? 'session', route.key ? ', held' : '');
      if (route.key === undefined) {
        // Only a session owner could take it and none is ready: same answer as a missing header.
        this.counters.dropped++;
        this.refusals.badRequest++;
        respond(handle, this.missingHeader);
      } else {
        this.hold(handle, route);
      }
      return;
    }
    trace.route?.(
      '%s -> slot %d (%s)',
      route.key ?? 'session',
      slot,
      routeReason(route, slot, tried),
    );
    const routed = this.routed.get(handle);
    handoff.send(handle, routed?.head, routed?.peer, () => {
      this.counters.connections++;
      this.pool.countConnection(slot);
      if (channels.connection.hasSubscribers) {
        channels.connection.publish({ slot, key: route.key ?? `session:${slot}` });
      }
    });
  }

  /** The worker of `slot` could not take `handle` (it died, or its channel broke): try the next. */
  private retry(handle: RawHandle, slot: number): void {
    const tried = this.tried.get(handle) ?? new Map<number, number>();
    tried.set(slot, this.pool.generation(slot));
    this.tried.set(handle, tried);
    this.counters.rerouted++;
    this.keyAndRoute(handle);
  }

  /**
   * No worker is ready (or none that has not already failed this connection): keep the
   * connection (unread) until one is, or answer 503.
   */
  private hold(handle: RawHandle, route: RouteKey): void {
    if (this.closed || this.pending.size >= this.options.maxPendingConnections) {
      if (!this.closed) this.refusals.pendingCap++;
      this.respond503(handle);
      return;
    }
    const entry: Pending = {
      handle,
      route,
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
      this.route(p.handle, p.route);
    }
  }

  private reject(p: Pending): void {
    clearTimeout(p.timer);
    this.pending.delete(p);
    this.respond503(p.handle);
  }

  private respond503(handle: RawHandle): void {
    this.counters.rejected++;
    trace.route?.('no ready worker in time or room to wait: 503');
    respond(handle, UNAVAILABLE);
  }
}
