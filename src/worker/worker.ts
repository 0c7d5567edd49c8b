import { EventEmitter } from 'node:events';
import type { AddressInfo, Socket } from 'node:net';
import tls from 'node:tls';
import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import { answerScrapes } from '../metrics/worker.js';
import { trackConnections } from '../node-internals.js';
import type { ResolvedStickyOptions } from '../options.js';
import { primaryChannel, sendToPrimary } from '../protocol/ipc.js';
import {
  type LeavingMessage,
  type Message,
  MessageType,
  message,
  NODELAY_ENV,
  type PongMessage,
  RELAY_DIR_ENV,
  type ReadyMessage,
  SLOT_ENV,
  SUCCESSOR_ENV,
} from '../protocol/messages.js';
import { closedBeforeReady, Readiness } from '../readiness.js';
import { closeIdleSparingQueued } from '../relay-internals.js';
import { afterStoreFence } from '../replication/transports/ipc/client.js';
import { normaliseAddress } from '../routing/address.js';
import { makeSessionId } from '../routing/session-id.js';
import { KeptOpenConnections } from './keep-alive.js';
import { primaryAddress, type WorkerEvents, type WorkerState, type WorkerStats } from './public.js';
import { RelayListener, Relays } from './relay.js';
import { closeAfterResponse, IDLE_CHECK_MS, ReloadDrain } from './reload-drain.js';
import { type AnyServer, failStart, ignoreSignal, makeServer, replay, toSocket } from './server.js';

export type { WorkerEvents, WorkerState, WorkerStats } from './public.js';
export type { AnyServer } from './server.js';

/**
 * Builds the worker's server: runs once in each worker, given that worker's controller (its
 * `slot`, `genid`, `generateId`, its `shutdown` event). May return a promise of the server.
 */
export type ServerFactory = (worker: StickyWorker) => AnyServer | Promise<AnyServer>;

/** The messages a worker takes from its primary (the store's are its hub client's). */
const WORKER_MESSAGES = [
  MessageType.Connection,
  MessageType.Slots,
  MessageType.Shutdown,
  MessageType.Ping,
  MessageType.Serve,
  MessageType.Retiring,
  MessageType.Retain,
] as const;
type WorkerMessage = Extract<Message, { t: (typeof WORKER_MESSAGES)[number] }>;

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
  private readonly readiness = new Readiness();
  /** The primary's listening socket passes TCP_NODELAY on to every connection (Linux). */
  private readonly noDelayInherited: boolean;
  /**
   * Forked by a rolling reload while its slot's previous worker serves: the slot (connections,
   * the relay socket) is this worker's once the primary's Serve message says so.
   */
  private readonly successor = process.env[SUCCESSOR_ENV] === '1';
  /** Set when this worker drains because a reload replaced it (see `drainForReload`). */
  private reloadJitter: number | undefined;
  /** The drain a reload asks for (reload-drain.ts): its engine.io sessions are kept here. */
  private readonly reloadDrain = new ReloadDrain(this.sockets);

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
      retains: (sid) => this.reloadDrain.retains(sid),
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

  /**
   * Runs the factory and reports ready (`callback`, or `await ready()`). The port is the
   * primary's; it is not bound here.
   */
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
    return primaryAddress();
  }

  /**
   * Resolves with the primary's address once this worker's server is serving (the `ready`
   * event; at once if that was). Rejects with the factory's `ERR_STICKY_FACTORY_FAILED` (the
   * process then ends with it), or `ERR_STICKY_CLOSED` if the worker drains first.
   */
  ready(): Promise<AddressInfo> {
    return this.readiness.wait();
  }

  stats(): WorkerStats {
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
    const routesRequests = this.options.proxy || this.options.sessionAffinity !== false;
    let server: AnyServer;
    try {
      server = await makeServer(() => this.factory(this), routesRequests);
    } catch (err) {
      // A ready() that waits sees the error (its handlers run as promise jobs, before the
      // report's callback ends the process).
      this.readiness.reject(err as Error);
      failStart(err as Error, this.slot, this.options.logger);
      return;
    }
    this.server = server;
    if (!trackConnections(server)) {
      debug('this Node version has no setupConnectionsTracking: idle connections are not tracked');
    }
    const dir = process.env[RELAY_DIR_ENV];
    if (this.relays && dir && !(server instanceof tls.Server)) {
      // Listening before "ready" (siblings relay only to ready slots); served with the state.
      const listener = new RelayListener(dir, this.slot, (socket, rest) =>
        afterStoreFence(undefined, () => this.adopt(socket, rest, undefined, false)),
      );
      if (await listener.listen()) {
        this.relayListener = listener;
        // A reload's successor takes the slot's name once it has the slot (Serve message).
        if (!this.successor) listener.takeSlot();
      } else {
        debug('worker %d: no relay listener; requests for it move their connection', this.slot);
      }
    }
    // Ready once the store holds the full state (bounded): its clients go elsewhere meanwhile.
    await new Promise<void>((resolve) => afterStoreFence(0, resolve));
    this.state = 'ready';
    const ready = message<ReadyMessage>(MessageType.Ready, { slot: this.slot });
    sendToPrimary(ready, `worker ${this.slot}: ready message`);
    const address = this.address();
    if (address) this.readiness.resolve(address);
    this.emit('ready', server);
  }

  private receive(msg: WorkerMessage, handle: unknown): void {
    if (msg.t === MessageType.Connection) {
      const paused = this.options.sync !== false && msg.head !== undefined;
      const socket = toSocket(handle, paused);
      if (socket) {
        const head = msg.head ? Buffer.from(msg.head, 'base64') : undefined;
        // Served once the store has every write acknowledged before the handoff (see fence.ts).
        afterStoreFence(msg.fence, () => this.adopt(socket, head, msg.peer));
      }
    } else if (msg.t === MessageType.Slots) {
      this.keptOpen.setLive(msg.live);
    } else if (msg.t === MessageType.Ping) {
      // Answered from the event loop: a worker whose loop is blocked does not answer.
      sendToPrimary(message<PongMessage>(MessageType.Pong, { n: msg.n }), 'pong');
    } else if (msg.t === MessageType.Serve) {
      // The full session state came before this (IPC keeps the order): siblings may relay here.
      this.keptOpen.setLive(msg.live);
      this.keptOpen.setRetiring(msg.retained, [], msg.draining);
      // Siblings relay requests straight to it once it has the name: only with the full state.
      afterStoreFence(msg.fence, () => this.relayListener?.takeSlot());
    } else if (msg.t === MessageType.Retain) {
      // A reload is about to replace this worker: its engine.io sessions stay here.
      if (msg.stop) this.reloadDrain.stopRetaining(this.server);
      else if (this.server) this.reloadDrain.retainPolling(this.server);
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
    this.readiness.reject(closedBeforeReady('worker'));
    // Replaced by a reload, the slot's relay socket is already its successor's.
    this.relayListener?.close(!reload);
    if (reload && this.server) this.reloadDrain.retainPolling(this.server);
    this.emit('shutdown');
    if (!wasServing) {
      this.finish();
      return;
    }
    if (reload) {
      this.idleTimer = this.reloadDrain.start(this.server as AnyServer, {
        jitter: this.reloadJitter ?? 0,
        shutdownTimeout: this.options.shutdownTimeout,
        onTick: () => this.maybeFinish(),
      });
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

  private closeIdle(): void {
    const server = this.server;
    closeIdleSparingQueued(this.sockets, () => server?.closeIdleConnections());
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.sockets.size === 0 && !this.reloadDrain.keepsSessions(Date.now())) this.finish();
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
