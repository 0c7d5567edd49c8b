import type http from 'node:http';
import type { Socket } from 'node:net';
import { rendezvous, type SlotPicker } from '../hash.js';
import {
  isLastResponse,
  onReadOf,
  pauseParser,
  type RawHandle,
  setOnRead,
  takeFromServer,
} from '../node-internals.js';
import type { ResolvedStickyOptions } from '../options.js';
import { sendToPrimary } from '../protocol/ipc.js';
import { MessageType, message, type RerouteMessage } from '../protocol/messages.js';
import { drop, missingHeader, respond, TIMEOUT, TOO_LARGE } from '../routing/answer.js';
import {
  type HeadRead,
  type HeadReadOptions,
  type HeadReadResult,
  readHead,
} from '../routing/head-reader.js';
import { routeKey, slotFor } from '../routing/key.js';

/** Per-request routing state of one proxy connection (its socket wrapper is the map's key). */
interface ProxyConnection {
  handle: RawHandle;
  /** The connection's address key: the fallback key of its requests. */
  peer: string | undefined;
  /** Requests received on this socket and not yet answered. */
  inflight: number;
  /** Reading was stopped after the last answer, to see the next request before the server. */
  paused: boolean;
}

/** What the routing of kept-open connections needs from the worker that runs it. */
export interface KeptOpenOwner {
  readonly slot: number;
  /** The factory's server (for its keep-alive timeout). */
  readonly server: http.Server | undefined;
  /** The worker takes requests (it is ready, not draining or closed). */
  readonly serving: boolean;
  /** The worker is draining: every next request goes back to the primary, which decides. */
  readonly draining: boolean;
  /** Gives a connection whose next request belongs here back to the server (a new socket). */
  adopt(handle: RawHandle, bytes: Buffer, peer: string | undefined): void;
  /** A connection between requests was settled (served, handed back or closed). */
  settled(): void;
}

/**
 * Per-request routing of kept-open proxy connections (proxy mode, session-id affinity), which
 * carry requests of many clients. Each request is checked before the server reads it: after an
 * answer, the worker stops reading, takes the connection back from the server, reads the next
 * request head itself and either gives the connection to the server again (the request belongs
 * here) or hands it, with the bytes read, back to the primary, which routes it like a new
 * connection. No byte is lost and the connection stays open.
 */
export class KeptOpenConnections {
  /** Connections handed back to the primary because their next request belonged elsewhere. */
  handedBack = 0;
  /** Proxy connections between two requests, whose next head this worker is reading. */
  private readonly waiting = new Set<HeadRead>();
  private readonly proxied = new WeakMap<Socket, ProxyConnection>();
  private readonly pick: SlotPicker;
  /** Slots with a ready worker, as the primary last said. */
  private live: readonly number[];
  private readonly missingHeader: Buffer;

  constructor(
    private readonly options: ResolvedStickyOptions,
    private readonly owner: KeptOpenOwner,
  ) {
    this.pick = rendezvous(options.seed, options.num);
    this.live = Array.from({ length: options.num }, (_, i) => i);
    this.missingHeader = missingHeader(options.header);
  }

  /** Connections whose next request head is being read here. */
  get size(): number {
    return this.waiting.size;
  }

  /** The primary's latest word on which slots have a ready worker. */
  setLive(live: readonly number[]): void {
    this.live = live;
  }

  /** Follows the requests of a connection the primary handed over with its first request. */
  follow(socket: Socket, handle: RawHandle, peer: string | undefined): void {
    this.proxied.set(socket, { handle, peer, inflight: 0, paused: false });
  }

  /** While draining: closes the connections that wait for a next request that has not begun. */
  closeIdle(): void {
    for (const read of this.waiting) if (read.closeIfIdle()) this.waiting.delete(read);
  }

  /** The server's 'request' listener (registered first): follows each request to its answer. */
  onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const conn = this.proxied.get(req.socket);
    if (!conn) return;
    conn.inflight++;
    res.once('prefinish', () => {
      // The answer is complete and written; a proxy sends the connection's next request only
      // after reading it. Stop reading now, so that request stays unread until it is routed.
      // (A handler that answers at once runs before the parser has marked a bodiless request
      // complete, so completeness is checked on 'finish', which comes after.)
      if (conn.inflight === 1 && !this.closingAfter(res)) {
        conn.handle.readStop();
        conn.paused = true;
      }
    });
    res.once('finish', () => {
      conn.inflight--;
      if (!conn.paused) return;
      conn.paused = false;
      const socket = req.socket;
      // Pipelined requests already in, a body still arriving, or a closing connection keep it
      // on this worker: it cannot leave the server cleanly, so it is served here.
      const movable = conn.inflight === 0 && req.complete && !socket.destroyed && socket.writable;
      if (!movable) {
        if (!socket.destroyed) conn.handle.readStart();
        return;
      }
      // After the write that ended this answer has fully settled (destroying the socket inside
      // its callbacks would fail the stream's pending ones); nothing is read meanwhile.
      process.nextTick(() => {
        if (socket.destroyed) return;
        if (this.peekNext(socket, conn)) return;
        if (!this.detach(socket)) {
          conn.handle.readStart();
          return;
        }
        this.nextRequest(conn.handle, conn.peer);
      });
    });
  }

  private closingAfter(res: http.ServerResponse): boolean {
    return this.owner.draining || isLastResponse(res) || res.shouldKeepAlive === false;
  }

  /**
   * Takes a socket's handle back from the http server without closing it; the socket object
   * (now without a handle) is destroyed, which makes the server forget the connection. Returns
   * false (and changes nothing) if that is not possible.
   */
  private detach(socket: Socket): boolean {
    if (!takeFromServer(socket)) return false;
    this.proxied.delete(socket);
    socket.destroy();
    return true;
  }

  /**
   * Reads the next request of a proxy connection while its server still holds it: the parser
   * stops consuming the handle, the head is read straight from the handle, and then either the
   * server gets the request on the same connection (it belongs here: no new socket, no new
   * 'connection') or the connection is taken from the server and handed back to the primary.
   * Returns false (nothing changed) where that is not possible; the caller then detaches first.
   */
  private peekNext(socket: Socket, conn: ProxyConnection): boolean {
    const paused = pauseParser(socket);
    if (!paused) return false;
    const { handle } = paused;
    // The reader installs its own read callback; the server's comes back afterwards.
    const onread = onReadOf(handle);
    // The reader's own timeout (the server's keepAliveTimeout) applies while it waits.
    socket.setTimeout(0);
    const onClose = () => {
      // The server closed it meanwhile (closeIdleConnections in a drain, an error).
      read.abandon();
      this.waiting.delete(read);
      if (this.owner.draining) this.owner.settled();
    };
    socket.once('close', onClose);
    const read = readHead(handle, this.headOptions(true), (result) => {
      this.waiting.delete(read);
      socket.off('close', onClose);
      setOnRead(handle, onread);
      if (result.status === 'ok') {
        const place = this.placeOf(result.bytes.subarray(0, result.headLength), conn.peer);
        if (place === 'here') {
          // Give the request to the server on the same connection, parser consuming again.
          paused.resume();
          socket.unshift(result.bytes);
        } else if (place === 'unroutable') {
          handle.reading = false;
          respond(socket, this.missingHeader);
        } else if (this.detach(socket)) {
          this.handBack(handle, result.bytes, conn.peer);
        } else {
          socket.destroy();
        }
      } else {
        handle.reading = false;
        const answer = failureAnswer(result);
        if (answer) respond(socket, answer);
        else socket.destroy();
      }
      if (this.owner.draining) this.owner.settled();
    });
    this.waiting.add(read);
    return true;
  }

  /**
   * Where the next request of a proxy connection goes: this worker, another one (through the
   * primary, which also decides while this worker is draining), or nowhere (answer 400).
   */
  private placeOf(head: Buffer, peer: string | undefined): 'here' | 'elsewhere' | 'unroutable' {
    const route = routeKey(head, peer, this.options);
    if (route.key === undefined && route.owner === undefined) return 'unroutable';
    return this.owner.serving && slotFor(route, this.pick, this.live) === this.owner.slot
      ? 'here'
      : 'elsewhere';
  }

  private headOptions(keepHandle: boolean): HeadReadOptions {
    const idle = this.owner.server?.keepAliveTimeout ?? 0;
    return {
      maxBytes: this.options.maxHeaderBytes,
      timeoutMs: idle > 0 ? idle : this.options.headTimeout,
      proxyProtocol: false,
      untilHead: true,
      keepHandle,
    };
  }

  /** Reads the next request of a detached proxy connection and sends it where it belongs. */
  private nextRequest(handle: RawHandle, peer: string | undefined): void {
    const read = readHead(handle, this.headOptions(false), (result) => {
      this.waiting.delete(read);
      if (result.status === 'ok') {
        const place = this.placeOf(result.bytes.subarray(0, result.headLength), peer);
        if (place === 'here') {
          this.owner.adopt(result.handle, result.bytes, peer);
        } else if (place === 'unroutable') {
          respond(result.handle, this.missingHeader);
        } else {
          this.handBack(result.handle, result.bytes, peer);
        }
      } else if (result.status !== 'closed') {
        const answer = failureAnswer(result);
        if (answer) respond(result.connection, answer);
        else drop(result.connection);
      }
      if (this.owner.draining) this.owner.settled();
    });
    this.waiting.add(read);
  }

  /** Gives a proxy connection back to the primary, with the bytes read from it. */
  private handBack(handle: RawHandle, bytes: Buffer, peer: string | undefined): void {
    this.handedBack++;
    const msg = message<RerouteMessage>(MessageType.Reroute, {
      head: bytes.toString('base64'),
      ...(peer ? { peer } : {}),
    });
    // Once written, the descriptor travels in the message: this process's copy can go.
    const what = `worker ${this.owner.slot}: hand-back`;
    if (!sendToPrimary(msg, what, () => handle.close(), handle)) handle.close();
  }
}

/**
 * The answer to a request head that could not be read: 431 or 408, or none (close quietly)
 * for an idle keep-alive connection that expired or a client that left.
 */
function failureAnswer(result: Exclude<HeadReadResult, { status: 'ok' }>): Buffer | undefined {
  if (result.status === 'too-large') return TOO_LARGE;
  if (result.status === 'timeout' && result.received > 0) return TIMEOUT;
  return undefined;
}
