// The Redis transport's write queue on its own, against a stub link whose answers a test
// controls: whatever the order of writes, answers, failures and link changes, what it holds
// (in flight included) stays within maxQueue and maxQueueBytes, at most MAX_IN_FLIGHT writes
// are unanswered, and every write is accounted for: answered, dropped (counted) or still held.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Change } from '../../src/replication/table.js';
import {
  MAX_IN_FLIGHT,
  WriteQueue,
  writeBytes,
} from '../../src/replication/transports/redis/queue.js';

interface Sent {
  change: Change;
  resolve(): void;
  reject(err: Error): void;
}

function harness(maxQueue: number, maxQueueBytes: number) {
  const link = { up: true, sent: [] as Sent[], answered: [] as Change[], dropped: 0, drained: 0 };
  const queue = new WriteQueue({
    maxQueue,
    maxQueueBytes,
    send: (change) =>
      new Promise<void>((resolve, reject) => {
        link.sent.push({
          change,
          resolve: () => {
            link.answered.push(change);
            resolve();
          },
          reject,
        });
      }),
    canSend: () => link.up,
    onDrop: () => {
      link.dropped++;
    },
    onDrained: () => {
      link.drained++;
    },
  });
  return { link, queue };
}

const change = (i: number, kib: number): Change => ({
  op: 'set',
  sid: `s${i}`,
  data: 'x'.repeat(kib * 1024),
  expiresAt: 1,
  version: { t: i, c: 0, n: 'aaaa' },
});

const settle = () => new Promise((r) => setImmediate(r));

describe('the Redis write queue', () => {
  it('holds within its bounds, sends at most MAX_IN_FLIGHT, and accounts for every write (fast-check)', async () => {
    const step = fc.oneof(
      {
        weight: 4,
        arbitrary: fc.record({
          k: fc.constant('write' as const),
          n: fc.integer({ min: 1, max: 100 }),
          kib: fc.constantFrom(0, 1, 5, 40),
        }),
      },
      {
        weight: 2,
        arbitrary: fc.record({
          k: fc.constant('answer' as const),
          n: fc.integer({ min: 1, max: 80 }),
        }),
      },
      {
        weight: 1,
        arbitrary: fc.record({
          k: fc.constant('fail' as const),
          n: fc.integer({ min: 1, max: 5 }),
        }),
      },
      { weight: 1, arbitrary: fc.record({ k: fc.constant('link' as const), up: fc.boolean() }) },
      { weight: 1, arbitrary: fc.constant({ k: 'flush' as const }) },
    );
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom(0, 1, 2, 10, 64, 65, 100, 1000),
        fc.constantFrom(0, 1024, 64 * 1024, 1024 * 1024, 1 << 30),
        fc.array(step, { maxLength: 60 }),
        async (maxQueue, maxQueueBytes, steps) => {
          const { link, queue } = harness(maxQueue, maxQueueBytes);
          let written = 0;
          for (const s of steps) {
            if (s.k === 'write') {
              for (let i = 0; i < s.n; i++) queue.push(change(written++, s.kib));
            } else if (s.k === 'answer') {
              for (const w of link.sent.splice(0, s.n)) w.resolve();
            } else if (s.k === 'fail') {
              for (const w of link.sent.splice(0, s.n)) w.reject(new Error('lost'));
            } else if (s.k === 'link') {
              link.up = s.up;
            } else {
              queue.flush().catch(() => {});
            }
            await settle();
            // One write alone may exceed the bounds (sent while reachable), never two.
            if (queue.length > 1) {
              expect(queue.length).toBeLessThanOrEqual(maxQueue);
              expect(queue.bytes).toBeLessThanOrEqual(maxQueueBytes);
            }
            expect(link.sent.length).toBeLessThanOrEqual(MAX_IN_FLIGHT);
            expect(link.sent.length).toBeLessThanOrEqual(queue.length);
            expect(new Set(link.answered).size).toBe(link.answered.length);
            expect(link.answered.length + link.dropped + queue.length).toBe(written);
          }
          // The link comes back and answers everything: nothing stays held.
          link.up = true;
          const flushed = queue.flush();
          for (let i = 0; i < 500 && (link.sent.length > 0 || queue.length > 0); i++) {
            for (const w of link.sent.splice(0)) w.resolve();
            await settle();
          }
          await flushed;
          expect(queue.length).toBe(0);
          expect(queue.bytes).toBe(0);
          expect(link.answered.length + link.dropped).toBe(written);
        },
      ),
      { numRuns: 300 },
    );
  });

  it('drops the oldest waiting write first, and never one in flight', async () => {
    const { link, queue } = harness(MAX_IN_FLIGHT + 2, 1 << 30);
    for (let i = 0; i < MAX_IN_FLIGHT + 5; i++) queue.push(change(i, 0));
    expect(link.sent).toHaveLength(MAX_IN_FLIGHT);
    expect(link.dropped).toBe(3);
    for (const w of link.sent.splice(0)) w.resolve();
    await settle();
    // The waiting ones left are the newest two.
    expect(link.sent.map((w) => w.change.sid)).toEqual([
      `s${MAX_IN_FLIGHT + 3}`,
      `s${MAX_IN_FLIGHT + 4}`,
    ]);
  });

  it('counts a write as its session JSON plus a fixed overhead', () => {
    expect(writeBytes(change(1, 10)) - writeBytes(change(1, 0))).toBe(10 * 1024);
    expect(writeBytes({ op: 'destroy', sid: 's1', version: { t: 1, c: 0, n: 'a' } })).toBe(
      writeBytes(change(1, 0)),
    );
  });

  it('a flush resolves once every write held when it was asked for is answered, not later ones', async () => {
    const { link, queue } = harness(100, 1 << 30);
    queue.push(change(1, 0));
    let flushed = false;
    void queue.flush().then(() => {
      flushed = true;
    });
    queue.push(change(2, 0));
    await settle();
    link.sent[0]?.resolve();
    link.sent.splice(0, 1);
    await settle();
    expect(flushed).toBe(true);
    expect(queue.length).toBe(1);
  });
});
