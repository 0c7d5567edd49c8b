import type { Change } from '../../table.js';

/**
 * Most writes sent to Redis and not answered yet; the others wait in the queue. Enough to keep a
 * link busy (the script runs in microseconds), and what bounds ioredis's own command queue: a
 * link that swallows commands while ioredis still says `ready` holds at most this many.
 */
export const MAX_IN_FLIGHT = 64;
/**
 * After a write failed on a link that still looks up (an error reply), sending resumes this
 * much later, in ms.
 */
export const RETRY_MS = 1000;
/** Bytes a write takes beside its session JSON (the change, the script's arguments), roughly. */
const WRITE_OVERHEAD = 256;

/**
 * What a queued write counts against `maxQueueBytes`: its session JSON in characters (what the
 * string takes in memory, a byte or two each), its id, and the overhead.
 */
export function writeBytes(change: Change): number {
  return WRITE_OVERHEAD + change.sid.length + (change.op === 'set' ? change.data.length : 0);
}

export interface WriteQueueOptions {
  /** Most writes held (waiting or in flight); `maxQueue`. */
  readonly maxQueue: number;
  /** Most bytes held (waiting or in flight); `maxQueueBytes`. */
  readonly maxQueueBytes: number;
  /** Sends one write; settles once Redis answered it (rejects if it failed or the link went). */
  send(change: Change): Promise<unknown>;
  /** Whether writes may go out now (both connections up). */
  canSend(): boolean;
  /** A write did not fit and was dropped (the oldest waiting, or the new one). */
  onDrop(): void;
  /** Nothing is held any more: every write was answered. */
  onDrained(): void;
}

interface Entry {
  readonly change: Change;
  readonly bytes: number;
  /** Order of arrival (what a flush waits for). */
  readonly seq: number;
}

/**
 * A machine's own writes to Redis, held from the moment they are made until Redis has answered
 * them: while Redis is unreachable, while they wait for a slot, and while they are in flight.
 * Everything held counts against `maxQueue` and `maxQueueBytes`, in flight included, so neither
 * this queue nor ioredis's grows without bound when Redis stops answering. Past the bounds the
 * oldest waiting write is dropped (counted; the transport then writes it back from the replica
 * at its next rebuild); when every held write is in flight the new one is dropped instead. A
 * write alone is always taken while Redis is reachable, however large (so a session over
 * `maxQueueBytes` is still written, and `maxQueue: 0` still writes, one at a time).
 *
 * A failed write stays held and sending stops until the next {@link flush} (the transport's
 * rebuild after a reconnect) or `RETRY_MS` later: a link that fails every command is not
 * hammered, and one that answered an error (Redis out of memory, a failover) is tried again.
 */
export class WriteQueue {
  private waiting: Entry[] = [];
  /** Index of the first waiting entry in `waiting` (shifting a long array is linear). */
  private head = 0;
  private readonly inFlight = new Set<Entry>();
  private held = 0;
  private heldBytes = 0;
  private nextSeq = 1;
  /** A write failed: send nothing until the next flush or the retry. */
  private halted = false;
  private retry: NodeJS.Timeout | undefined;
  private closed = false;
  private flushes: { upTo: number; resolve(): void; reject(err: Error): void }[] = [];

  constructor(private readonly o: WriteQueueOptions) {}

  /** Writes held (waiting or in flight), and their bytes. */
  get length(): number {
    return this.held;
  }

  get bytes(): number {
    return this.heldBytes;
  }

  /** Holds a write and sends it as soon as the link and the in-flight window allow. */
  push(change: Change): void {
    const entry = { change, bytes: writeBytes(change), seq: this.nextSeq++ };
    const fits = () =>
      this.held + 1 <= this.o.maxQueue && this.heldBytes + entry.bytes <= this.o.maxQueueBytes;
    while (!fits() && this.head < this.waiting.length) {
      this.remove(this.takeWaiting() as Entry);
      this.o.onDrop();
    }
    if (!fits() && !(this.held === 0 && this.o.canSend())) {
      this.o.onDrop();
      return;
    }
    this.held++;
    this.heldBytes += entry.bytes;
    this.waiting.push(entry);
    this.pump();
  }

  /**
   * Resumes sending (after a failure) and resolves once every write held now has been answered;
   * rejects if one fails meanwhile (it stays held).
   */
  flush(): Promise<void> {
    if (this.closed) return Promise.resolve();
    this.halted = false;
    const upTo = this.nextSeq - 1;
    const done = new Promise<void>((resolve, reject) => {
      this.flushes.push({ upTo, resolve, reject });
    });
    this.pump();
    this.settleFlushes();
    return done;
  }

  /** Sends waiting writes while the link is up and fewer than MAX_IN_FLIGHT are unanswered. */
  pump(): void {
    while (
      !this.halted &&
      this.inFlight.size < MAX_IN_FLIGHT &&
      this.head < this.waiting.length &&
      this.o.canSend()
    ) {
      const entry = this.takeWaiting() as Entry;
      this.inFlight.add(entry);
      this.o.send(entry.change).then(
        () => this.answered(entry),
        (err: Error) => this.failed(entry, err),
      );
    }
    // Writes wait and none is out: nothing will settle a flush until the link is back.
    if (this.inFlight.size === 0 && this.head < this.waiting.length && this.flushes.length > 0) {
      this.rejectFlushes(new Error('Redis is unreachable'));
    }
  }

  private answered(entry: Entry): void {
    if (!this.inFlight.delete(entry)) return;
    this.remove(entry);
    this.pump();
    this.settleFlushes();
    if (this.held === 0) this.o.onDrained();
  }

  private failed(entry: Entry, err: Error): void {
    if (!this.inFlight.delete(entry)) return;
    // Back among the oldest (in order): it is older than every write never sent.
    let at = this.head;
    while (at < this.waiting.length && (this.waiting[at] as Entry).seq < entry.seq) at++;
    this.waiting.splice(at, 0, entry);
    this.halted = true;
    this.rejectFlushes(err);
    if (!this.retry && !this.closed) {
      this.retry = setTimeout(() => {
        this.retry = undefined;
        this.halted = false;
        this.pump();
      }, RETRY_MS);
      this.retry.unref();
    }
  }

  /** Sends nothing more (the transport is closing); what is held is abandoned. */
  close(): void {
    this.closed = true;
    this.halted = true;
    clearTimeout(this.retry);
    const flushes = this.flushes;
    this.flushes = [];
    for (const f of flushes) f.resolve();
  }

  private rejectFlushes(err: Error): void {
    const flushes = this.flushes;
    this.flushes = [];
    for (const f of flushes) f.reject(err);
  }

  private takeWaiting(): Entry | undefined {
    const entry = this.waiting[this.head];
    this.head++;
    if (this.head >= 1024 && this.head * 2 >= this.waiting.length) {
      this.waiting = this.waiting.slice(this.head);
      this.head = 0;
    }
    return entry;
  }

  private remove(entry: Entry): void {
    this.held--;
    this.heldBytes -= entry.bytes;
  }

  /** Resolves the flushes whose writes have all been answered (or dropped). */
  private settleFlushes(): void {
    if (this.flushes.length === 0) return;
    let oldest =
      this.head < this.waiting.length ? (this.waiting[this.head] as Entry).seq : Infinity;
    for (const e of this.inFlight) oldest = Math.min(oldest, e.seq);
    this.flushes = this.flushes.filter((f) => {
      if (f.upTo >= oldest) return true;
      f.resolve();
      return false;
    });
  }
}
