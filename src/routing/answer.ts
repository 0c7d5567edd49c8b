import net from 'node:net';
import { debug } from '../debug.js';
import { type RawHandle, socketFromHandle } from '../node-internals.js';

/**
 * The short answers sticky-mesh itself gives a client (in the primary, and in a worker between
 * the requests of a proxy connection): a status, a one-line reason, and the connection closes.
 */
function answer(status: string, text: string, extra = ''): Buffer {
  return Buffer.from(
    `HTTP/1.1 ${status}\r\nContent-Type: text/plain\r\nContent-Length: ${text.length + 1}\r\n` +
      `${extra}Connection: close\r\n\r\n${text}\n`,
    'latin1',
  );
}

export const UNAVAILABLE = answer(
  '503 Service Unavailable',
  'no worker available',
  'Retry-After: 1\r\n',
);
/** `503` past `maxHeadReads`: the primary is reading as many request heads as it may. */
export const BUSY = answer(
  '503 Service Unavailable',
  'too many connections being read',
  'Retry-After: 1\r\n',
);
export const TOO_LARGE = answer('431 Request Header Fields Too Large', 'request head too large');
export const TIMEOUT = answer('408 Request Timeout', 'request head not received in time');

/**
 * `400`: the request names no usable client address in `header`. The text names the option that
 * routes such requests by the connection's address instead, for whoever reads it while setting up.
 */
export function missingHeader(header: string): Buffer {
  return answer(
    '400 Bad Request',
    `missing or unusable ${header} header (sticky-mesh: set ignoreMissingHeader to route such ` +
      "requests by the connection's address)",
  );
}

/** Answers and closes. Takes a raw handle or a socket that still holds its handle. */
export function respond(target: RawHandle | net.Socket, response: Buffer): void {
  const socket = target instanceof net.Socket ? target : socketFromHandle(target);
  // Reading (and discarding) what the client sent keeps the close from turning into a reset
  // that could swallow the answer; clients that never finish are cut off after 2 s.
  socket.on('error', (err) => debug('client socket error: %s', err.message));
  socket.resume();
  socket.end(response);
  socket.once('end', () => socket.destroy());
  setTimeout(() => socket.destroy(), 2_000).unref();
}

/** Closes a connection without an answer. */
export function drop(target: RawHandle | net.Socket): void {
  if (target instanceof net.Socket) target.destroy();
  else target.close();
}
