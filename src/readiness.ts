import type { AddressInfo } from 'node:net';
import { StickyMeshError } from './errors.js';

type Outcome = { ok: true; address: AddressInfo } | { ok: false; error: Error };

/**
 * The promise `ready()` returns, in either role: made when first asked for, settled once. An
 * outcome that comes before anyone asked is kept for the first call, so a startup failure nobody
 * awaits never becomes an unhandled rejection.
 */
export class Readiness {
  private outcome: Outcome | undefined;
  private waiting: { resolve: (a: AddressInfo) => void; reject: (e: Error) => void } | undefined;
  private promise: Promise<AddressInfo> | undefined;
  private readonly onSettle: (() => void)[] = [];

  get settled(): boolean {
    return this.outcome !== undefined;
  }

  wait(): Promise<AddressInfo> {
    this.promise ??= new Promise<AddressInfo>((resolve, reject) => {
      if (this.outcome === undefined) this.waiting = { resolve, reject };
      else if (this.outcome.ok) resolve(this.outcome.address);
      else reject(this.outcome.error);
    });
    return this.promise;
  }

  /** Runs `fn` once settled (at once if it is). */
  whenSettled(fn: () => void): void {
    if (this.outcome) fn();
    else this.onSettle.push(fn);
  }

  resolve(address: AddressInfo): void {
    this.settle({ ok: true, address });
  }

  reject(error: Error): void {
    this.settle({ ok: false, error });
  }

  private settle(outcome: Outcome): void {
    if (this.outcome) return;
    this.outcome = outcome;
    if (outcome.ok) this.waiting?.resolve(outcome.address);
    else this.waiting?.reject(outcome.error);
    this.waiting = undefined;
    for (const fn of this.onSettle.splice(0)) fn();
  }
}

/** `ready()`'s rejection when the primary or the worker closes before it was ready. */
export function closedBeforeReady(role: 'primary' | 'worker'): StickyMeshError {
  return new StickyMeshError(
    'ERR_STICKY_CLOSED',
    `sticky-mesh: the ${role} closed before it was ready`,
  );
}
