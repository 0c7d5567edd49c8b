import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { Clock, compareVersions, isVersion, type Version } from '../../src/replication/clock.js';
import { type Change, SessionTable } from '../../src/replication/table.js';
import { shuffled } from '../helpers/shuffle.js';

const TTL = 60_000;

/** A simulated node: its table, its clock, and the time it believes it is. */
function node(id: string, time: { now: number }) {
  const now = () => time.now;
  return { id, clock: new Clock(id, now), table: new SessionTable({ tombstoneTtl: TTL, now }) };
}

/** `by` writes `data` to session `sid`, expiring at `expiresAt`, at its clock's next version. */
function write(by: ReturnType<typeof node>, sid: string, data: string, expiresAt: number): Change {
  return { op: 'set', sid, data, expiresAt, version: by.clock.tick() };
}

/** Everything a table would serve or replicate, in a comparable form. */
function state(table: SessionTable) {
  return [...table.changes()]
    .map((c) => JSON.stringify(c))
    .sort()
    .join('\n');
}

describe('hybrid logical clock', () => {
  it('never goes back, even when the wall clock does', () => {
    const time = { now: 1_000 };
    const clock = new Clock('a', () => time.now);
    const seen: Version[] = [];
    for (const t of [1_000, 1_000, 999, 500, 1_001, 1_001]) {
      time.now = t;
      seen.push(clock.tick());
    }
    for (let i = 1; i < seen.length; i++) {
      expect(compareVersions(seen[i] as Version, seen[i - 1] as Version)).toBeGreaterThan(0);
    }
  });

  it('orders a write after every version it has observed', () => {
    const time = { now: 1_000 };
    const clock = new Clock('b', () => time.now);
    clock.observe({ t: 5_000, c: 7, n: 'a' });
    expect(compareVersions(clock.tick(), { t: 5_000, c: 7, n: 'a' })).toBeGreaterThan(0);
  });

  it('does not follow a remote clock that is far ahead', () => {
    const time = { now: 1_000 };
    const clock = new Clock('b', () => time.now, 60_000);
    clock.observe({ t: 10_000_000, c: 0, n: 'a' });
    expect(clock.tick().t).toBe(1_000);
  });

  it('recognises well-formed versions and nothing else', () => {
    expect(isVersion({ t: 1, c: 0, n: 'x' })).toBe(true);
    for (const bad of [
      null,
      1,
      {},
      { t: -1, c: 0, n: 'x' },
      { t: 1, c: 0.5, n: 'x' },
      { t: 1, c: 0, n: '' },
    ]) {
      expect(isVersion(bad)).toBe(false);
    }
  });
});

describe('session table: last writer wins, tombstones, touch, expiry', () => {
  it('keeps the newest of concurrent writes on every replica, whatever the arrival order', () => {
    const time = { now: 10_000 };
    const a = node('a', time);
    const b = node('b', time);
    const fromA = write(a, 's', '{"v":"a"}', 20_000);
    const fromB = write(b, 's', '{"v":"b"}', 20_000);
    a.table.apply(fromA);
    a.table.apply(fromB);
    b.table.apply(fromB);
    b.table.apply(fromA);
    // Same wall-clock ms and counter: the node id decides, the same way on both.
    expect(a.table.get('s')).toBe('{"v":"b"}');
    expect(state(a.table)).toBe(state(b.table));
  });

  it('lets a tombstone beat a late write of the session it ended', () => {
    const time = { now: 10_000 };
    const a = node('a', time);
    const login = write(a, 's', '{"user":1}', 99_000);
    const save = write(a, 's', '{"user":1,"n":2}', 99_000);
    const logout: Change = { op: 'destroy', sid: 's', version: a.clock.tick() };
    const replica = node('r', time).table;
    replica.apply(login);
    replica.apply(logout);
    expect(replica.apply(save)).toBe(false);
    expect(replica.get('s')).toBeUndefined();
  });

  it('touch raises the expiry, never rewrites data, and never revives a destroyed session', () => {
    const time = { now: 10_000 };
    const a = node('a', time);
    const t = a.table;
    t.apply(write(a, 's', '{"x":1}', 20_000));
    t.apply({ op: 'touch', sid: 's', expiresAt: 50_000, version: a.clock.tick() });
    t.apply({ op: 'touch', sid: 's', expiresAt: 30_000, version: a.clock.tick() });
    time.now = 40_000;
    expect(t.get('s')).toBe('{"x":1}');
    t.apply({ op: 'destroy', sid: 's', version: a.clock.tick() });
    t.apply({ op: 'touch', sid: 's', expiresAt: 90_000, version: a.clock.tick() });
    expect(t.get('s')).toBeUndefined();
  });

  it('gives the same expiry whether a touch arrives before or after the write it follows', () => {
    const time = { now: 10_000 };
    const a = node('a', time);
    const set = write(a, 's', '{}', 20_000);
    const touch: Change = { op: 'touch', sid: 's', expiresAt: 60_000, version: a.clock.tick() };
    const first = node('x', time).table;
    const second = node('y', time).table;
    first.apply(set);
    first.apply(touch);
    second.apply(touch);
    second.apply(set);
    expect(first.record('s')?.expiresAt).toBe(60_000);
    expect(second.record('s')?.expiresAt).toBe(60_000);
  });

  it('never serves an expired session, and forgets it and its tombstone after tombstoneTtl', () => {
    const time = { now: 10_000 };
    const a = node('a', time);
    a.table.apply(write(a, 'old', '{}', 11_000));
    a.table.apply(write(a, 'gone', '{}', 99_000_000));
    a.table.apply({ op: 'destroy', sid: 'gone', version: a.clock.tick() });
    time.now = 11_000;
    expect(a.table.get('old')).toBeUndefined();
    expect([...a.table.live()]).toEqual([]);
    expect(a.table.sweep()).toBe(0);
    time.now = 11_000 + TTL + 1;
    expect(a.table.sweep()).toBe(2);
    expect(a.table.size).toBe(0);
  });

  it('applies duplicates once', () => {
    const time = { now: 10_000 };
    const a = node('a', time);
    const set = write(a, 's', '{}', 20_000);
    expect(a.table.apply(set)).toBe(true);
    expect(a.table.apply(set)).toBe(false);
  });
});

describe('three replicas converge', () => {
  /** One write: node index, wall-clock step, and what it does. */
  const op = fc.record({
    node: fc.integer({ min: 0, max: 2 }),
    step: fc.integer({ min: 0, max: 3 }),
    sid: fc.constantFrom('s1', 's2', 's3'),
    kind: fc.constantFrom('set', 'set', 'destroy', 'touch'),
    ttl: fc.integer({ min: 1_000, max: 100_000 }),
    value: fc.integer({ min: 0, max: 9 }),
  });

  it('reach identical state under any delivery order, with duplicates', () => {
    fc.assert(
      fc.property(
        fc.array(op, { minLength: 1, maxLength: 40 }),
        fc.array(fc.nat(), { minLength: 3, maxLength: 3 }),
        fc.array(fc.boolean(), { minLength: 1, maxLength: 40 }),
        (ops, seeds, dup) => {
          const time = { now: 1_000_000 };
          const nodes = [node('n0', time), node('n1', time), node('n2', time)];
          const log: Change[] = [];
          for (const o of ops) {
            time.now += o.step;
            const writer = nodes[o.node] as (typeof nodes)[number];
            const version = writer.clock.tick();
            const change: Change =
              o.kind === 'set'
                ? {
                    op: 'set',
                    sid: o.sid,
                    data: `{"v":${o.value}}`,
                    expiresAt: time.now + o.ttl,
                    version,
                  }
                : o.kind === 'touch'
                  ? { op: 'touch', sid: o.sid, expiresAt: time.now + o.ttl, version }
                  : { op: 'destroy', sid: o.sid, version };
            writer.table.apply(change);
            log.push(change);
          }
          // Each replica receives every change (its own again too) in its own shuffled order.
          nodes.forEach((n, i) => {
            const order = shuffled(log, seeds[i] ?? 0);
            for (const [k, c] of order.entries()) {
              n.table.apply(c);
              if (dup[k % dup.length]) n.table.apply(c);
            }
          });
          const [first, ...rest] = nodes.map((n) => n.table);
          for (const t of rest) {
            expect([...(t as SessionTable).live()].sort()).toEqual(
              [...(first as SessionTable).live()].sort(),
            );
            for (const sid of ['s1', 's2', 's3']) {
              expect(t?.record(sid)?.data).toEqual(first?.record(sid)?.data);
              expect(t?.record(sid)?.version).toEqual(first?.record(sid)?.version);
              if (first?.record(sid)?.data) {
                expect(t?.record(sid)?.expiresAt).toBe(first?.record(sid)?.expiresAt);
              }
            }
          }
        },
      ),
      { numRuns: 300 },
    );
  });
});

describe('session count and size', () => {
  const step = fc.record({
    sid: fc.constantFrom('s1', 's2', 's3', 's4'),
    kind: fc.constantFrom('set', 'set', 'destroy', 'touch', 'sweep', 'forget', 'stale'),
    data: fc.string({ maxLength: 20 }),
    advance: fc.integer({ min: 0, max: 2 * TTL }),
  });

  it('are what the records hold after any mix of writes, sweeps and forgets', () => {
    fc.assert(
      fc.property(fc.array(step, { minLength: 1, maxLength: 60 }), (steps) => {
        const time = { now: 1_000_000 };
        const a = node('a', time);
        let stale: Change | undefined;
        for (const s of steps) {
          time.now += s.advance;
          if (s.kind === 'sweep') a.table.sweep();
          else if (s.kind === 'forget') a.table.forget(s.sid);
          else if (s.kind === 'stale') {
            if (stale) a.table.apply(stale);
          } else {
            const version = a.clock.tick();
            const change: Change =
              s.kind === 'set'
                ? { op: 'set', sid: s.sid, data: s.data, expiresAt: time.now + TTL, version }
                : s.kind === 'touch'
                  ? { op: 'touch', sid: s.sid, expiresAt: time.now + 2 * TTL, version }
                  : { op: 'destroy', sid: s.sid, version };
            a.table.apply(change);
            stale ??= change;
          }
          const held = ['s1', 's2', 's3', 's4']
            .map((sid) => a.table.record(sid)?.data)
            .filter((d): d is string => typeof d === 'string');
          expect(a.table.sessions).toBe(held.length);
          expect(a.table.dataLength).toBe(held.reduce((n, d) => n + d.length, 0));
        }
      }),
    );
  });
});
