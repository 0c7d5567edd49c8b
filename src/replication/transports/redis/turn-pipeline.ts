import type { RedisClientLike } from './options.js';
import { runApply, runApplyBatch } from './script.js';

/** A Lua write waiting for its turn's pipeline. */
interface PendingApply {
  readonly args: (string | number)[];
  resolve(applied: number): void;
  reject(err: Error): void;
}

/**
 * The transport's Lua writes, sent once per turn of the event loop: the writes made while one
 * piece of synchronous work runs (the hub applying a batch of changes, the write queue refilling
 * its window as a read brings several answers) go out together in one pipeline, one write to
 * the socket instead of one each, in the order they were made, each answered on its own. A lone
 * write goes as a plain command. Sending waits only for the current synchronous work to end (a
 * microtask), never for a timer.
 */
export class TurnPipeline {
  private outgoing: PendingApply[] | undefined;

  /** `cmd`: the command connection at the time of sending. */
  constructor(private readonly cmd: () => RedisClientLike) {}

  /** Runs the Lua write with `args` (applyArgs): 1 if applied, 0 if Redis held a newer one. */
  apply(args: (string | number)[]): Promise<number> {
    return new Promise((resolve, reject) => {
      if (this.outgoing === undefined) {
        this.outgoing = [];
        queueMicrotask(() => this.send());
      }
      this.outgoing.push({ args, resolve, reject });
    });
  }

  private send(): void {
    const batch = this.outgoing ?? [];
    this.outgoing = undefined;
    const only = batch[0];
    if (batch.length === 1 && only) {
      runApply(this.cmd(), only.args).then(only.resolve, only.reject);
      return;
    }
    if (batch.length === 0) return;
    runApplyBatch(
      this.cmd(),
      batch.map((p) => p.args),
    ).then(
      (results) =>
        results.forEach(([err, applied], i) => {
          const p = batch[i] as PendingApply;
          if (err) p.reject(err);
          else p.resolve(Number(applied));
        }),
      (err: Error) => {
        for (const p of batch) p.reject(err);
      },
    );
  }
}
