import type { Worker } from 'node:cluster';
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import net, { type Socket } from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { debug } from '../../../debug.js';
import { sendToWorker } from '../../../protocol/ipc.js';
import { MessageType, message, type StoreLinkMessage } from '../../../protocol/messages.js';
import { FrameReader } from './frames.js';
import type { LinkEnd } from './link.js';

/** Bytes of the token a worker presents first on its data channel. */
export const TOKEN_BYTES = 16;
/** How long an accepted connection may take to present its token, in ms. */
const TOKEN_TIMEOUT_MS = 5_000;

/**
 * Where the primary's hub accepts the workers' replication data channels: a Unix socket (in the
 * abstract namespace on Linux, so nothing is left on disk; elsewhere in a private 0700
 * directory). Each worker is told a one-time token over its IPC channel, which only the primary
 * can write to; a connection that does not open with a token the hub handed out is closed.
 */
export class LinkServer {
  private server: net.Server | undefined;
  private listening: Promise<string> | undefined;
  private dir: string | undefined;
  private readonly expected = new Map<string, (socket: Socket, rest: Buffer) => void>();
  /** Connections closed for want of a valid token. */
  rejected = 0;

  /**
   * A token and the path to connect to; `onConnect` gets the worker's socket once it connected
   * with that token (with any bytes that came after it).
   */
  async expect(onConnect: (socket: Socket, rest: Buffer) => void): Promise<{
    path: string;
    token: string;
  }> {
    const token = randomBytes(TOKEN_BYTES).toString('hex');
    this.expected.set(token, onConnect);
    return { path: await this.listen(), token };
  }

  /** Forgets a token not used yet (its worker is gone). */
  forget(token: string): void {
    this.expected.delete(token);
  }

  close(): void {
    this.expected.clear();
    this.server?.close();
    this.server = undefined;
    this.listening = undefined;
    if (this.dir) rmSync(this.dir, { recursive: true, force: true });
    this.dir = undefined;
  }

  private listen(): Promise<string> {
    this.listening ??= new Promise<string>((resolve, reject) => {
      const where =
        process.platform === 'linux'
          ? `\0sticky-mesh-store-${process.pid}-${randomBytes(8).toString('hex')}`
          : this.privatePath();
      const server = net.createServer((socket) => this.accept(socket));
      server.once('error', reject);
      server.listen(where, () => {
        server.off('error', reject);
        server.on('error', (err) => debug('hub: data channel listener: %s', err.message));
        server.unref();
        resolve(where);
      });
      this.server = server;
    });
    return this.listening;
  }

  private privatePath(): string {
    this.dir = mkdtempSync(path.join(os.tmpdir(), 'sticky-mesh-store-'));
    return path.join(this.dir, 'hub.sock');
  }

  private accept(socket: Socket): void {
    let got: Buffer[] = [];
    let bytes = 0;
    const timer = setTimeout(() => {
      this.rejected++;
      socket.destroy();
    }, TOKEN_TIMEOUT_MS);
    timer.unref();
    socket.on('error', () => undefined);
    const onData = (chunk: Buffer) => {
      got.push(chunk);
      bytes += chunk.length;
      if (bytes < TOKEN_BYTES) return;
      socket.off('data', onData);
      socket.pause();
      clearTimeout(timer);
      const all = Buffer.concat(got, bytes);
      got = [];
      const token = all.subarray(0, TOKEN_BYTES).toString('hex');
      const onConnect = this.expected.get(token);
      if (!onConnect) {
        this.rejected++;
        debug('hub: closed a data channel that did not present a token of ours');
        socket.destroy();
        return;
      }
      this.expected.delete(token);
      onConnect(socket, all.subarray(TOKEN_BYTES));
    };
    socket.on('data', onData);
  }
}

/**
 * The hub's end of a worker's data channel over `server`: tells the worker over IPC where to
 * connect; what the hub writes before the worker has connected waits here, counted.
 * `onOversize` counts a frame over the size limit (the channel is closed: the stream is lost).
 */
export function socketLink(
  server: LinkServer,
  worker: Worker,
  onFrame: (kind: number, body: Buffer) => void,
  onClose: () => void,
  onOversize: () => void,
): LinkEnd {
  let socket: Socket | undefined;
  let queued: Buffer[] = [];
  let queuedBytes = 0;
  let corked = false;
  let drainWaiters: (() => void)[] = [];
  let token: string | undefined;
  let closed = false;
  const reader = new FrameReader();
  const feed = (chunk: Buffer) => {
    if (!reader.push(chunk, onFrame)) {
      onOversize();
      debug(
        'hub: a frame over the size limit from pid %d; closing its channel',
        worker.process.pid,
      );
      socket?.destroy();
    }
  };
  const attach = (s: Socket, rest: Buffer) => {
    if (closed) {
      s.destroy();
      return;
    }
    socket = s;
    s.on('error', (err) =>
      debug('hub: data channel of pid %d: %s', worker.process.pid, err.message),
    );
    s.on('close', onClose);
    s.on('drain', () => {
      const waiters = drainWaiters;
      drainWaiters = [];
      for (const fn of waiters) fn();
    });
    for (const b of queued) s.write(b);
    queued = [];
    queuedBytes = 0;
    if (rest.length > 0) feed(rest);
    s.on('data', feed);
    s.resume();
  };
  server
    .expect(attach)
    .then(({ path, token: t }) => {
      token = t;
      if (closed) server.forget(t);
      else {
        const msg = message<StoreLinkMessage>(MessageType.StoreLink, { path, token: t });
        sendToWorker(worker, msg, 'hub: data channel');
      }
    })
    .catch((err: Error) => {
      debug('hub: no data channel for pid %d: %s', worker.process.pid, err.message);
      onClose();
    });
  return {
    write: (bytes) => {
      if (socket) socket.write(bytes);
      else {
        queued.push(bytes);
        queuedBytes += bytes.length;
      }
    },
    get writableLength() {
      return socket ? socket.writableLength : queuedBytes;
    },
    onDrain: (fn) => {
      if (socket && !socket.writableNeedDrain) fn();
      else drainWaiters.push(fn);
    },
    cork: () => {
      if (socket && !corked) {
        corked = true;
        socket.cork();
      }
    },
    uncork: () => {
      if (socket && corked) {
        corked = false;
        socket.uncork();
      }
    },
    close: () => {
      closed = true;
      if (token) server.forget(token);
      socket?.destroy();
      drainWaiters = [];
    },
  };
}
