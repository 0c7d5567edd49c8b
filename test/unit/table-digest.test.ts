// The digest's per-record hash is computed without building its string (table.ts entryHash):
// it must equal hashKey of `${sid}|${t}|${c}|${n}|${expiry}`, the value replicas of other
// versions compute, or two replicas holding the same records would look apart.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { hashKey } from '../../src/hash.js';
import { SessionTable } from '../../src/replication/table.js';

describe('the table digest', () => {
  it("is the XOR of hashKey over each record's id, version and expiry, as its string", () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.record({
            sid: fc.string({ minLength: 1, maxLength: 40, unit: 'binary' }),
            t: fc.integer({ min: 1, max: 2 ** 48 - 1 }),
            c: fc.integer({ min: 0, max: 2 ** 32 - 1 }),
            n: fc.string({ minLength: 1, maxLength: 16 }),
            expiresAt: fc.integer({ min: 0, max: Number.MAX_SAFE_INTEGER }),
            destroy: fc.boolean(),
          }),
          { maxLength: 20 },
        ),
        (records) => {
          const table = new SessionTable({ tombstoneTtl: 1000, now: () => 0 });
          let expected = 0;
          const seen = new Set<string>();
          for (const r of records) {
            if (seen.has(r.sid)) continue;
            seen.add(r.sid);
            const version = { t: r.t, c: r.c, n: r.n };
            table.apply(
              r.destroy
                ? { op: 'destroy', sid: r.sid, version }
                : { op: 'set', sid: r.sid, data: '{}', expiresAt: r.expiresAt, version },
            );
            const e = r.destroy ? -1 : r.expiresAt;
            expected ^= hashKey(`${r.sid}|${r.t}|${r.c}|${r.n}|${e}`, 0x7ab1e);
          }
          expect(table.digest).toBe(expected >>> 0);
        },
      ),
      { numRuns: 500 },
    );
  });
});
