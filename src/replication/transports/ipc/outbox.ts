import {
  type Message,
  MessageType,
  message,
  type StoreBatchMessage,
} from '../../../protocol/messages.js';

interface Queued {
  readonly msgs: Message[];
  /** What the caller counts for these messages (the hub: bytes of session data). */
  bytes: number;
}

/**
 * Store messages for IPC peers, gathered during one turn of the event loop and sent once per
 * peer at its end: one message, or a StoreBatch holding them in order. A session write costs
 * an IPC message on each side of each channel it crosses; under load many writes arrive in one
 * turn, and each message's fixed cost (a system call, a callback, an event and a parse at the
 * other end) is then paid once for all of them.
 */
export class Outbox<P> {
  private readonly queued = new Map<P, Queued>();
  private scheduled = false;

  constructor(
    /** Sends one message (a single one, or the batch) to `peer`; `msgs` are what it holds. */
    private readonly send: (peer: P, msg: Message, msgs: readonly Message[], bytes: number) => void,
    /**
     * Arranges for `flush()` to be called at the end of this turn; by default the outbox does so
     * itself (an owner with several outboxes flushes them together, in its own order).
     */
    private readonly schedule?: () => void,
  ) {}

  queue(peer: P, msg: Message, bytes = 0): void {
    let q = this.queued.get(peer);
    if (!q) {
      q = { msgs: [], bytes: 0 };
      this.queued.set(peer, q);
    }
    q.msgs.push(msg);
    q.bytes += bytes;
    if (!this.scheduled) {
      this.scheduled = true;
      if (this.schedule) this.schedule();
      else setImmediate(() => this.flush());
    }
  }

  /** Sends what is queued, to `peer` only when given (to keep order with what comes next). */
  flush(peer?: P): void {
    if (peer !== undefined) {
      const q = this.queued.get(peer);
      if (!q) return;
      this.queued.delete(peer);
      this.sendQueued(peer, q);
      return;
    }
    this.scheduled = false;
    const all = [...this.queued];
    this.queued.clear();
    for (const [p, q] of all) this.sendQueued(p, q);
  }

  /** Forgets what is queued for `peer` (it is gone, or will get the full state instead). */
  drop(peer: P): void {
    this.queued.delete(peer);
  }

  private sendQueued(peer: P, q: Queued): void {
    const msg =
      q.msgs.length === 1
        ? (q.msgs[0] as Message)
        : message<StoreBatchMessage>(MessageType.StoreBatch, { msgs: q.msgs });
    this.send(peer, msg, q.msgs, q.bytes);
  }
}
