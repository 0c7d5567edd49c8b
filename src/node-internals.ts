import type { Worker } from 'node:cluster';
import type http from 'node:http';
import net from 'node:net';
import { debug } from './debug.js';
import { hasMethods } from './validate.js';

/**
 * Every use of Node.js internals, in one place, each feature-checked here: what a Node upgrade
 * can break is in this file, and each use says what happens when it is missing (a clear error,
 * or the portable path). test/unit/node-internals.test.ts checks each on live objects, and CI
 * runs it on every supported Node version.
 *
 * Why internals at all: the primary routes connections as the raw handles libuv accepted (as
 * Node's own round-robin scheduler does), never building a stream object it would only give
 * away; it must hold each handle until the worker acknowledged it; and a worker must read the
 * next request head of a kept-open proxy connection before its http server does, which means
 * taking the connection from the server's parser and giving it back.
 */

/**
 * A client connection as libuv accepted it (Node's internal TCP handle), before any `net.Socket`
 * exists. The primary routes these directly (and a worker hands them back).
 */
export interface RawHandle {
  getpeername(out: { address?: string }): number;
  close(callback?: () => void): void;
  readStop(): number;
  readStart(): number;
  /** Node's flag: the handle was told to read. */
  reading?: boolean;
}

/** Whether a value (an IPC message's handle, say) is a raw TCP handle. */
export function isRawHandle(value: unknown): value is RawHandle {
  return hasMethods(value, 'getpeername', 'close');
}

// ---- the primary's listening socket -------------------------------------------------------------

/** What the listening socket's handle calls for each accepted connection (libuv's callback). */
export type OnConnection = (status: number, client?: RawHandle) => void;

type ListenHandle = { onconnection?: OnConnection; setNoDelay?: (on: boolean) => number };

function listenHandle(server: net.Server): ListenHandle | undefined {
  return (server as unknown as { _handle?: ListenHandle })._handle;
}

/**
 * Takes over a listening server's accept callback (`_handle.onconnection`): each accepted
 * connection goes to `onConnection` as a raw handle, and the server never sees it. Call once it
 * is listening. Returns false (nothing changed) on a Node without that callback.
 */
export function interceptAccept(server: net.Server, onConnection: OnConnection): boolean {
  const handle = listenHandle(server);
  if (typeof handle?.onconnection !== 'function') return false;
  handle.onconnection = onConnection;
  return true;
}

/**
 * Sets TCP_NODELAY on the listening socket itself. Linux copies it to every accepted socket,
 * which spares a system call per connection in the workers. Returns whether it is inherited.
 */
export function inheritNoDelay(server: net.Server): boolean {
  const handle = listenHandle(server);
  if (process.platform !== 'linux' || typeof handle?.setNoDelay !== 'function') return false;
  return handle.setNoDelay(true) === 0;
}

// ---- handles sent to a worker -----------------------------------------------------------------

type ProcessWithQueue = { _handleQueue?: Array<{ handle?: unknown }> | null };

/**
 * Node passes one handle at a time to a worker and queues the later ones (`_handleQueue`) until
 * the worker answers the one in flight. How many handles will be answered before one sent now:
 * the one in flight (a non-null queue means there is one) and each queued one. `undefined` on a
 * Node without that queue (the caller then counts only its own handles).
 */
export function handlesAhead(worker: Worker): number | undefined {
  const proc = worker.process as unknown as ProcessWithQueue;
  if (!('_handleQueue' in proc)) return undefined;
  const queue = proc._handleQueue;
  if (!queue) return 0;
  let ahead = 1;
  for (const queued of queue) if (queued.handle) ahead++;
  return ahead;
}

/** Forgets the handles Node still queues for a worker that is gone (it would keep them). */
export function dropHandleQueue(worker: Worker): void {
  (worker.process as unknown as ProcessWithQueue)._handleQueue = null;
}

/**
 * Calls `onAnswer` for each answer a worker sends to a handle (`NODE_HANDLE_ACK`: it took it;
 * `NODE_HANDLE_NACK`: it could not), on Node's internal message channel, in send order; every
 * handle gets exactly one, whoever sent it. Returns what stops listening.
 */
export function onHandleAnswers(worker: Worker, onAnswer: (taken: boolean) => void): () => void {
  const listener = (msg: unknown) => {
    const cmd = (msg as { cmd?: unknown } | null)?.cmd;
    if (cmd === 'NODE_HANDLE_ACK') onAnswer(true);
    else if (cmd === 'NODE_HANDLE_NACK') onAnswer(false);
  };
  worker.process.on('internalMessage', listener);
  return () => worker.process.off('internalMessage', listener);
}

// ---- reading straight from a handle -----------------------------------------------------------

/** Where Node's stream handles leave the size and offset of each read for their `onread`. */
export interface ReadState {
  streamBaseState: Int32Array;
  kReadBytesOrError: number;
  kArrayBufferOffset: number;
}

/**
 * The shared read state of `stream_wrap`, or `undefined` where this Node does not expose it (the
 * head reader then reads through a `net.Socket`). `STICKY_MESH_HEAD_READS=socket` in the
 * environment forces the portable path everywhere (to rule the lean one out when diagnosing a
 * problem on a new Node version).
 */
export const readState: ReadState | undefined = (() => {
  if (process.env.STICKY_MESH_HEAD_READS === 'socket') return undefined;
  try {
    const binding = (process as unknown as { binding(name: string): Partial<ReadState> }).binding(
      'stream_wrap',
    );
    const { streamBaseState, kReadBytesOrError, kArrayBufferOffset } = binding;
    if (
      streamBaseState instanceof Int32Array &&
      typeof kReadBytesOrError === 'number' &&
      typeof kArrayBufferOffset === 'number'
    ) {
      return { streamBaseState, kReadBytesOrError, kArrayBufferOffset };
    }
  } catch (err) {
    debug('reading through sockets: %s', (err as Error).message);
  }
  return undefined;
})();

/** A handle's read callback: the chunk's buffer, with its size and offset in {@link readState}. */
export type OnRead = (this: RawHandle, data: ArrayBuffer | undefined) => void;

/** The callback a handle delivers its reads to (a stream's, or the head reader's). */
export function onReadOf(handle: RawHandle): unknown {
  return (handle as { onread?: unknown }).onread;
}

/** Replaces the callback a handle delivers its reads to. */
export function setOnRead(handle: RawHandle, onread: OnRead | unknown): void {
  (handle as { onread?: unknown }).onread = onread;
}

/** The handle's file descriptor, for one non-blocking read before the event loop's; or -1. */
export function handleFd(handle: RawHandle): number {
  const fd = (handle as { fd?: unknown }).fd;
  return typeof fd === 'number' ? fd : -1;
}

// ---- sockets around handles -------------------------------------------------------------------

/**
 * Wraps a raw handle in a `net.Socket`, as a server's accept would. `paused`: do not start
 * reading (the bytes wait until the socket is resumed).
 */
export function socketFromHandle(handle: RawHandle, paused = false): net.Socket {
  return new net.Socket({
    handle,
    readable: true,
    writable: true,
    pauseOnCreate: paused,
  } as net.SocketConstructorOpts);
}

/** The raw handle a socket holds, or `null` once it has none. */
export function handleOf(socket: net.Socket): RawHandle | null {
  return (socket as unknown as { _handle: RawHandle | null })._handle ?? null;
}

/**
 * Takes the handle out of a socket that has stopped reading it: the socket no longer owns it
 * (destroying the socket then leaves the connection open) and the handle is marked not reading.
 */
export function releaseHandle(socket: net.Socket): RawHandle | null {
  const holder = socket as unknown as { _handle: RawHandle | null };
  const handle = holder._handle;
  holder._handle = null;
  if (handle) handle.reading = false;
  return handle;
}

// ---- a worker's http server -------------------------------------------------------------------

type Consumable = RawHandle & { _consumed?: boolean };

/** The HTTP parser a served socket has; it may consume the handle directly (no stream reads). */
interface Parser {
  _consumed?: boolean;
  consume?: (handle: unknown) => void;
  unconsume?: () => void;
}

export function parserOf(socket: net.Socket): Parser | null | undefined {
  return (socket as unknown as { parser?: Parser | null }).parser;
}

/**
 * Takes a served socket's handle back from its http server without closing the connection: the
 * parser stops consuming it and the socket lets go of it (destroy the socket afterwards, which
 * makes the server forget the connection). Returns `undefined`, changing nothing, where that is
 * not possible (bytes already buffered in the stream, or a parser this file does not know).
 */
export function takeFromServer(socket: net.Socket): RawHandle | undefined {
  const handle = handleOf(socket) as Consumable | null;
  const parser = parserOf(socket);
  if (!handle || socket.readableLength > 0) return undefined;
  if (parser?._consumed) {
    if (typeof parser.unconsume !== 'function') return undefined;
    parser.unconsume();
    parser._consumed = false;
  }
  handle._consumed = false;
  releaseHandle(socket);
  return handle;
}

/**
 * Node's http server starts tracking its connections (the list behind `closeIdleConnections()`
 * and the timer that enforces `headersTimeout` / `requestTimeout`) in its own 'listening'
 * handler. A worker's server never listens: the sockets come from the primary. Without this, a
 * slow client would never time out and a drain could not tell idle keep-alive connections from
 * busy ones. Runs just that handler, so no application 'listening' listener fires for a server
 * that has no address of its own. Returns false where this Node has no such handler.
 */
export function trackConnections(server: http.Server): boolean {
  const setup = server.rawListeners('listening').find((l) => l.name === 'setupConnectionsTracking');
  if (!setup) return false;
  setup.call(server);
  return true;
}

// ---- the factory's server ------------------------------------------------------------------------

type ListenState = { _listeningId?: unknown; _handle?: unknown };

/** A new server's `_listeningId` on this Node (`undefined` where it has none). */
const FRESH_LISTENING_ID = (new net.Server() as unknown as ListenState)._listeningId;

/**
 * Whether `listen()` was called on `server`. `listening` says so only once it is bound: in a
 * cluster worker, `listen(port)` asks the primary for the port and returns before it is bound
 * (in the primary, or with a host name to resolve, it may be pending too). Node counts each
 * `listen()` and `close()` in `_listeningId`, so a server whose count moved from a new server's
 * has been told to listen. Without that count, only a bound server is seen.
 */
export function listenCalled(server: net.Server): boolean {
  const state = server as unknown as ListenState;
  if (server.listening || (state._handle !== null && state._handle !== undefined)) return true;
  return typeof FRESH_LISTENING_ID === 'number' && state._listeningId !== FRESH_LISTENING_ID;
}
