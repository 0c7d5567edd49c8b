// The hub sends what it has for a worker once per turn of the event loop (forwarded writes, then
// answers, on the worker's data channel; a writer's frame passed on as it is): property test that this batched path leaves every replica in the
// same final state as one message per change, however writes of several workers interleave and
// wherever the turns end, and that within a turn a writer's answer never goes out before the
// forward of its write to every other worker.
import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import { MessageType } from '../../src/protocol/messages.js';
import { type Change, SessionTable } from '../../src/replication/table.js';
import { Hub } from '../../src/replication/transports/ipc/hub.js';
import {
  connect,
  type FakeWorker,
  fakeLinks,
  fakeWorker,
  type Sent,
  sendWrite,
  sendWrites,
} from '../helpers/hub-links.js';

const SIDS = ['a', 'b', 'c'];
const LATER = 1_790_000_000_000 + 3_600_000;

interface Sim {
  readonly worker: FakeWorker;
  readonly table: SessionTable;
  /** Every change and answer the hub sent this worker, in order. */
  readonly got: Sent[];
  /** For each of its writes: how many forwards of it the others held when its answer was sent. */
  readonly answeredAfter: Map<number, number>;
}

/** A worker as the hub sees it: applies what it is sent, in order, to its own replica. */
function simWorker(pid: number, all: Sim[]): Sim {
  const table = new SessionTable({ tombstoneTtl: 600_000 });
  const worker = fakeWorker(pid);
  const sim: Sim = { worker, table, got: worker.sent, answeredAfter: new Map() };
  // Each entry as the fake channel decodes it, applied at once.
  const push = worker.sent.push.bind(worker.sent);
  worker.sent.push = (...items: Sent[]) => {
    for (const m of items) {
      push(m);
      if (m.t === MessageType.StoreChange) table.apply(m.change);
      if (m.t === MessageType.StoreState) for (const c of m.changes) table.apply(c);
      if (m.t === MessageType.StoreAck) {
        // The write numbered id: how many of the other workers already hold it.
        const sid = `${pid}:${m.id}`;
        const holders = all.filter(
          (o) =>
            o !== sim &&
            o.got.some((g) => g.t === MessageType.StoreChange && g.change.version.n === sid),
        ).length;
        sim.answeredAfter.set(m.id, holders);
      }
    }
    return worker.sent.length;
  };
  return sim;
}

type Op = {
  w: number;
  sid: number;
  kind: 'set' | 'destroy' | 'touch';
  t: number;
  turnEnds: boolean;
};

const op = fc.record({
  w: fc.integer({ min: 0, max: 2 }),
  sid: fc.integer({ min: 0, max: SIDS.length - 1 }),
  kind: fc.constantFrom('set' as const, 'set' as const, 'destroy' as const, 'touch' as const),
  t: fc.integer({ min: 1, max: 50 }),
  turnEnds: fc.boolean(),
});

/** Runs `ops` through a hub with three workers; `batched`: turns end where the ops say. */
function run(ops: readonly Op[], batched: boolean) {
  // One wall clock for both runs: tombstones expire a fixed time after they are applied.
  vi.useFakeTimers({ toFake: ['Date'], now: 1_790_000_000_000 });
  try {
    return runAt(ops, batched);
  } finally {
    vi.useRealTimers();
  }
}

function runAt(ops: readonly Op[], batched: boolean) {
  const hub = new Hub({ link: fakeLinks });
  const sims: Sim[] = [];
  for (let i = 0; i < 3; i++) sims.push(simWorker(i + 1, sims));
  for (const s of sims) connect(hub, s.worker);
  let turn: { worker: FakeWorker; change: Change; id: number }[] = [];
  const endTurn = () => {
    for (const s of sims) {
      const mine = turn.filter((w) => w.worker === s.worker);
      if (mine.length > 0) sendWrites(s.worker, mine);
    }
    turn = [];
    hub.flush();
  };
  ops.forEach((o, i) => {
    const writer = sims[o.w] as Sim;
    // The version names the write (unique), as a worker's clock would stamp it.
    const version = { t: o.t, c: i, n: `${o.w + 1}:${i + 1}` };
    const sid = SIDS[o.sid] as string;
    const change: Change =
      o.kind === 'set'
        ? { op: 'set', sid, data: `{"i":${i}}`, expiresAt: LATER, version }
        : o.kind === 'touch'
          ? { op: 'touch', sid, expiresAt: LATER + i, version }
          : { op: 'destroy', sid, version };
    // A worker applies its own write first, then sends it.
    writer.table.apply(change);
    if (!batched) {
      sendWrite(writer.worker, change, i + 1);
      hub.flush();
      return;
    }
    // Batched: a worker sends its writes of a turn as one frame at the turn's end.
    turn.push({ worker: writer.worker, change, id: i + 1 });
    if (o.turnEnds) endTurn();
  });
  endTurn();
  hub.flush();
  hub.close();
  // Every session's record, and everything the replica holds (pending touches included: the
  // order it keeps them in is arrival order, which means nothing).
  const state = (t: SessionTable) => ({
    records: SIDS.map((sid) => t.record(sid) ?? null),
    held: [...t.changes()].map((c) => JSON.stringify(c)).sort(),
  });
  return { hub: state(hub.table), workers: sims.map((s) => state(s.table)), sims };
}

describe('the hub, batched per turn', () => {
  it('leaves every replica as one message per change does, whatever the interleaving and turns', () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
        const one = run(ops, false);
        const batched = run(ops, true);
        expect(batched.hub).toEqual(one.hub);
        expect(batched.workers).toEqual(one.workers);
        // And the replicas agree with the hub's.
        for (const w of batched.workers) expect(w).toEqual(batched.hub);
      }),
      { numRuns: 300 },
    );
  });

  it("sends a writer's answer only once every other worker holds the write", () => {
    fc.assert(
      fc.property(fc.array(op, { minLength: 1, maxLength: 40 }), (ops) => {
        const { sims } = run(ops, true);
        for (const s of sims) {
          for (const [id, holders] of s.answeredAfter) {
            // A write the hub applied reached both other workers before its answer was sent;
            // one it did not apply (older than its record) reached nobody.
            const applied = sims.some(
              (o) =>
                o !== s &&
                o.got.some(
                  (g) =>
                    g.t === MessageType.StoreChange &&
                    g.change.version.n === `${s.worker.process.pid}:${id}`,
                ),
            );
            expect(holders).toBe(applied ? 2 : 0);
          }
        }
      }),
      { numRuns: 300 },
    );
  });
});
