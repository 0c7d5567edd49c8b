import type http from 'node:http';
import type https from 'node:https';
import type { Socket } from 'node:net';
import { sendToPrimary } from '../protocol/ipc.js';
import { MessageType, message, type RetainedMessage } from '../protocol/messages.js';
import { closeIdleSparingQueued } from '../relay-internals.js';
import { sidFromTarget } from '../routing/session-id.js';

/** How often a draining worker closes the connections that have become idle, in ms. */
export const IDLE_CHECK_MS = 50;
/** A worker draining for a reload closes a keep-alive connection once it is this quiet, in ms. */
const QUIET_MS = 1000;
/** How long before `shutdownTimeout` a worker draining for a reload closes its server, in ms. */
const LAST_CALL_MS = 1000;
/** How long an ended upgraded connection may stay before it is destroyed, in ms. */
const END_GRACE_MS = 2000;

type Tracked = Socket & {
  parser?: unknown;
  _httpMessage?: { req?: { url?: string } } | null;
};

/**
 * The drain of a worker a rolling reload replaced (the primary already routes the slot to its
 * successor). Unlike a shutdown it must not make clients fail or all come back at once:
 * - requests in flight finish, and each answer from now on closes its connection
 *   (`Connection: close`: the client's next request opens a connection the successor gets);
 * - a keep-alive connection is closed only once it has been quiet for `QUIET_MS` (closing one
 *   the moment an answer is out races the client's next request on it);
 * - upgraded connections (WebSockets) are ended at random moments over `jitter` ms;
 * - engine.io sessions still polling here stay routed here (`retainPolling`) until they end
 *   or, `LAST_CALL_MS` before `shutdownTimeout`, the server is closed (engine.io then ends
 *   them, and their clients open new sessions on the successor).
 */
export class ReloadDrain {
  /** The engine.io sessions this worker still serves (told to the primary). */
  private readonly retained = new Set<string>();
  private pending: string[] = [];

  /** `sockets`: the worker's connections (raw TCP), kept up to date by the worker. */
  constructor(private readonly sockets: Set<Socket>) {}

  retains(sid: string): boolean {
    return this.retained.has(sid);
  }

  /**
   * Whether engine.io sessions kept here are still in use: one made a request within
   * `QUIET_MS`. Between two polls a polling client holds no connection here (each answer closes
   * its connection while draining), so an empty connection list alone does not mean the drain
   * is over: its next poll is on its way through the primary.
   */
  keepsSessions(now: number): boolean {
    return (
      !this.lastCallMade && this.retained.size > 0 && now - this.lastRetainedRequest < QUIET_MS
    );
  }

  /** The drain's last call closed the server (the kept sessions end). */
  private lastCallMade = false;

  /** When a request of a kept session last arrived (or the sessions were first listed). */
  private lastRetainedRequest = 0;

  /**
   * Starts the drain; returns its timer (every `IDLE_CHECK_MS`, after which `onTick` runs so the
   * worker can see whether anything is left).
   */
  start(
    server: http.Server | https.Server,
    o: { jitter: number; shutdownTimeout: number; onTick: () => void },
  ): NodeJS.Timeout {
    server.prependListener('request', closeAfterResponse);
    for (const socket of this.sockets) {
      // Node's server let go of this one after an upgrade (a TLS server's raw sockets never
      // have a parser property at all).
      if ((socket as Tracked).parser !== null) continue;
      const timer = setTimeout(() => endUpgraded(socket), Math.random() * o.jitter);
      timer.unref();
    }
    const lastCall = Math.max(o.jitter, o.shutdownTimeout - LAST_CALL_MS);
    const closer = setTimeout(() => {
      // engine.io ends the sessions kept here: their clients open new ones on the successor.
      this.lastCallMade = true;
      closeIdleSparingQueued(this.sockets, () => server.close());
    }, lastCall);
    closer.unref();
    const quiet = new WeakMap<Socket, { read: number; since: number }>();
    const closeQuiet = () => {
      const now = Date.now();
      for (const socket of this.sockets) {
        const s = socket as Tracked;
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
      o.onTick();
    };
    const timer = setInterval(closeQuiet, IDLE_CHECK_MS);
    timer.unref();
    closeQuiet();
    return timer;
  }

  /**
   * Tells the primary which engine.io sessions this worker still serves as it drains for a
   * reload: those with a request in flight now (a polling client always has its next poll
   * waiting here) and any whose request arrives later. The primary routes their requests here.
   */
  retainPolling(server: http.Server | https.Server): void {
    if (this.tracking) return;
    this.tracking = true;
    for (const socket of this.sockets) this.retainUrl((socket as Tracked)._httpMessage?.req?.url);
    server.prependListener('request', this.onRequest);
  }

  /** The reload that asked for `retainPolling` will not replace this worker after all. */
  stopRetaining(server: http.Server | https.Server | undefined): void {
    if (!this.tracking) return;
    this.tracking = false;
    server?.off('request', this.onRequest);
    this.retained.clear();
  }

  private tracking = false;
  private readonly onRequest = (req: http.IncomingMessage) => this.retainUrl(req.url);

  private report(): void {
    const sids = this.pending;
    this.pending = [];
    sendToPrimary(message<RetainedMessage>(MessageType.Retained, { sids }), 'retained message');
  }

  private retainUrl(url: string | undefined): void {
    if (!url?.includes('EIO=')) return;
    const sid = sidFromTarget(url);
    if (sid === undefined) return;
    this.lastRetainedRequest = Date.now();
    if (this.retained.has(sid)) return;
    this.retained.add(sid);
    if (this.pending.push(sid) > 1) return;
    // One message per turn of the event loop, however many arrive in it.
    setImmediate(() => this.report());
  }
}

/**
 * Ends an upgraded connection (TCP FIN after what is queued): a WebSocket client sees it close
 * and reconnects. Destroyed if it is still open a while later.
 */
function endUpgraded(socket: Socket): void {
  if (socket.destroyed) return;
  socket.end();
  setTimeout(() => socket.destroy(), END_GRACE_MS).unref();
}

/** A 'request' listener that makes the server close the connection once it has answered. */
export function closeAfterResponse(_req: http.IncomingMessage, res: http.ServerResponse): void {
  if (!res.headersSent) res.setHeader('connection', 'close');
}
