import type http from 'node:http';
import type https from 'node:https';
import { Socket } from 'node:net';
import tls from 'node:tls';
import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import { type RawHandle, socketFromHandle } from '../node-internals.js';

export type AnyServer = http.Server | https.Server;
export type ServerFactory = () => AnyServer | Promise<AnyServer>;

/**
 * Runs the user's factory; a factory that throws, or returns something else than an http(s)
 * server, fails with `ERR_STICKY_FACTORY_FAILED`. `routesRequests` (proxy mode, session-id
 * affinity): the worker reads request heads itself, so it needs plain HTTP.
 */
export async function makeServer(
  factory: ServerFactory,
  routesRequests: boolean,
): Promise<AnyServer> {
  try {
    const server = await factory();
    if (!server || typeof server.emit !== 'function' || typeof server.listen !== 'function') {
      throw new TypeError('the factory must return an http.Server or https.Server');
    }
    if (routesRequests && server instanceof tls.Server) {
      throw new TypeError(
        'proxy mode and sessionAffinity read plain HTTP request heads in the primary, so the ' +
          'factory must return an http.Server: terminate TLS in front, or use proxyProtocol alone',
      );
    }
    return server;
  } catch (cause) {
    throw new StickyMeshError(
      'ERR_STICKY_FACTORY_FAILED',
      `sticky-mesh: the server factory failed: ${String(cause)}`,
      { cause },
    );
  }
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
