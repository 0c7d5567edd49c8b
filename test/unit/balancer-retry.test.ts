// A connection a worker could not take is routed again, never back to the worker that failed it
// but to that slot's next worker (issue 14, item 6: the failed slots were remembered for the
// connection's life, so with one slot a failed handoff closed the connection instead of waiting
// for the replacement, and a connection never went back to a slot that once failed).
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it } from 'vitest';
import { Balancer } from '../../src/master/balancer.js';
import type { RawHandle } from '../../src/node-internals.js';
import { resolveOptions } from '../../src/options.js';

/** A raw handle that only records whether it was closed. */
function fakeHandle(): RawHandle & { closed: boolean } {
  return {
    closed: false,
    getpeername(out: { address?: string }) {
      out.address = '192.0.2.7';
      return 0;
    },
    close() {
      this.closed = true;
    },
    readStop: () => 0,
    readStart: () => 0,
  };
}

/** The worker pool as the balancer sees it: ready slots, their generation, their handoffs. */
class FakePool extends EventEmitter {
  live: number[] = [];
  generations = new Map<number, number>();
  sent: { slot: number; handle: RawHandle }[] = [];
  generation(slot: number): number {
    return this.generations.get(slot) ?? 0;
  }
  handoff(slot: number) {
    if (!this.live.includes(slot)) return undefined;
    return {
      queued: 0,
      send: (handle: RawHandle, _head: unknown, _peer: unknown, onSent: () => void) => {
        this.sent.push({ slot, handle });
        onSent();
      },
    };
  }
  overQueued(): boolean {
    return false;
  }
  countConnection(): void {}
  unresponsive(): void {}
  /** The slot's worker is replaced by a new one, which becomes ready. */
  replace(slot: number): void {
    this.live = this.live.filter((s) => s !== slot);
    this.emit('change');
    this.generations.set(slot, this.generation(slot) + 1);
    this.live = [...this.live, slot].sort();
    this.emit('change');
  }
}

const balancers: Balancer[] = [];
afterEach(() => {
  for (const b of balancers.splice(0)) b.close();
});

function setup(num: number): { pool: FakePool; balancer: Balancer } {
  const pool = new FakePool();
  pool.live = Array.from({ length: num }, (_, i) => i);
  const options = resolveOptions({ num, pendingTimeout: 60_000 });
  // The first live slot: what matters here is which slots are live.
  const balancer = new Balancer(options, pool as never, (_key, live) => live[0]);
  balancers.push(balancer);
  return { pool, balancer };
}

describe('a connection its worker could not take', () => {
  it('with one slot, waits for the replacement worker instead of being closed', () => {
    const { pool, balancer } = setup(1);
    const handle = fakeHandle();
    pool.emit('returned', handle, 0);
    // Not back to the worker that failed it, and not closed either: held.
    expect(handle.closed).toBe(false);
    expect(pool.sent).toEqual([]);
    expect(balancer.counters.rerouted).toBe(1);
    pool.replace(0);
    expect(pool.sent).toEqual([{ slot: 0, handle }]);
    expect(handle.closed).toBe(false);
  });

  it('goes to another slot meanwhile, and may return to the failed slot once its worker is replaced', () => {
    const { pool } = setup(2);
    const handle = fakeHandle();
    pool.emit('returned', handle, 0);
    expect(pool.sent).toEqual([{ slot: 1, handle }]);
    // Slot 1 fails it too; slot 0 still has the same worker: held, not closed.
    pool.emit('returned', handle, 1);
    expect(pool.sent).toHaveLength(1);
    expect(handle.closed).toBe(false);
    // Slot 0's worker is replaced: the connection goes there.
    pool.replace(0);
    expect(pool.sent).toEqual([
      { slot: 1, handle },
      { slot: 0, handle },
    ]);
  });
});
