import type { Worker } from 'node:cluster';

/**
 * How far the primary's hub has written each worker's store data channel, for the connection
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
