// Read on miss, the machine side (src/replication/miss.ts): a bounded wait for a record that
// has not arrived yet, one wait per id however many reads ask, and unknown ids remembered.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { Clock } from '../../src/replication/clock.js';
import { MissLookups, UNKNOWN_TTL } from '../../src/replication/miss.js';
import { type Change, SessionTable } from '../../src/replication/table.js';

const ASK_ONCE = { askEvery: 0, rememberSilence: true };

let now = 1_000_000;
let table: SessionTable;
let clock: Clock;

beforeEach(() => {
  vi.useFakeTimers();
  now = 1_000_000;
  table = new SessionTable({ tombstoneTtl: 600_000, now: () => now });
  clock = new Clock('a1b2c3d4e5f60718', () => now);
});
afterEach(() => vi.useRealTimers());

function login(sid: string): Change {
  return { op: 'set', sid, data: '{"user":"ann"}', expiresAt: now + 60_000, version: clock.tick() };
}

/** Whether a promise has settled (after pending microtasks ran). */
async function settled(p: Promise<unknown>): Promise<boolean> {
  let done = false;
  void p.then(() => {
    done = true;
  });
  await vi.advanceTimersByTimeAsync(0);
  return done;
}

describe('MissLookups', () => {
  it('a read waits until the record arrives, then goes on at once', async () => {
    const misses = new MissLookups(table, 500, () => now);
    const ask = vi.fn();
    const read = misses.lookup('sid-arrives-1', ask, ASK_ONCE);
    expect(ask).toHaveBeenCalledTimes(1);
    await vi.advanceTimersByTimeAsync(100);
    expect(await settled(read)).toBe(false);
    const change = login('sid-arrives-1');
    table.apply(change);
    misses.arrived([change]);
    expect(await settled(read)).toBe(true);
    expect(misses.counters).toEqual({ asked: 1, found: 1, unknown: 0, cached: 0 });
  });

  it('a record held already (a tombstone too) asks nobody', async () => {
    const misses = new MissLookups(table, 500, () => now);
    table.apply({ op: 'destroy', sid: 'sid-gone-123', version: clock.tick() });
    const ask = vi.fn();
    expect(await settled(misses.lookup('sid-gone-123', ask, ASK_ONCE))).toBe(true);
    expect(ask).not.toHaveBeenCalled();
  });

  it('reads of one id share one wait and one question', async () => {
    const misses = new MissLookups(table, 500, () => now);
    const ask = vi.fn();
    const a = misses.lookup('sid-shared-1', ask, ASK_ONCE);
    const b = misses.lookup('sid-shared-1', ask, ASK_ONCE);
    expect(a).toBe(b);
    expect(ask).toHaveBeenCalledTimes(1);
  });

  it('asks again every askEvery while it waits, and stops when the wait is over', async () => {
    const misses = new MissLookups(table, 500, () => now);
    const ask = vi.fn();
    const read = misses.lookup('sid-lossy-12', ask, { askEvery: 100, rememberSilence: true });
    await vi.advanceTimersByTimeAsync(450);
    expect(ask).toHaveBeenCalledTimes(5);
    await vi.advanceTimersByTimeAsync(50);
    expect(await settled(read)).toBe(true);
    await vi.advanceTimersByTimeAsync(1000);
    expect(ask).toHaveBeenCalledTimes(5);
  });

  it('an id nobody answered for is remembered for UNKNOWN_TTL: later reads do not wait', async () => {
    const misses = new MissLookups(table, 500, () => now);
    const ask = vi.fn();
    const first = misses.lookup('sid-unknown1', ask, ASK_ONCE);
    await vi.advanceTimersByTimeAsync(500);
    expect(await settled(first)).toBe(true);
    expect(await settled(misses.lookup('sid-unknown1', ask, ASK_ONCE))).toBe(true);
    expect(ask).toHaveBeenCalledTimes(1);
    expect(misses.counters).toEqual({ asked: 1, found: 0, unknown: 1, cached: 1 });
    // Once forgotten, it is asked for again.
    now += UNKNOWN_TTL + 1;
    void misses.lookup('sid-unknown1', ask, ASK_ONCE);
    expect(ask).toHaveBeenCalledTimes(2);
  });

  it('silence is not remembered when the caller says so; an explicit "not found" is', async () => {
    const misses = new MissLookups(table, 500, () => now);
    const ask = vi.fn();
    void misses.lookup('sid-silent-1', ask, { askEvery: 0, rememberSilence: false });
    await vi.advanceTimersByTimeAsync(500);
    void misses.lookup('sid-silent-1', ask, { askEvery: 0, rememberSilence: false });
    expect(ask).toHaveBeenCalledTimes(2);
    misses.notFound('sid-silent-1');
    expect(await settled(misses.lookup('sid-silent-1', ask, ASK_ONCE))).toBe(true);
    expect(ask).toHaveBeenCalledTimes(2);
  });

  it('a wait of 0 turns it off; close() lets every waiting read go on', async () => {
    const off = new MissLookups(table, 0, () => now);
    const ask = vi.fn();
    expect(await settled(off.lookup('sid-off-1234', ask, ASK_ONCE))).toBe(true);
    expect(ask).not.toHaveBeenCalled();
    const misses = new MissLookups(table, 60_000, () => now);
    const read = misses.lookup('sid-closing1', ask, ASK_ONCE);
    misses.close();
    expect(await settled(read)).toBe(true);
  });
});
