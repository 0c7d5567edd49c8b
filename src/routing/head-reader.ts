import { readSync } from 'node:fs';
import type net from 'node:net';
import {
  handleFd,
  handleOf,
  type OnRead,
  type RawHandle,
  type ReadState,
  readState,
  releaseHandle,
  setOnRead,
  socketFromHandle,
} from '../node-internals.js';
import { type HeadLimits, HeadParser } from './head.js';

/** How a connection's request head was read (in the primary, or in a worker between requests). */
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
  /** More than `maxBytes` arrived without a complete head (answer 431 on `connection`). */
  | { status: 'too-large'; connection: RawHandle | net.Socket }
  /**
   * No complete head within `timeoutMs` (answer 408). `received`: bytes that did arrive (none
   * means an idle keep-alive connection, which is closed without an answer).
   */
  | { status: 'timeout'; connection: RawHandle | net.Socket; received: number }
  /** A PROXY header was required and missing or malformed (close `connection`). */
  | { status: 'bad-proxy'; connection: RawHandle | net.Socket; reason: string }
  /** The client closed or reset before its head was complete (already closed here). */
  | { status: 'closed' };

export interface HeadReadOptions extends HeadLimits {
  /** Time allowed for the whole head, from the call on (a deadline, not an idle timer), in ms. */
  timeoutMs: number;
  /**
   * How to read: straight from the handle (no stream object; the default where this Node
   * exposes its read state) or through a `net.Socket`. Both are exact; tests run both.
   */
  via?: 'handle' | 'socket';
  /**
   * The caller still owns the handle through another object (a socket its server holds): a
   * client that leaves is reported as `closed` without closing the handle here.
   */
  keepHandle?: boolean;
  /**
   * Try one read at once, before waiting for the event loop (a new connection whose client
   * wrote its request right away). The result may then be reported before `readHead` returns.
   */
  readNow?: boolean;
}

/** What `readHead` returns: a way to give up on a connection that has sent nothing yet. */
export interface HeadRead {
  /**
   * If no byte has arrived, stops reading, closes the connection and reports `closed`; returns
   * whether it did. A connection that has started a request is left to finish it.
   */
  closeIfIdle(): boolean;
  /** Stops waiting without a report and without touching the handle (its owner closed it). */
  abandon(): void;
}

/**
 * Reads the request head of a connection without losing a byte, then gives the raw handle back
 * (detached, not reading) with everything read so far.
 */
export function readHead(
  handle: RawHandle,
  options: HeadReadOptions,
  done: (result: HeadReadResult) => void,
): HeadRead {
  const via = options.via ?? (readState ? 'handle' : 'socket');
  return via === 'handle' && readState
    ? readFromHandle(handle, options, done, readState)
    : readFromSocket(handle, options, done);
}

/**
 * The lean path: the handle's own `onread` receives each chunk; no stream object exists. When
 * the head is complete the handle stops reading, so nothing past what was read leaves the
 * kernel, and whoever takes the handle next installs its own `onread`.
 */
function readFromHandle(
  handle: RawHandle,
  options: HeadReadOptions,
  done: (result: HeadReadResult) => void,
  state: ReadState,
): HeadRead {
  const parser = new HeadParser(options);
  let finished = false;
  let paused: NodeJS.Timeout | undefined;
  const finish = (result: HeadReadResult) => {
    if (finished) return;
    finished = true;
    if (timer) clearTimeout(timer);
    clearTimeout(paused);
    handle.readStop();
    setOnRead(handle, ignoreRead);
    if (result.status === 'closed' && !options.keepHandle) handle.close();
    done(result);
  };
  let timer: NodeJS.Timeout | undefined;
  const resume = () => {
    paused = undefined;
    if (!finished && handle.readStart() !== 0) finish({ status: 'closed' });
  };
  const take = (chunk: Buffer) => {
    const found = parser.push(chunk);
    if (found === undefined) {
      if (parser.trickling) paused ??= pauseReading(handle, resume);
      return;
    }
    if (found.status === 'ok') {
      finish({
        status: 'ok',
        handle,
        bytes: found.all,
        headLength: found.headLength,
        source: parser.proxySource,
      });
    } else if (found.status === 'too-large') {
      finish({ status: 'too-large', connection: handle });
    } else {
      finish({ status: 'bad-proxy', connection: handle, reason: found.reason });
    }
  };
  const onread: OnRead = (data) => {
    const n = state.streamBaseState[state.kReadBytesOrError] ?? 0;
    if (n < 0 || data === undefined) {
      // End of stream or an error (reset): the client left before its head was complete.
      if (n !== 0) finish({ status: 'closed' });
      return;
    }
    if (n === 0 || finished) return;
    const offset = state.streamBaseState[state.kArrayBufferOffset] ?? 0;
    take(Buffer.from(data, offset, n));
  };
  const wait = () => {
    if (finished) return;
    timer = setTimeout(
      () => finish({ status: 'timeout', connection: handle, received: parser.total }),
      options.timeoutMs,
    );
    timer.unref();
    setOnRead(handle, onread);
    if (handle.readStart() !== 0) finish({ status: 'closed' });
  };
  const gone = () => finish({ status: 'closed' });
  // A client that sent nothing yet (about half of them, measured on loopback: the primary
  // accepts before the client's write lands; one more try a loop turn later mostly fails too)
  // is waited for.
  if (options.readNow) readNow(handle, take, gone);
  wait();
  return {
    closeIfIdle() {
      if (finished || parser.total > 0) return false;
      finish({ status: 'closed' });
      return true;
    },
    abandon() {
      finished = true;
      if (timer) clearTimeout(timer);
      clearTimeout(paused);
    },
  };
}

function ignoreRead(): void {}

/**
 * How long a trickling client's reads are spaced (`HeadParser#trickling`), in ms: a head cut
 * into single bytes then costs at most `timeoutMs / PACE_MS` more reads (500 at the default
 * 10 s), not one per byte. A read costs ~20 us of CPU whatever it holds (a system call, a wakeup,
 * a callback), so 16 KB read a byte at a time would cost ~0.35 s (bench/head-reading.mjs); a
 * client that is not trickling never waits.
 */
const PACE_MS = 20;

/** Stops `handle` reading for `PACE_MS` (bytes gather in the kernel), then calls `resume`. */
function pauseReading(handle: RawHandle, resume: () => void): NodeJS.Timeout {
  handle.readStop();
  const timer = setTimeout(resume, PACE_MS);
  timer.unref();
  return timer;
}

/** Scratch space for `readNow`; what is read is copied out, so one buffer serves every call. */
let scratch: Buffer | undefined;

/**
 * One non-blocking read straight from the connection's descriptor, before waiting for the event
 * loop: a client usually sends its request right behind the handshake, so the whole head is
 * often there already, and the connection can be handed over without the loop's help.
 * What was read goes to `take`; a client already gone goes to `gone`. Returns false when
 * nothing was there yet (EAGAIN); an error the event loop's read will report properly counts as
 * read (the caller waits for that report).
 */
function readNow(handle: RawHandle, take: (chunk: Buffer) => void, gone: () => void): boolean {
  const fd = handleFd(handle);
  if (fd < 0) return true;
  scratch ??= Buffer.allocUnsafe(64 * 1024);
  let n: number;
  // EAGAIN is thrown as an error: without a stack trace it costs a third less.
  const limit = Error.stackTraceLimit;
  Error.stackTraceLimit = 0;
  try {
    n = readSync(fd, scratch, 0, scratch.length, null);
  } catch (err) {
    return (err as NodeJS.ErrnoException).code !== 'EAGAIN';
  } finally {
    Error.stackTraceLimit = limit;
  }
  if (n === 0) gone();
  else take(Buffer.from(scratch.subarray(0, n)));
  return true;
}

/**
 * The portable path, through a `net.Socket`. The recipe matters: `socket.pause()` does not stop
 * the handle from reading, and a 'data' listener lets bytes flow past; so the socket is read in
 * paused mode ('readable' + read()), and the moment the head is complete the handle itself stops
 * reading (`readStop()`, leaving Node's `reading` flag set, so that draining the stream buffer
 * with read() cannot start it again). What read() still returns is appended, and the handle is
 * taken back from the socket object before anything else can touch it.
 */
function readFromSocket(
  handle: RawHandle,
  options: HeadReadOptions,
  done: (result: HeadReadResult) => void,
): HeadRead {
  const socket = socketFromHandle(handle);
  const parser = new HeadParser(options);
  let finished = false;
  let paused: NodeJS.Timeout | undefined;

  const finish = (result: HeadReadResult) => {
    if (finished) return;
    finished = true;
    clearTimeout(timer);
    clearTimeout(paused);
    socket.removeListener('readable', onReadable);
    socket.removeListener('end', onGone);
    socket.removeListener('close', onGone);
    done(result);
  };
  const onGone = () => {
    finish({ status: 'closed' });
    socket.destroy();
  };
  const timer = setTimeout(
    () => finish({ status: 'timeout', connection: socket, received: parser.total }),
    options.timeoutMs,
  );
  timer.unref();

  const onReadable = () => {
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the stream idiom
    while (!finished && (chunk = socket.read() as Buffer | null) !== null) {
      const found = parser.push(chunk);
      if (found === undefined) continue;
      if (found.status === 'ok') complete(found.all, found.headLength);
      else if (found.status === 'too-large') finish({ status: 'too-large', connection: socket });
      else finish({ status: 'bad-proxy', connection: socket, reason: found.reason });
    }
    const raw = handleOf(socket);
    if (!finished && !paused && raw && parser.trickling) paused = pauseReading(raw, resume);
  };
  // Node's `reading` flag stays set while paused here, so the stream does not restart the
  // handle itself; unset, the stream stopped it (buffer full) and restarts it when drained.
  const resume = () => {
    paused = undefined;
    const raw = handleOf(socket);
    if (!finished && raw?.reading) raw.readStart();
  };

  const complete = (all: Buffer, headLength: number) => {
    const raw = handleOf(socket);
    if (!raw) {
      onGone();
      return;
    }
    raw.readStop();
    // Whatever the stream still buffers was read from the client too.
    const rest: Buffer[] = [];
    let chunk: Buffer | null;
    // biome-ignore lint/suspicious/noAssignInExpressions: the stream idiom
    while ((chunk = socket.read() as Buffer | null) !== null) rest.push(chunk);
    releaseHandle(socket);
    const bytes = rest.length === 0 ? all : Buffer.concat([all, ...rest]);
    finish({ status: 'ok', handle: raw, bytes, headLength, source: parser.proxySource });
  };

  socket.on('error', () => {});
  socket.on('readable', onReadable);
  socket.once('end', onGone);
  socket.once('close', onGone);
  return {
    closeIfIdle() {
      if (finished || parser.total > 0) return false;
      onGone();
      return true;
    },
    abandon() {
      finished = true;
      clearTimeout(timer);
      clearTimeout(paused);
    },
  };
}
