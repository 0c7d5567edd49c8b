import net from 'node:net';
import type { RawHandle } from './handle.js';
import { findHeadEnd } from './head.js';
import { parseProxyHeader } from './proxy-protocol.js';

/** How a proxy-mode connection's first request head was read in the primary. */
export type HeadReadResult =
  /**
   * The head is complete. `bytes` holds every byte read from the client after any PROXY header
   * (the head and whatever followed it), to be replayed in the worker; `headLength` is the
   * head's length within it; `source` is the PROXY header's client address, if one was read.
   */
  | {
      status: 'ok';
      handle: RawHandle;
      bytes: Buffer;
      headLength: number;
      source: string | undefined;
    }
  /** More than `maxBytes` arrived without a complete head (answer 431). */
  | { status: 'too-large'; socket: net.Socket }
  /**
   * No complete head within `timeoutMs` (answer 408). `received`: bytes that did arrive (none
   * means an idle keep-alive connection, which is closed without an answer).
   */
  | { status: 'timeout'; socket: net.Socket; received: number }
  /** A PROXY header was required and missing or malformed (close). */
  | { status: 'bad-proxy'; socket: net.Socket; reason: string }
  /** The client closed or reset before its head was complete. */
  | { status: 'closed' };

export interface HeadReadOptions {
  /** Most bytes read while looking for the end of the head (PROXY header included). */
  maxBytes: number;
  /** Time allowed for the whole head, in ms. */
  timeoutMs: number;
  /** Expect a PROXY protocol (v1 or v2) header before the request. */
  proxyProtocol: boolean;
  /**
   * Also read the HTTP request head after any PROXY header. `false` stops right after the PROXY
   * header (what follows may be a TLS handshake for the workers to terminate).
   */
  untilHead: boolean;
}

/** What `readHead` returns: a way to give up on a connection that has sent nothing yet. */
export interface HeadRead {
  /**
   * If no byte has arrived, stops reading, closes the connection and reports `closed`; returns
   * whether it did. A connection that has started a request is left to finish it.
   */
  closeIfIdle(): boolean;
}

/**
 * Reads the first request head of an accepted connection without losing a byte, then gives
 * the raw handle back (detached, not reading) with everything read so far.
 *
 * The recipe matters. `socket.pause()` does not stop the handle from reading, and a 'data'
 * listener lets bytes flow past; so the socket is read in paused mode ('readable' + read()),
 * and the moment the head is complete the handle itself stops reading (`readStop()`, leaving
 * Node's `reading` flag set, so that draining the stream buffer with read() cannot start it
 * again). What read() still returns is appended, and the handle is taken back from the socket
 * object before anything else can touch it.
 */
export function readHead(
  handle: RawHandle,
  options: HeadReadOptions,
  done: (result: HeadReadResult) => void,
): HeadRead {
  const socket = new net.Socket({
    handle,
    readable: true,
    writable: true,
  } as net.SocketConstructorOpts);
  const chunks: Buffer[] = [];
  let total = 0;
  let proxyLength = options.proxyProtocol ? -1 : 0;
  let source: string | undefined;
  let finished = false;

  const finish = (result: HeadReadResult) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    socket.removeListener('readable', onReadable);
    socket.removeListener('end', onGone);
    socket.removeListener('close', onGone);
    done(result);
  };
  const onGone = () => finish({ status: 'closed' });
  const timer = setTimeout(
    () => finish({ status: 'timeout', socket, received: total }),
    options.timeoutMs,
  );
  timer.unref();

  const onReadable = () => {
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the stream idiom
    while ((chunk = socket.read() as Buffer | null) !== null) {
      chunks.push(chunk);
      total += chunk.length;
    }
    if (finished) return;
    const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks);
    if (proxyLength === -1) {
      const proxy = parseProxyHeader(all);
      if (proxy.status === 'invalid') {
        finish({ status: 'bad-proxy', socket, reason: proxy.reason });
        return;
      }
      if (proxy.status === 'ok') {
        proxyLength = proxy.length;
        source = proxy.source;
      }
    }
    if (proxyLength >= 0 && !options.untilHead) {
      complete(all, 0);
      return;
    }
    if (proxyLength >= 0) {
      const end = findHeadEnd(all.subarray(proxyLength));
      if (end !== -1 && proxyLength + end <= options.maxBytes) {
        complete(all, end);
        return;
      }
    }
    // No head end within the first maxBytes: too large, however much more has arrived.
    if (total > options.maxBytes) finish({ status: 'too-large', socket });
  };

  const complete = (all: Buffer, headLength: number) => {
    const raw = (socket as unknown as { _handle: RawHandle | null })._handle;
    if (!raw) {
      finish({ status: 'closed' });
      return;
    }
    raw.readStop();
    // Whatever the stream still buffers was read from the client too.
    const rest: Buffer[] = [];
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the stream idiom
    while ((chunk = socket.read() as Buffer | null) !== null) rest.push(chunk);
    (socket as unknown as { _handle: RawHandle | null })._handle = null;
    raw.reading = false;
    const bytes = Buffer.concat([all.subarray(proxyLength), ...rest]);
    finish({ status: 'ok', handle: raw, bytes, headLength, source });
  };

  socket.on('error', () => {});
  socket.on('readable', onReadable);
  socket.once('end', onGone);
  socket.once('close', onGone);
  return {
    closeIfIdle() {
      if (finished || total > 0) return false;
      finish({ status: 'closed' });
      socket.destroy();
      return true;
    },
  };
}
