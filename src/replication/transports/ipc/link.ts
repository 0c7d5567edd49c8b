import type { Worker } from 'node:cluster';
import type { Change } from '../../table.js';
import { encodeChange } from '../multicast/codec.js';
import {
  ackFrame,
  changesFrames,
  FRAME_TARGET,
  Frame,
  idsFrame,
  type Refusal,
  stateFrame,
} from './frames.js';

/** Changes per state-transfer frame. */
const STATE_CHUNK = 500;
/** Bytes queued on a channel past which a state transfer waits for it to drain. */
const STATE_HIGH_WATER = 1024 * 1024;

/**
 * One worker's data channel as the hub drives it: bytes out (frames in arrive through the
 * maker's `onFrame`). The default is a Unix socket the worker connects to (link-server.ts);
 * tests give their own.
 */
export interface LinkEnd {
  write(bytes: Buffer): void;
  /** Bytes written and not yet taken by the operating system. */
  readonly writableLength: number;
  /** Calls `fn` once the channel can take more (at once if it can now). */
  onDrain(fn: () => void): void;
  cork(): void;
  uncork(): void;
  close(): void;
}

/** Makes the data channel of `worker`: `onFrame` gets each frame it sends. */
export type LinkMaker = (
  worker: Worker,
  onFrame: (kind: number, body: Buffer) => void,
  onClose: () => void,
) => LinkEnd;

/**
 * The hub's side of one worker's data channel: what it wrote (the fence of a connection handed
 * to the worker), the worker's writes received and answered, and what goes out at the end of
 * this turn, in two passes: changes first ({@link flushOut}), then answers ({@link flushAnswers}).
 */
export class Link {
  /** Bytes written to the channel. */
  written = 0;
  /** The worker's writes received so far (numbered in the order sent, from 1). */
  received = 0;
  /** Of them, answered. */
  answered = 0;
  /** It has (or is being sent) the full state, and so gets every write from now on. */
  synced = false;
  /** Its channel backed up past the hub's limit: fed nothing until drained, then resynced. */
  behind = false;
  /** Frames of changes for it this turn. */
  out: Buffer[] = [];
  /** Its answers this turn: records that beat its writes, refusals, reads that may go on. */
  readonly winners: Buffer[] = [];
  readonly refusals: Refusal[] = [];
  readonly found: number[] = [];
  /** The number of the latest state transfer (a newer one, or falling behind, ends it). */
  private transfer = 0;
  end: LinkEnd;

  constructor(
    readonly worker: Worker,
    make: (link: Link) => LinkEnd,
  ) {
    this.end = make(this);
  }

  /** Whether it gets the changes made elsewhere now. */
  get fed(): boolean {
    return this.synced && !this.behind;
  }

  write(bytes: Buffer): void {
    this.written += bytes.length;
    this.end.write(bytes);
  }

  flushOut(): void {
    if (this.out.length === 0) return;
    const out = this.out;
    this.out = [];
    if (out.length > 1) this.end.cork();
    for (const b of out) this.write(b);
    if (out.length > 1) this.end.uncork();
  }

  flushAnswers(): void {
    if (this.winners.length > 0) {
      for (const f of changesFrames(this.winners)) this.write(f);
      this.winners.length = 0;
    }
    if (this.answered < this.received || this.refusals.length > 0) {
      this.write(ackFrame(this.received, this.refusals));
      this.answered = this.received;
      this.refusals.length = 0;
    }
    if (this.found.length > 0) {
      this.write(idsFrame(Frame.Found, this.found));
      this.found.length = 0;
    }
  }

  /** Ends a state transfer under way (its worker fell behind, or gets a newer one). */
  stopTransfer(): void {
    this.transfer++;
  }

  /**
   * Sends `changes` (the full state) in parts as the channel takes them, so a large state never
   * sits whole in this process; the worker is fed what changes meanwhile as it happens.
   * `live` says whether the channel is still this worker's.
   */
  sendState(changes: Iterator<Change>, live: () => boolean): void {
    const transfer = ++this.transfer;
    const next = () => {
      if (this.transfer !== transfer || !live()) return;
      for (;;) {
        const part: Buffer[] = [];
        let bytes = 0;
        let done = false;
        while (part.length < STATE_CHUNK && bytes < FRAME_TARGET) {
          const c = changes.next();
          if (c.done) {
            done = true;
            break;
          }
          const encoded = encodeChange(c.value);
          part.push(encoded);
          bytes += encoded.length;
        }
        this.write(stateFrame(part, done));
        if (done) return;
        if (this.end.writableLength > STATE_HIGH_WATER) {
          this.end.onDrain(next);
          return;
        }
      }
    };
    next();
  }
}
