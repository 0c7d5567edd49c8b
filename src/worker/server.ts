import type http from 'node:http';
import type https from 'node:https';
import net, { Socket } from 'node:net';
import tls from 'node:tls';
import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import type { ResolvedLogger } from '../logger.js';
import { type RawHandle, socketFromHandle } from '../node-internals.js';
import { sendToPrimary } from '../protocol/ipc.js';
import { MessageType, message, type StartFailedMessage } from '../protocol/messages.js';
import { returnedProblem } from '../server-shape.js';

export type AnyServer = http.Server | https.Server;
/** Runs the factory with its arguments bound. */
export type BoundFactory = () => AnyServer | Promise<AnyServer>;

/**
 * Runs the user's factory; a factory that throws, or returns something else than an http(s)
 * server nobody told to listen, fails with `ERR_STICKY_FACTORY_FAILED`, whose message says what
 * it got and what to write instead. `routesRequests` (proxy mode, session-id affinity): the
 * worker reads request heads itself, so it needs plain HTTP.
 */
export async function makeServer(
  factory: BoundFactory,
  routesRequests: boolean,
): Promise<AnyServer> {
  let server: unknown;
  try {
    server = await factory();
  } catch (cause) {
    throw new StickyMeshError(
      'ERR_STICKY_FACTORY_FAILED',
      `sticky-mesh: the server factory failed: ${String(cause)}`,
      { cause },
    );
  }
  const problem = returnedProblem(server);
  if (problem) {
    // A listen() still on its way to the primary is called off (the port is released).
    if (server instanceof net.Server) server.close();
    throw new StickyMeshError('ERR_STICKY_FACTORY_FAILED', `sticky-mesh: ${problem}`);
  }
  if (routesRequests && server instanceof tls.Server) {
    throw new StickyMeshError(
      'ERR_STICKY_FACTORY_FAILED',
      'sticky-mesh: the server factory returned an https.Server, but proxy mode and ' +
        'sessionAffinity read plain HTTP request heads: return an http.Server and terminate TLS ' +
        'in front, or use proxyProtocol alone',
    );
  }
  return server as AnyServer;
}

/** The most of a stack a failed worker sends the primary. */
const MAX_STACK = 8192;

/**
 * A worker whose start failed: logs it once (one line), tells the primary why (the error the
 * factory threw travels as `thrown`, its stack included, for the primary's `error`), then leaves
 * the cluster. Leaving the IPC channel ends a cluster worker whatever the app left open (Node's
 * cluster module exits it, with status 0: set to 1 as it exits, since it failed). Nothing is
 * printed here: the primary tells the application.
 */
export function failStart(err: Error, slot: number, logger: ResolvedLogger): void {
  logger.error(`${err.message} (slot ${slot}, pid ${process.pid})`);
  const thrown = thrownOf(err.cause);
  const failed = message<StartFailedMessage>(MessageType.StartFailed, {
    reason: err.message,
    ...(thrown ? { thrown } : {}),
  });
  const leave = () => {
    process.once('exit', () => {
      process.exitCode = 1;
    });
    if (process.connected) process.disconnect();
  };
  if (!sendToPrimary(failed, `worker ${slot}: start failed message`, leave)) leave();
}

/** What the factory threw, as a StartFailed message carries it. */
function thrownOf(cause: unknown): StartFailedMessage['thrown'] {
  if (!(cause instanceof Error)) return undefined;
  const code: unknown = (cause as { code?: unknown }).code;
  return {
    name: cause.name,
    message: cause.message,
    ...(typeof code === 'string' ? { code } : {}),
    ...(typeof cause.stack === 'string' ? { stack: cause.stack.slice(0, MAX_STACK) } : {}),
  };
}

/**
 * Replays the bytes the primary (or this worker) read from a connection, then lets the socket
 * flow. Empty replays are skipped: an empty unshift can break a TLS handshake.
 */
export function replay(socket: Socket, head: Buffer | undefined): void {
  if (head && head.length > 0) socket.unshift(head);
  socket.resume();
}

/**
 * The primary sends the raw TCP handle it accepted; wrap it as the server's accept would.
 * `paused`: do not start reading (the request bytes wait for the application's sync event).
 */
export function toSocket(handle: unknown, paused = false): Socket | undefined {
  if (typeof handle !== 'object' || handle === null) return undefined;
  if (handle instanceof Socket) return handle;
  if (typeof (handle as { readStart?: unknown }).readStart !== 'function') return undefined;
  return socketFromHandle(handle as RawHandle, paused);
}

/** Workers leave SIGINT and SIGTERM to the primary, which coordinates the drain. */
export function ignoreSignal(signal: NodeJS.Signals): void {
  debug('worker %d: %s ignored; the primary coordinates shutdown', process.pid, signal);
}
