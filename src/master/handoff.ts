import type { Worker } from 'node:cluster';
import { debug, trace } from '../debug.js';
import {
  dropHandleQueue,
  handlesAhead,
  onHandleAnswers,
  type RawHandle,
} from '../node-internals.js';
import { type ConnectionMessage, MessageType, message } from '../protocol/messages.js';
import { fenceOf } from '../replication/transports/ipc/fence.js';

const CONNECTION: ConnectionMessage = message<ConnectionMessage>(MessageType.Connection, {});

interface Sent {
  handle: RawHandle;
  /** The number of the acknowledgement that answers this handle. */
  answer: number;
  /** When it was sent (ms). */
  at: number;
}

/**
 * Hands connections to one worker and keeps the primary's copy of each until the worker has it.
 *
 * Node passes one handle at a time and waits for the receiver's `NODE_HANDLE_ACK` (or `NACK`)
 * before the next, on its internal `internalMessage` channel; later handles wait in its
 * `_handleQueue`. Every handle message gets exactly one answer, in send order, whoever sent it:
 * cluster's own round-robin also passes handles on this channel when a worker listens on a port
 * of its own. So each of our handles is numbered with the answer that will be its own (answers
 * seen + the one in flight + handles queued ahead + 1), and only that answer releases it.
 * Holding our copy until then costs nothing and means a worker that dies first leaves handles
 * that were never read: `takeUnacknowledged()` returns them to be routed again instead of being
 * reset (or, with the handle given up too early, left hanging).
 */
export class Handoff {
  private sent: Sent[] = [];
  /** Handles sent (or queued to be sent) that the worker has not taken yet. */
  get queued(): number {
    return this.sent.length;
  }

  /**
   * How long the worker has taken none of the handles waiting for it, in ms (0 when none wait):
   * since the oldest was sent or the last was answered, whichever came later. A worker whose
   * event loop runs answers each handle within moments, however many wait.
   */
  stalledFor(now: number): number {
    const oldest = this.sent[0];
    return oldest ? now - Math.max(oldest.at, this.answeredAt) : 0;
  }

  /** When the worker last answered a handle (ms). */
  private answeredAt = 0;

  /** Acknowledgements (ACK or NACK) seen on this channel so far. */
  private answers = 0;
  private readonly stopListening: () => void;

  /** `onReturned` gets back a handle the worker could not take (send failed, or it refused it). */
  constructor(
    private readonly worker: Worker,
    private readonly onReturned: (handle: RawHandle) => void,
  ) {
    this.stopListening = onHandleAnswers(worker, (taken) => this.onAnswer(taken));
  }

  /**
   * Sends `handle` to the worker with the bytes read from it (`head`) and its address key
   * (`peer`); `onSent` runs once it is written to the IPC channel.
   */
  send(
    handle: RawHandle,
    head: Buffer | undefined,
    peer: string | undefined,
    onSent: () => void,
  ): void {
    // Without Node's queue to look at, only this channel's own handles can be counted (exact
    // unless the worker also listens on a port of its own, when cluster sends handles too).
    const ahead = handlesAhead(this.worker) ?? this.sent.length;
    const entry: Sent = { handle, answer: this.answers + ahead + 1, at: Date.now() };
    this.sent.push(entry);
    // How far the hub has written this worker's store channel: the worker serves the
    // connection once it has applied that far (every write acknowledged before now).
    const fence = fenceOf(this.worker);
    const msg =
      head || peer || fence > 0
        ? message<ConnectionMessage>(MessageType.Connection, {
            ...(head ? { head: head.toString('base64') } : {}),
            ...(peer ? { peer } : {}),
            ...(fence > 0 ? { fence } : {}),
          })
        : CONNECTION;
    this.worker.send(msg, handle as never, (err: Error | null) => {
      if (!err) {
        trace.handoff?.(
          'to pid %d with %d bytes read (%d not taken yet)',
          this.worker.process.pid,
          head?.length ?? 0,
          this.sent.length,
        );
        onSent();
        return;
      }
      debug('handoff to pid %d failed: %s', this.worker.process.pid, err.message);
      const i = this.sent.indexOf(entry);
      // Already taken back by takeUnacknowledged(): the exit path routes it.
      if (i === -1) return;
      this.sent.splice(i, 1);
      this.onReturned(handle);
    });
  }

  /** The handles the worker never acknowledged; the caller owns them now. Call once it exited. */
  takeUnacknowledged(): RawHandle[] {
    this.stopListening();
    const handles = this.sent.map((entry) => entry.handle);
    if (handles.length > 0) {
      trace.handoff?.(
        'pid %d left %d connections untaken',
        this.worker.process.pid,
        handles.length,
      );
    }
    this.sent = [];
    // Node would otherwise keep queued sends (and their handles) for a process that is gone.
    dropHandleQueue(this.worker);
    return handles;
  }

  private onAnswer(taken: boolean): void {
    this.answers++;
    this.answeredAt = Date.now();
    const head = this.sent[0];
    if (head?.answer !== this.answers) return; // someone else's handle
    this.sent.shift();
    trace.handoff?.('pid %d %s a connection', this.worker.process.pid, taken ? 'took' : 'refused');
    if (taken) {
      head.handle.close();
    } else {
      // The worker could not take it; Node does not resend raw handles.
      debug('pid %d refused a handle', this.worker.process.pid);
      this.onReturned(head.handle);
    }
  }
}
