import net, { type Socket } from 'node:net';
import { debug } from '../../../debug.js';
import type { StoreLinkMessage } from '../../../protocol/messages.js';
import { changesFrames, FrameReader, queryFrame } from './frames.js';

/** Bytes one read of the channel takes at most (a state frame of 1 MiB comes in several). */
const READ_BUFFER = 64 * 1024;

/**
 * A worker's end of its store data channel to the primary's hub: connects where the primary
 * said (presenting its token), sends the writes of each turn of the event loop as one frame
 * (reads on miss in order between them), and hands each frame that arrives to `onFrame`. What
 * is sent before the channel is connected waits here.
 */
export class WorkerLink {
  private socket: Socket | undefined;
  private connected = false;
  private readonly reader = new FrameReader();
  /** Frames to send: this turn's, or all of them until the channel is connected. */
  private out: Buffer[] = [];
  /** Writes of this turn, encoded, not yet in a frame. */
  private turn: Buffer[] = [];
  private flushScheduled = false;

  constructor(
    private readonly onFrame: (kind: number, body: Buffer) => void,
    /** After each chunk read (its frames applied). */
    private readonly onRead: () => void,
    private readonly onClose: (why: string) => void,
  ) {}

  /** Bytes of whole frames read and handed on so far. */
  get consumed(): number {
    return this.reader.consumed;
  }

  connect(msg: StoreLinkMessage): void {
    if (this.socket) return;
    // Reads land in one buffer of this channel's own, handed to the frame reader as they come:
    // no stream machinery, no allocation per read (a write costs every other worker a read).
    const socket = net.connect({
      path: msg.path,
      onread: {
        buffer: Buffer.allocUnsafe(READ_BUFFER),
        callback: (n: number, buf: Uint8Array) => {
          const chunk = Buffer.from(buf.buffer, buf.byteOffset, n);
          if (!this.reader.push(chunk, this.onFrame, true)) {
            debug('store data channel: a frame over the size limit; closing it');
            socket.destroy();
          }
          this.onRead();
          return true;
        },
      },
    });
    this.socket = socket;
    socket.write(Buffer.from(msg.token, 'hex'));
    socket.on('connect', () => {
      this.connected = true;
      this.flush();
    });
    socket.on('error', (err) => debug('store data channel: %s', err.message));
    socket.on('close', () => this.onClose('the data channel to the primary closed'));
  }

  /** A write (encoded), sent with the others of this turn. */
  write(encoded: Buffer): void {
    this.turn.push(encoded);
    this.schedule();
  }

  query(id: number, sid: string): void {
    this.endTurnWrites();
    this.out.push(queryFrame(id, sid));
    this.schedule();
  }

  /** Stops reading the channel for `ms` (tests: a worker whose changes are late). */
  holdReads(ms: number): void {
    const socket = this.socket;
    if (!socket) return;
    socket.pause();
    setTimeout(() => socket.resume(), ms).unref();
  }

  /**
   * Sends `bytes` as they are, after what is queued (tests and tools: frames the store would
   * never send, to see the hub drop them).
   */
  sendRaw(bytes: Buffer): void {
    this.endTurnWrites();
    this.out.push(bytes);
    this.schedule();
  }

  /** The writes of this turn so far become one frame (before a read, to keep their order). */
  private endTurnWrites(): void {
    if (this.turn.length === 0) return;
    this.out.push(...changesFrames(this.turn));
    this.turn = [];
  }

  private schedule(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      this.flushScheduled = false;
      this.endTurnWrites();
      this.flush();
    });
  }

  /** Writes what is queued once the channel is connected (until then it waits). */
  private flush(): void {
    const socket = this.socket;
    if (!socket || !this.connected || this.out.length === 0) return;
    const out = this.out;
    this.out = [];
    socket.write(out.length === 1 ? (out[0] as Buffer) : Buffer.concat(out));
  }
}
