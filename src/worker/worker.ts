import { EventEmitter } from 'node:events';
import type http from 'node:http';
import type https from 'node:https';
import { type AddressInfo, Socket, type SocketConstructorOpts } from 'node:net';
import tls from 'node:tls';
import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import { type Pick, rendezvous } from '../hash.js';
import type { ResolvedStickyOptions } from '../options.js';
import {
  ADDRESS_ENV,
  type LeavingMessage,
  MessageType,
  message,
  NODELAY_ENV,
  parseMessage,
  type ReadyMessage,
  type RerouteMessage,
  SLOT_ENV,
  type StartFailedMessage,
} from '../protocol/messages.js';
import { drop, missingHeader, respond, TIMEOUT, TOO_LARGE } from '../routing/answer.js';
import type { RawHandle } from '../routing/handle.js';
import {
  canReadHandles,
  type HeadRead,
  type HeadReadOptions,
  type HeadReadResult,
  readHead,
} from '../routing/head-reader.js';
import { routeKey, slotFor } from '../routing/key.js';
import { makeSessionId } from '../session-id.js';

export type AnyServer = http.Server | https.Server;
export type ServerFactory = () => AnyServer | Promise<AnyServer>;

export type WorkerState = 'idle' | 'starting' | 'ready' | 'draining' | 'closed';

export interface WorkerEvents {
  /** The factory's server exists and the primary has been told; connections may arrive. */
  ready: [AnyServer];
  /** The primary asked this worker to stop: close long-lived connections (WebSockets) now. */
  shutdown: [];
  /** Every connection is closed; the worker is about to leave the cluster. */
  close: [];
}

/** Per-request routing state of one proxy connection (its socket wrapper is `socket`). */
interface ProxyConnection {
  handle: RawHandle;
  /** The connection's address key: the fallback key of its requests. */
  peer: string | undefined;
  /** Requests received on this socket and not yet answered. */
  inflight: number;
  /** Reading was stopped after the last answer, to see the next request before the server. */
  paused: boolean;
}

/** What Node's http server keeps on a socket it serves (internal; checked before use). */
interface ServedSocket {
  _handle: (RawHandle & { _consumed?: boolean; onread?: unknown }) | null;
  parser?: {
    _consumed?: boolean;
    consume?: (handle: unknown) => void;
    unconsume?: () => void;
  } | null;
}

/**
 * The worker side: runs the user's factory once, takes the sockets the primary hands over,
 * binds no port, and drains on the primary's word (in-flight requests finish, idle keep-alive
 * connections close) before disconnecting, which ends the worker process.
 *
 * Proxy connections (proxy mode, session-id affinity) carry requests of many clients. Each
 * request is checked before the server reads it: after an answer, the worker stops reading,
 * takes the connection back from the server, reads the next request head itself and either
 * gives the connection to the server again (the request belongs here) or hands it, with the
 * bytes read, back to the primary, which routes it like a new connection. No byte is lost and
 * the connection stays open.
 */
export class StickyWorker extends EventEmitter<WorkerEvents> {
  readonly role = 'worker' as const;
  /** This worker's fixed slot, `0 .. num-1`. */
  readonly slot: number;
  /**
   * An express-session `genid`: a new session id that names this worker's slot, so that with
   * `sessionAffinity` every later request of the session is routed here (by any balancer with
   * the same `seed` and `num`).
   */
  readonly genid: (req?: unknown) => string;
  /** The same, as engine.io's `generateId` (`io.engine.generateId = app.generateId`). */
  readonly generateId: (req?: unknown) => string;
  private state: WorkerState = 'idle';
  private server: AnyServer | undefined;
  /** Sockets handed over by the primary and not yet closed (raw TCP, under any TLS layer). */
  private readonly sockets = new Set<Socket>();
  /** Proxy connections between two requests, whose next head this worker is reading. */
  private readonly waiting = new Set<HeadRead>();
  private readonly proxied = new WeakMap<Socket, ProxyConnection>();
  /** While draining: closes connections as they become idle (Node does not say when). */
  private idleTimer: NodeJS.Timeout | undefined;
  /** The primary asked for this drain (it already stopped routing here). */
  private shutdownRequested = false;
  private closing: Promise<void> | undefined;
  private readonly onMessage = (raw: unknown, handle: unknown) => this.receive(raw, handle);
  /** Every request of a connection is routed by its own key (heads are read as HTTP). */
  private readonly perRequest: boolean;
  private readonly pick: Pick;
  /** Slots with a ready worker, as the primary last said. */
  private live: number[];
  private readonly missingHeader: Buffer;
  private handedBack = 0;
  /** The primary's listening socket passes TCP_NODELAY on to every connection (Linux). */
  private readonly noDelayInherited: boolean;

  constructor(
    private readonly options: ResolvedStickyOptions,
    private readonly factory: ServerFactory,
  ) {
    super();
    this.perRequest = options.proxy || options.sessionAffinity !== false;
    this.slot = Number(process.env[SLOT_ENV] ?? 0);
    this.noDelayInherited = process.env[NODELAY_ENV] === '1';
    this.pick = rendezvous(options.seed, options.num);
    this.live = Array.from({ length: options.num }, (_, i) => i);
    this.missingHeader = missingHeader(options.header);
    this.genid = () => makeSessionId(this.slot, options.seed);
    this.generateId = this.genid;
    // Listen before anything is announced: IPC messages that arrive with no listener are lost.
    process.on('message', this.onMessage);
    if (options.handleSignals) {
      // A terminal's Ctrl-C reaches every process of the group; the primary coordinates the drain.
      process.on('SIGINT', ignoreSignal);
      process.on('SIGTERM', ignoreSignal);
    }
  }

  /** Creates the server and reports ready. The port is the primary's; it is not bound here. */
  listen(_port?: number | string, host?: string | (() => void), callback?: () => void): this {
    if (this.state !== 'idle') {
      throw new StickyMeshError(
        'ERR_STICKY_ALREADY_LISTENING',
        'sticky-mesh: listen() was already called',
      );
    }
    const cb = typeof host === 'function' ? host : callback;
    if (cb) this.once('ready', () => cb());
    this.state = 'starting';
    void this.start();
    return this;
  }

  /** The address the primary listens on (the socket itself lives in the primary). */
  address(): AddressInfo | null {
    try {
      const parsed: unknown = JSON.parse(process.env[ADDRESS_ENV] ?? 'null');
      return typeof parsed === 'object' && parsed !== null && 'port' in parsed
        ? (parsed as AddressInfo)
        : null;
    } catch {
      return null;
    }
  }

  /**
   * `connections`: sockets this worker serves now; `handedBack`: proxy connections it gave back
   * to the primary because their next request belonged to another slot.
   */
  stats(): {
    role: 'worker';
    slot: number;
    state: WorkerState;
    connections: number;
    handedBack: number;
  } {
    return {
      role: 'worker',
      slot: this.slot,
      state: this.state,
      connections: this.sockets.size + this.waiting.size,
      handedBack: this.handedBack,
    };
  }

  /**
   * Drains this worker and leaves the cluster. Called by the app, it first tells the primary,
   * which stops routing here (the slot's clients move to their next choice) and forks a
   * replacement once this process has exited. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= new Promise<void>((resolve) => {
      this.once('close', resolve);
      if (!this.shutdownRequested && this.state === 'ready') {
        process.send?.(message<LeavingMessage>(MessageType.Leaving, {}), (err: Error | null) => {
          if (err) debug('worker %d: leaving message failed: %s', this.slot, err.message);
        });
      }
      this.drain();
    });
    return this.closing;
  }

  private async start(): Promise<void> {
    let server: AnyServer;
    try {
      server = await this.factory();
      if (!server || typeof server.emit !== 'function' || typeof server.listen !== 'function') {
        throw new TypeError('the factory must return an http.Server or https.Server');
      }
      if (this.perRequest && server instanceof tls.Server) {
        throw new TypeError(
          'proxy mode and sessionAffinity read plain HTTP request heads in the primary, so the ' +
            'factory must return an http.Server: terminate TLS in front, or use proxyProtocol alone',
        );
      }
    } catch (cause) {
      const err = new StickyMeshError(
        'ERR_STICKY_FACTORY_FAILED',
        `sticky-mesh: the server factory failed: ${String(cause)}`,
        { cause },
      );
      const failed = message<StartFailedMessage>(MessageType.StartFailed, { reason: err.message });
      // Report, then fail the process the way an error thrown at startup would.
      process.send?.(failed, () =>
        process.nextTick(() => {
          throw err;
        }),
      );
      return;
    }
    this.server = server;
    trackConnections(server);
    if (this.perRequest) server.prependListener('request', (req, res) => this.onRequest(req, res));
    this.state = 'ready';
    process.send?.(
      message<ReadyMessage>(MessageType.Ready, { slot: this.slot }),
      (err: Error | null) => {
        if (err) debug('worker %d: ready message failed: %s', this.slot, err.message);
      },
    );
    this.emit('ready', server);
  }

  private receive(raw: unknown, handle: unknown): void {
    const msg = parseMessage(raw);
    if (!msg) return;
    if (msg.t === MessageType.Connection) {
      const socket = toSocket(handle, this.options.sync !== false && msg.head !== undefined);
      if (socket)
        this.adopt(socket, msg.head ? Buffer.from(msg.head, 'base64') : undefined, msg.peer);
    } else if (msg.t === MessageType.Slots) {
      this.live = msg.live;
    } else if (msg.t === MessageType.Shutdown) {
      this.shutdownRequested = true;
      void this.close();
    }
  }

  /** Gives a handed-off socket to the server exactly as if the server had accepted it. */
  private adopt(
    socket: Socket,
    head: Buffer | undefined,
    peer: string | undefined,
    again = false,
  ): void {
    const server = this.server;
    if (!server) {
      socket.destroy();
      return;
    }
    this.sockets.add(socket);
    socket.once('close', () => {
      this.sockets.delete(socket);
      if (this.state === 'draining') this.maybeFinish();
    });
    const handle = (socket as unknown as ServedSocket)._handle;
    if (this.perRequest && head && handle) {
      this.proxied.set(socket, { handle, peer, inflight: 0, paused: false });
    }
    // A socket that did not come through the server's accept misses its defaults (the option
    // stays set on the connection, so once is enough).
    if (!again && !this.noDelayInherited) socket.setNoDelay(true);
    const sync = this.options.sync;
    if (sync && head) {
      // The app's 'connection' listener may emit the event at once: listen before it runs.
      socket.once(sync.event, () => replay(socket, head));
      server.emit('connection', socket);
      return;
    }
    // The bytes the primary read to route this connection (proxy mode, PROXY protocol) are
    // replayed after the server took the socket (http and tls servers both read them then).
    server.emit('connection', socket);
    replay(socket, head);
  }

  /** Proxy connections: follows each request, to read the next one before the server does. */
  private onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    const conn = this.proxied.get(req.socket);
    if (!conn) return;
    conn.inflight++;
    res.once('prefinish', () => {
      // The answer is complete and written; a proxy sends the connection's next request only
      // after reading it. Stop reading now, so that request stays unread until it is routed.
      // (A handler that answers at once runs before the parser has marked a bodiless request
      // complete, so completeness is checked on 'finish', which comes after.)
      if (conn.inflight === 1 && !this.closingAfterResponse(res)) {
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

  private closingAfterResponse(res: http.ServerResponse): boolean {
    return (
      this.state === 'draining' ||
      (res as unknown as { _last?: boolean })._last === true ||
      res.shouldKeepAlive === false
    );
  }

  /**
   * Takes a socket's handle back from the http server without closing it: the parser stops
   * consuming it, and the socket object (now without a handle) is destroyed, which makes the
   * server forget the connection. Returns false (and changes nothing) if that is not possible.
   */
  private detach(socket: Socket): boolean {
    const served = socket as unknown as ServedSocket;
    const handle = served._handle;
    const parser = served.parser;
    if (!handle || socket.readableLength > 0) return false;
    if (parser?._consumed) {
      if (typeof parser.unconsume !== 'function') return false;
      parser.unconsume();
      parser._consumed = false;
    }
    handle._consumed = false;
    served._handle = null;
    handle.reading = false;
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
    const served = socket as unknown as ServedSocket;
    const handle = served._handle;
    const parser = served.parser;
    if (
      !canReadHandles() ||
      !handle ||
      !parser?._consumed ||
      typeof parser.consume !== 'function' ||
      typeof parser.unconsume !== 'function' ||
      socket.readableLength > 0
    ) {
      return false;
    }
    parser.unconsume();
    parser._consumed = false;
    handle._consumed = false;
    const onread = handle.onread;
    // The reader's own timeout (the server's keepAliveTimeout) applies while it waits.
    socket.setTimeout(0);
    const onClose = () => {
      // The server closed it meanwhile (closeIdleConnections in a drain, an error).
      read.abandon();
      this.waiting.delete(read);
      if (this.state === 'draining') this.maybeFinish();
    };
    socket.once('close', onClose);
    const read = readHead(handle, this.nextHeadOptions(true), (result) => {
      this.waiting.delete(read);
      socket.off('close', onClose);
      handle.onread = onread;
      if (result.status === 'ok') {
        const place = this.placeOf(result.bytes.subarray(0, result.headLength), conn.peer);
        if (place === 'here') {
          // Give the request to the server on the same connection, parser consuming again.
          parser.consume?.(handle);
          parser._consumed = true;
          handle._consumed = true;
          handle.reading = true;
          handle.readStart();
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
      if (this.state === 'draining') this.maybeFinish();
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
    return this.state === 'ready' && slotFor(route, this.pick, this.live) === this.slot
      ? 'here'
      : 'elsewhere';
  }

  private nextHeadOptions(keepHandle: boolean): HeadReadOptions {
    const idle = this.server?.keepAliveTimeout ?? 0;
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
    const read = readHead(handle, this.nextHeadOptions(false), (result) => {
      this.waiting.delete(read);
      if (result.status === 'ok') {
        const place = this.placeOf(result.bytes.subarray(0, result.headLength), peer);
        if (place === 'here') {
          const socket = toSocket(result.handle, this.options.sync !== false);
          if (socket) this.adopt(socket, result.bytes, peer, true);
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
      if (this.state === 'draining') this.maybeFinish();
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
    if (!process.connected || !process.send) {
      handle.close();
      return;
    }
    // Once written, the descriptor travels in the message: this process's copy can go.
    process.send(msg, handle as never, {}, (err: Error | null) => {
      if (err) debug('worker %d: hand-back failed: %s', this.slot, err.message);
      handle.close();
    });
  }

  private drain(): void {
    if (this.state === 'draining' || this.state === 'closed') return;
    const wasServing = this.server !== undefined;
    this.state = 'draining';
    this.emit('shutdown');
    if (!wasServing) {
      this.finish();
      return;
    }
    // Stops the server's timers and closes idle keep-alive connections (Node >= 19). It was
    // never listening, so no error reaches us; the server emits 'close' for the app.
    this.server?.close();
    // Requests that arrive on open connections from now on close them once answered.
    this.server?.prependListener('request', closeAfterResponse);
    this.closeIdle();
    this.idleTimer = setInterval(() => this.closeIdle(), IDLE_CHECK_MS);
    this.idleTimer.unref();
  }

  private closeIdle(): void {
    this.server?.closeIdleConnections();
    for (const read of this.waiting) if (read.closeIfIdle()) this.waiting.delete(read);
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.sockets.size === 0 && this.waiting.size === 0) this.finish();
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearInterval(this.idleTimer);
    process.off('message', this.onMessage);
    this.emit('close');
    // Leaving the IPC channel ends a cluster worker (Node's cluster module exits it).
    if (process.connected) process.disconnect();
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

/**
 * Replays the bytes the primary (or this worker) read from a connection, then lets the socket
 * flow. Empty replays are skipped: an empty unshift can break a TLS handshake.
 */
function replay(socket: Socket, head: Buffer | undefined): void {
  if (head && head.length > 0) socket.unshift(head);
  socket.resume();
}

/**
 * Node's http server starts tracking its connections (the list behind `closeIdleConnections()`
 * and the timer that enforces `headersTimeout` / `requestTimeout`) in its own 'listening'
 * handler. A worker's server never listens: the sockets come from the primary. Without this, a
 * slow client would never time out and a drain could not tell idle keep-alive connections from
 * busy ones. Run just that handler, so no application 'listening' listener fires for a server
 * that has no address of its own.
 */
function trackConnections(server: AnyServer): void {
  const setup = server.rawListeners('listening').find((l) => l.name === 'setupConnectionsTracking');
  if (setup) setup.call(server);
  else debug('this Node version has no setupConnectionsTracking: idle connections are not tracked');
}

/** How often a draining worker closes the connections that have become idle, in ms. */
const IDLE_CHECK_MS = 50;

/** A 'request' listener that makes the server close the connection once it has answered. */
function closeAfterResponse(_req: http.IncomingMessage, res: http.ServerResponse): void {
  if (!res.headersSent) res.setHeader('connection', 'close');
}

function ignoreSignal(signal: NodeJS.Signals): void {
  debug('worker %d: %s ignored; the primary coordinates shutdown', process.pid, signal);
}

/**
 * The primary sends the raw TCP handle it accepted; wrap it as the server's accept would.
 * `paused`: do not start reading (the request bytes wait for the application's sync event).
 */
function toSocket(handle: unknown, paused = false): Socket | undefined {
  if (typeof handle !== 'object' || handle === null) return undefined;
  if (handle instanceof Socket) return handle;
  if (typeof (handle as { readStart?: unknown }).readStart !== 'function') return undefined;
  return new Socket({
    handle,
    readable: true,
    writable: true,
    pauseOnCreate: paused,
  } as SocketConstructorOpts);
}
