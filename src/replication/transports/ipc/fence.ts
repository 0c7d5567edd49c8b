import type { Worker } from 'node:cluster';
import { debug } from '../../../debug.js';

/**
 * Fences: how far the primary's hub has written each worker's store data channel, for the connection
 * handoffs: a connection handed to a worker carries that position (its fence) so the worker
 * serves it only once it has applied every change written before it. Kept beside the worker
 * object, so the handoff code needs no reference to the hub.
 */
const fences = new WeakMap<Worker, () => number>();

/** Sets (or, with `undefined`, clears) how `worker`'s fence is read. */
export function setFence(worker: Worker, read: (() => number) | undefined): void {
  if (read) fences.set(worker, read);
  else fences.delete(worker);
}

/** The fence of a connection handed to `worker` now (0: nothing to wait for). */
export function fenceOf(worker: Worker): number {
  return fences.get(worker)?.() ?? 0;
}

interface Fenced {
  fence: number;
  run: () => void;
  at: number;
}

/**
 * A worker's side: connections handed to it (or relayed to it), each waiting until its fence is
 * reached (`reached`), run in the order they came; one that waited `maxWaitMs` runs anyway
 * (logged), so a primary that never sends the state stalls nothing forever.
 */
export class FenceQueue {
  private readonly waiting: Fenced[] = [];
  private timer: NodeJS.Timeout | undefined;

  constructor(
    private readonly reached: (fence: number) => boolean,
    private readonly maxWaitMs: number,
  ) {}

  add(fence: number, run: () => void): void {
    if (this.waiting.length === 0 && this.reached(fence)) {
      run();
      return;
    }
    this.waiting.push({ fence, run, at: Date.now() });
    if (!this.timer) this.arm(this.maxWaitMs);
  }

  /** Runs what may run now (the channel moved on, the state arrived, or it closed). */
  release(): void {
    while (this.waiting.length > 0) {
      const first = this.waiting[0] as Fenced;
      if (!this.reached(first.fence)) return;
      this.waiting.shift();
      first.run();
    }
    clearTimeout(this.timer);
    this.timer = undefined;
  }

  private arm(ms: number): void {
    this.timer = setTimeout(() => this.releaseStale(), ms);
    this.timer.unref();
  }

  private releaseStale(): void {
    this.timer = undefined;
    const due = Date.now() - this.maxWaitMs;
    while (this.waiting.length > 0 && (this.waiting[0] as Fenced).at <= due) {
      debug('store: no session state from the primary in %d ms; serving', this.maxWaitMs);
      (this.waiting.shift() as Fenced).run();
    }
    const first = this.waiting[0];
    if (first) this.arm(first.at - due);
  }
}
