import { EventEmitter } from 'node:events';
import type http from 'node:http';
import type https from 'node:https';
import { type AddressInfo, Socket, type SocketConstructorOpts } from 'node:net';
import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import type { ResolvedStickyOptions } from '../options.js';
import {
  ADDRESS_ENV,
  type LeavingMessage,
  MessageType,
  message,
  parseMessage,
  type ReadyMessage,
  SLOT_ENV,
  type StartFailedMessage,
} from '../protocol/messages.js';

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

/**
 * The worker side: runs the user's factory once, takes the sockets the primary hands over,
 * binds no port, and drains on the primary's word (in-flight requests finish, idle keep-alive
 * connections close) before disconnecting, which ends the worker process.
 */
export class StickyWorker extends EventEmitter<WorkerEvents> {
  readonly role = 'worker' as const;
  /** This worker's fixed slot, `0 .. num-1`. */
  readonly slot: number;
  private state: WorkerState = 'idle';
  private server: AnyServer | undefined;
  /** Sockets handed over by the primary and not yet closed (raw TCP, under any TLS layer). */
  private readonly sockets = new Set<Socket>();
  /** While draining: closes connections as they become idle (Node does not say when). */
  private idleTimer: NodeJS.Timeout | undefined;
  /** The primary asked for this drain (it already stopped routing here). */
  private shutdownRequested = false;
  private closing: Promise<void> | undefined;
  private readonly onMessage = (raw: unknown, handle: unknown) => this.receive(raw, handle);

  private readonly proxyMode: boolean;

  constructor(
    options: ResolvedStickyOptions,
    private readonly factory: ServerFactory,
  ) {
    super();
    this.proxyMode = options.proxy;
    this.slot = Number(process.env[SLOT_ENV] ?? 0);
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

  stats(): { role: 'worker'; slot: number; state: WorkerState; connections: number } {
    return { role: 'worker', slot: this.slot, state: this.state, connections: this.sockets.size };
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
    if (this.proxyMode) {
      // A proxy's connection may carry other clients' requests next: each goes back through the
      // primary to be routed by its own header.
      server.prependListener('request', closeAfterResponse);
    }
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
      const socket = toSocket(handle);
      if (socket) this.adopt(socket, msg.head);
    } else if (msg.t === MessageType.Shutdown) {
      this.shutdownRequested = true;
      void this.close();
    }
  }

  /** Gives a handed-off socket to the server exactly as if the server had accepted it. */
  private adopt(socket: Socket, head: string | undefined): void {
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
    socket.setNoDelay(true);
    // The bytes the primary read to route this connection (proxy mode, PROXY protocol) are
    // replayed after the server took the socket (http and tls servers both read them then).
    server.emit('connection', socket);
    if (head) socket.unshift(Buffer.from(head, 'base64'));
    socket.resume();
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
    // Requests that arrive on open connections from now on close them once answered (proxy
    // mode does so for every request already).
    if (!this.proxyMode) this.server?.prependListener('request', closeAfterResponse);
    this.closeIdle();
    this.idleTimer = setInterval(() => this.closeIdle(), IDLE_CHECK_MS);
    this.idleTimer.unref();
  }

  private closeIdle(): void {
    this.server?.closeIdleConnections();
    this.maybeFinish();
  }

  private maybeFinish(): void {
    if (this.sockets.size === 0) this.finish();
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

/** The primary sends the raw TCP handle it accepted; wrap it as the server's accept would. */
function toSocket(handle: unknown): Socket | undefined {
  if (typeof handle !== 'object' || handle === null) return undefined;
  if (handle instanceof Socket) return handle;
  if (typeof (handle as { readStart?: unknown }).readStart !== 'function') return undefined;
  return new Socket({ handle, readable: true, writable: true } as SocketConstructorOpts);
}
