import { describe, expect, it } from 'vitest';
import { respawnDelay } from '../../src/master/backoff.js';

describe('respawnDelay', () => {
  it('starts at the base delay and doubles per crash in a row, capped at the maximum', () => {
    expect([1, 2, 3, 4, 5, 6, 7, 8].map((n) => respawnDelay(n, 100, 3000))).toEqual([
      100, 200, 400, 800, 1600, 3000, 3000, 3000,
    ]);
  });

  it('never overflows for long crash loops', () => {
    expect(respawnDelay(10_000, 100, 30_000)).toBe(30_000);
  });

  it('is zero when the base is zero', () => {
    expect(respawnDelay(5, 0, 1000)).toBe(0);
  });
});
