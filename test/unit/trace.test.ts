// NODE_DEBUG=sticky-mesh's per-connection lines are rate-limited per kind (src/debug.ts): usable
// under load, with what was left out counted.
import { format } from 'node:util';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { rateLimited, trace } from '../../src/debug.js';

describe('rateLimited', () => {
  beforeEach(() => vi.useFakeTimers({ now: 1_000_000 }));
  afterEach(() => vi.useRealTimers());

  function collect() {
    const lines: string[] = [];
    return { lines, write: (f: string, ...args: unknown[]) => lines.push(format(f, ...args)) };
  }

  it('writes the first lines of a second with their kind, then says how many it left out', () => {
    const { lines, write } = collect();
    const route = rateLimited('route', write, 3);
    for (let i = 0; i < 10; i++) route('%s -> slot %d', `10.0.0.${i}`, i % 2);
    expect(lines).toEqual([
      'route: 10.0.0.0 -> slot 0',
      'route: 10.0.0.1 -> slot 1',
      'route: 10.0.0.2 -> slot 0',
    ]);
    vi.advanceTimersByTime(1000);
    expect(lines.slice(3)).toEqual(['route: 7 more lines left out in the last second']);
    route('after');
    expect(lines.at(-1)).toBe('route: after');
  });

  it('2,000 calls over 2 s write a bounded number of lines', () => {
    const { lines, write } = collect();
    const trace = rateLimited('handoff', write, 20);
    for (let i = 0; i < 2000; i++) {
      trace('n %d', i);
      vi.advanceTimersByTime(1);
    }
    vi.advanceTimersByTime(1000);
    // 20 a second, plus one summary a second.
    expect(lines.length).toBeLessThanOrEqual(3 * 21);
    const left = lines
      .map((l) => /(\d+) more lines left out/.exec(l)?.[1])
      .filter((n) => n !== undefined)
      .reduce((sum, n) => sum + Number(n), 0);
    expect(left + lines.filter((l) => l.startsWith('handoff: n ')).length).toBe(2000);
  });

  it('kinds are limited apart: a flood of one leaves the others their lines', () => {
    const { lines, write } = collect();
    const route = rateLimited('route', write, 2);
    const life = rateLimited('lifecycle', write, 2);
    for (let i = 0; i < 100; i++) route('r');
    life('slot 0: forked pid 1');
    expect(lines).toEqual(['route: r', 'route: r', 'lifecycle: slot 0: forked pid 1']);
  });

  it('writes no summary when nothing was left out', () => {
    const { lines, write } = collect();
    const route = rateLimited('route', write, 5);
    route('one');
    vi.advanceTimersByTime(5000);
    expect(lines).toEqual(['route: one']);
  });
});

describe('trace', () => {
  it.skipIf(/sticky-mesh/i.test(process.env.NODE_DEBUG ?? ''))(
    'is undefined for every kind without NODE_DEBUG=sticky-mesh: call sites evaluate nothing',
    () => {
      expect(trace).toEqual({
        route: undefined,
        handoff: undefined,
        lifecycle: undefined,
        request: undefined,
      });
    },
  );
});
