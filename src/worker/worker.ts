import { EventEmitter } from 'node:events';
import type http from 'node:http';
import type https from 'node:https';
import { type AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import { answerScrapes } from '../metrics/worker.js';
import { type RawHandle, socketFromHandle, trackConnections } from '../node-internals.js';
import type { ResolvedStickyOptions } from '../options.js';
import { primaryChannel, sendToPrimary } from '../protocol/ipc.js';
import {
  ADDRESS_ENV,
  type ConnectionMessage,
  type LeavingMessage,
  MessageType,
  message,
  NODELAY_ENV,
  type PingMessage,
  type PongMessage,
  RELAY_DIR_ENV,
  type ReadyMessage,
  type RetainedMessage,
  type RetiringMessage,
  type ServeMessage,
  type ShutdownMessage,
  SLOT_ENV,
  type SlotsMessage,
  type StartFailedMessage,
  SUCCESSOR_ENV,
} from '../protocol/messages.js';
import { closeIdleSparingQueued } from '../relay-internals.js';
import { normaliseAddress } from '../routing/address.js';
import { makeSessionId, sidFromTarget } from '../routing/session-id.js';
import { KeptOpenConnections } from './keep-alive.js';
import { RelayListener, Relays } from './relay.js';

export type AnyServer = http.Server | https.Server;
export type ServerFactory = () => AnyServer | Promise<AnyServer>;

export type WorkerState = 'idle' | 'starting' | 'ready' | 'draining' | 'closed';

/** The messages a worker takes from its primary (the store's are its hub client's). */
const WORKER_MESSAGES = [
  MessageType.Connection,
  MessageType.Slots,
  MessageType.Shutdown,
  MessageType.Ping,
  MessageType.Serve,
  MessageType.Retiring,
] as const;
type WorkerMessage =
  | ConnectionMessage
  | SlotsMessage
  | ShutdownMessage
  | PingMessage
  | ServeMessage
  | RetiringMessage;

export interface WorkerEvents {
  /** The factory's server exists and the primary has been told; connections may arrive. */
  ready: [AnyServer];
  /** The primary asked this worker to stop: close long-lived connections (WebSockets) now. */
  shutdown: [];
  /** Every connection is closed; the worker is about to leave the cluster. */
  close: [];
}

/**
 * The worker side: runs the user's factory once, takes the sockets the primary hands over,
 * binds no port, and drains on the primary's word (in-flight requests finish, idle keep-alive
 * connections close) before disconnecting, which ends the worker process. The later requests of
 * kept-open proxy connections are routed one by one (keep-alive.ts).
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
  /** Proxy mode, session-id affinity: every request of a connection is routed by its own key. */
  private readonly keptOpen: KeptOpenConnections;
  /** Requests relayed to siblings, and the channels siblings relay on to this worker. */
  private readonly relays: Relays | undefined;
  private relayListener: RelayListener | undefined;
  /** While draining: closes connections as they become idle (Node does not say when). */
  private idleTimer: NodeJS.Timeout | undefined;
  /** The primary asked for this drain (it already stopped routing here). */
  private shutdownRequested = false;
  private closing: Promise<void> | undefined;
  /** The primary's listening socket passes TCP_NODELAY on to every connection (Linux). */
  private readonly noDelayInherited: boolean;
  /**
   * Forked by a rolling reload while its slot's previous worker serves: the slot (connections,
   * the relay socket) is this worker's once the primary's Serve message says so.
   */
  private readonly successor = process.env[SUCCESSOR_ENV] === '1';
  /** Set when this worker drains because a reload replaced it (see `drainForReload`). */
  private reloadJitter: number | undefined;
  /** While draining for a reload: the engine.io sessions it still serves (told to the primary). */
  private readonly retained = new Set<string>();
  private retainedPending: string[] = [];

  constructor(
    private readonly options: ResolvedStickyOptions,
    private readonly factory: ServerFactory,
  ) {
    super();
    this.slot = Number(process.env[SLOT_ENV] ?? 0);
    this.noDelayInherited = process.env[NODELAY_ENV] === '1';
    this.genid = () => makeSessionId(this.slot, options.seed);
    this.generateId = this.genid;
    const worker = this;
    if (options.proxy || options.sessionAffinity !== false) {
      const dir = process.env[RELAY_DIR_ENV];
      this.relays = dir ? new Relays(dir, () => worker.server?.keepAliveTimeout ?? 0) : undefined;
    }
    // In IP mode without session ids it follows connections only while a reload runs (an
    // engine.io session of a worker being replaced is sent back there).
    this.keptOpen = new KeptOpenConnections(options, {
      slot: this.slot,
      get serving() {
        return worker.state === 'ready';
      },
      relays: this.relays,
      retains: (sid) => this.retained.has(sid),
    });
    // Listen before anything is announced: IPC messages that arrive with no listener are lost.
    primaryChannel.on(WORKER_MESSAGES, (msg, handle) => this.receive(msg, handle));
    if (options.metrics) answerScrapes(() => this.stats());
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
   * `connections`: sockets this worker serves now (relay channels from siblings included);
   * `handedBack`: proxy connections it gave back to the primary because their next request
   * belonged to another slot and was not relayed (an upgrade); `relayed`: later requests of its
   * proxy connections it relayed to the sibling they belong to.
   */
  stats(): {
    role: 'worker';
    slot: number;
    state: WorkerState;
    connections: number;
    handedBack: number;
    relayed: number;
  } {
    return {
      role: 'worker',
      slot: this.slot,
      state: this.state,
      connections: this.sockets.size,
      handedBack: this.keptOpen?.handedBack ?? 0,
      relayed: this.relays?.relayed ?? 0,
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
        const leaving = message<LeavingMessage>(MessageType.Leaving, {});
        sendToPrimary(leaving, `worker ${this.slot}: leaving message`);
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
      if (this.keptOpen && server instanceof tls.Server) {
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
      this.options.logger.error(`${err.message} (slot ${this.slot}, pid ${process.pid})`);
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
    if (!trackConnections(server)) {
      debug('this Node version has no setupConnectionsTracking: idle connections are not tracked');
    }
    const dir = process.env[RELAY_DIR_ENV];
    if (this.relays && dir && !(server instanceof tls.Server)) {
      // Listening before the primary hears "ready": siblings relay only to ready slots.
      const listener = new RelayListener(dir, this.slot, (socket, rest) =>
        this.adopt(socket, rest, undefined, false),
      );
      if (await listener.listen()) {
        this.relayListener = listener;
        // A reload's successor takes the slot's name once it has the slot (Serve message).
        if (!this.successor) listener.takeSlot();
      } else {
        debug('worker %d: no relay listener; requests for it move their connection', this.slot);
      }
    }
    this.state = 'ready';
    const ready = message<ReadyMessage>(MessageType.Ready, { slot: this.slot });
    sendToPrimary(ready, `worker ${this.slot}: ready message`);
    this.emit('ready', server);
  }

  private receive(msg: WorkerMessage, handle: unknown): void {
    if (msg.t === MessageType.Connection) {
      const paused = this.options.sync !== false && msg.head !== undefined;
      const socket = toSocket(handle, paused);
      if (socket) {
        this.adopt(socket, msg.head ? Buffer.from(msg.head, 'base64') : undefined, msg.peer);
      }
    } else if (msg.t === MessageType.Slots) {
      this.keptOpen.setLive(msg.live);
    } else if (msg.t === MessageType.Ping) {
      // Answered from the event loop: a worker whose loop is blocked does not answer.
      sendToPrimary(message<PongMessage>(MessageType.Pong, { n: msg.n }), 'pong');
    } else if (msg.t === MessageType.Serve) {
      // The full session state came before this (IPC keeps the order): siblings may relay here.
      this.keptOpen.setLive(msg.live);
      this.keptOpen.setRetiring([], [], msg.draining);
      this.relayListener?.takeSlot();
    } else if (msg.t === MessageType.Retiring) {
      this.keptOpen.setRetiring(msg.add, msg.remove, msg.draining);
    } else {
      this.shutdownRequested = true;
      if (msg.reload) this.reloadJitter = msg.jitter ?? 0;
      void this.close();
    }
  }

  /** Gives a handed-off socket to the server exactly as if the server had accepted it. */
  private adopt(
    socket: Socket,
    head: Buffer | undefined,
    peer: string | undefined,
    follow = true,
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
    // A socket that did not come through the server's accept misses its defaults.
    if (!this.noDelayInherited) socket.setNoDelay(true);
    const sync = this.options.sync;
    if (sync && head) {
      // The app's 'connection' listener may emit the event at once: listen before it runs.
      socket.once(sync.event, () => replay(socket, head));
      server.emit('connection', socket);
      if (follow) this.follow(socket, head, peer);
      return;
    }
    // The bytes the primary read to route this connection (proxy mode, PROXY protocol) are
    // replayed after the server took the socket (http and tls servers both read them then).
    server.emit('connection', socket);
    if (follow) this.follow(socket, head, peer);
    replay(socket, head);
  }

  /**
   * Routes the requests of a connection one by one: the later ones of a connection the primary
   * routed by its first request's head, and every one (the first too) of a connection it routed
   * by its address alone (IP mode with session-id affinity).
   */
  private follow(socket: Socket, head: Buffer | undefined, peer: string | undefined): void {
    const keptOpen = this.keptOpen;
    if (socket.destroyed) return;
    const routesRequests = this.options.proxy || this.options.sessionAffinity !== false;
    if (!routesRequests && keptOpen.draining === 0) return;
    let gated = true;
    if (head) gated = keptOpen.follow(socket, peer, true);
    else if (!this.options.proxy && !this.options.proxyProtocol) {
      gated = keptOpen.follow(socket, normaliseAddress(socket.remoteAddress), false);
    }
    if (!gated && !this.closesUngated) {
      // Only where the parser cannot be gated: no listener on every request otherwise.
      this.closesUngated = true;
      this.server?.prependListener('request', (req, res) => keptOpen.onRequest(req, res));
    }
  }

  /** The server's 'request' listener for connections that could not be gated is installed. */
  private closesUngated = false;

  private drain(): void {
    if (this.state === 'draining' || this.state === 'closed') return;
    const wasServing = this.server !== undefined;
    this.state = 'draining';
    const reload = this.reloadJitter !== undefined;
    // Replaced by a reload, the slot's relay socket is already its successor's.
    this.relayListener?.close(!reload);
    if (reload && this.server) this.retainPolling(this.server);
    this.emit('shutdown');
    if (!wasServing) {
      this.finish();
      return;
    }
    if (reload) {
      this.drainForReload(this.reloadJitter ?? 0);
      return;
    }
    // Stops the server's timers and closes idle keep-alive connections (Node >= 19). It was
    // never listening, so no error reaches us; the server emits 'close' for the app.
    const server = this.server;
    closeIdleSparingQueued(this.sockets, () => server?.close());
    // Requests that arrive on open connections from now on close them once answered.
    this.server?.prependListener('request', closeAfterResponse);
    this.closeIdle();
    this.idleTimer = setInterval(() => this.closeIdle(), IDLE_CHECK_MS);
    this.idleTimer.unref();
  }

  /**
   * The drain of a worker a rolling reload replaced (the primary already routes the slot to its
   * successor). Unlike a shutdown it must not make clients fail or all come back at once:
   * - requests in flight finish, and each answer from now on closes its connection
   *   (`Connection: close`: the client's next request opens a connection the successor gets);
   * - a keep-alive connection is closed only once it has been quiet for `QUIET_MS` (closing one
   *   the moment an answer is out races the client's next request on it);
   * - upgraded connections (WebSockets) are ended at random moments over `jitter` ms;
   * - engine.io sessions still polling here stay routed here (retainPolling) until they end
   *   or, `LAST_CALL_MS` before `shutdownTimeout`, the server is closed (engine.io then ends
   *   them, and their clients open new sessions on the successor).
   */
  private drainForReload(jitter: number): void {
    const server = this.server;
    if (!server) return;
    server.prependListener('request', closeAfterResponse);
    for (const socket of this.sockets) {
      if ((socket as Socket & { parser?: unknown }).parser !== null) continue;
      // Node's server let go of this one after an upgrade.
      const timer = setTimeout(() => endUpgraded(socket), Math.random() * jitter);
      timer.unref();
    }
    const lastCall = Math.max(jitter, this.options.shutdownTimeout - LAST_CALL_MS);
    const closer = setTimeout(() => {
      closeIdleSparingQueued(this.sockets, () => server.close());
    }, lastCall);
    closer.unref();
    const quiet = new WeakMap<Socket, { read: number; since: number }>();
    const closeQuiet = () => {
      const now = Date.now();
      for (const socket of this.sockets) {
        const s = socket as Socket & { parser?: unknown; _httpMessage?: unknown };
        if (!s.parser || s._httpMessage) {
          quiet.delete(socket);
          continue;
        }
        const seen = quiet.get(socket);
        if (!seen || seen.read !== socket.bytesRead) {
          quiet.set(socket, { read: socket.bytesRead, since: now });
        } else if (now - seen.since >= QUIET_MS) {
          socket.destroy();
        }
      }
      this.maybeFinish();
    };
    this.idleTimer = setInterval(closeQuiet, IDLE_CHECK_MS);
    this.idleTimer.unref();
    closeQuiet();
  }

  /**
   * Tells the primary which engine.io sessions this worker still serves as it drains for a
   * reload: those with a request in flight now (a polling client always has its next poll
   * waiting here) and any whose request arrives later. The primary routes their requests here.
   */
  private retainPolling(server: AnyServer): void {
    for (const socket of this.sockets) {
      const res = (socket as Socket & { _httpMessage?: { req?: { url?: string } } })._httpMessage;
      this.retainUrl(res?.req?.url);
    }
    server.prependListener('request', (req) => this.retainUrl(req.url));
  }

  private retainUrl(url: string | undefined): void {
    if (!url?.includes('EIO=')) return;
    const sid = sidFromTarget(url);
    if (sid === undefined || this.retained.has(sid)) return;
    this.retained.add(sid);
    if (this.retainedPending.push(sid) > 1) return;
    // One message per turn of the event loop, however many arrive in it.
    setImmediate(() => {
      const sids = this.retainedPending;
      this.retainedPending = [];
      sendToPrimary(message<RetainedMessage>(MessageType.Retained, { sids }), 'retained message');
    });
  }

  private closeIdle(): void {
    const server = this.server;
    closeIdleSparingQueued(this.sockets, () => server?.closeIdleConnections());
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.sockets.size === 0) this.finish();
  }

  private finish(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearInterval(this.idleTimer);
    primaryChannel.off(WORKER_MESSAGES);
    this.emit('close');
    // Leaving the IPC channel ends a cluster worker (Node's cluster module exits it).
    if (process.connected) process.disconnect();
  }
}

/**
 * Replays the bytes the primary (or this worker) read from a connection, then lets the socket
 * flow. Empty replays are skipped: an empty unshift can break a TLS handshake.
 */
function replay(socket: Socket, head: Buffer | undefined): void {
  if (head && head.length > 0) socket.unshift(head);
  socket.resume();
}

/** How often a draining worker closes the connections that have become idle, in ms. */
const IDLE_CHECK_MS = 50;
/** A worker draining for a reload closes a keep-alive connection once it is this quiet, in ms. */
const QUIET_MS = 1000;
/** How long before `shutdownTimeout` a worker draining for a reload closes its server, in ms. */
const LAST_CALL_MS = 1000;

/**
 * Ends an upgraded connection (TCP FIN after what is queued): a WebSocket client sees it close
 * and reconnects. Destroyed if it is still open a while later.
 */
function endUpgraded(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  setTimeout(() => socket.destroy(), END_GRACE_MS).unref();
}
const END_GRACE_MS = 2000;

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
  return socketFromHandle(handle as RawHandle, paused);
}
