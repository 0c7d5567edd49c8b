import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import type { Version } from '../../src/replication/clock.js';
import { LIMITS, MAX_CHANGE_OVERHEAD } from '../../src/replication/limits.js';
import type { Change } from '../../src/replication/table.js';
import {
  decodeChange,
  decodeChanges,
  decodeMessage,
  decodeSyncFrame,
  encodeChange,
  encodeMessage,
  encodeSyncFrame,
  isNodeId,
  Kind,
  MAX_SEQ,
  type MeshMessage,
  type Piece,
  type SyncFrame,
} from '../../src/replication/transports/multicast/codec.js';

// ---- arbitraries ---------------------------------------------------------------------------

const nodeId = fc
  .uint8Array({ minLength: 8, maxLength: 8 })
  .map((b) => Buffer.from(b).toString('hex'));
const seq = fc.oneof(
  fc.integer({ min: 0, max: 1000 }),
  fc.integer({ min: 0, max: MAX_SEQ }),
  fc.constant(MAX_SEQ),
);
const seq1 = seq.filter((s) => s >= 1);
const port = fc.integer({ min: 0, max: 65535 });
const u32 = fc.integer({ min: 0, max: 2 ** 32 - 1 });

const piece: fc.Arbitrary<Piece> = fc
  .tuple(
    fc.uint8Array({ minLength: 1, maxLength: 300 }),
    fc.nat({ max: 100_000 }),
    fc.nat({ max: 100_000 }),
  )
  .map(([bytes, offset, extra]) => ({
    total: offset + bytes.length + extra,
    offset,
    bytes: Buffer.from(bytes),
  }));

const range = fc
  .tuple(fc.integer({ min: 1, max: MAX_SEQ }), fc.nat({ max: 10_000 }))
  .map(([from, len]): [number, number] => [from, Math.min(MAX_SEQ, from + len)]);

const message: fc.Arbitrary<MeshMessage> = fc.oneof(
  fc.record({ k: fc.constant('join' as const), seq, port }),
  fc.record({ k: fc.constant('greet' as const), to: nodeId, seq, port }),
  fc.record({
    k: fc.constant('heartbeat' as const),
    seq,
    port,
    synced: fc.boolean(),
    digest: u32,
    count: u32,
  }),
  fc.record({
    k: fc.constant('data' as const),
    seq: seq1,
    pieces: fc.array(piece, { minLength: 1, maxLength: 8 }),
  }),
  fc.record({
    k: fc.constant('nack' as const),
    to: nodeId,
    ranges: fc.array(range, { minLength: 1, maxLength: 64 }),
  }),
  fc.record({ k: fc.constant('gone' as const), to: nodeId, seq }),
  fc.record({ k: fc.constant('leave' as const), seq }),
);

/** Strings of any Unicode code points (no lone surrogates: those are not valid UTF-8). */
const unicode = (minLength: number, maxLength: number) =>
  fc.string({ unit: 'binary', minLength, maxLength });

const version: fc.Arbitrary<Version> = fc.record({
  t: fc.oneof(fc.integer({ min: 0, max: 2 ** 48 - 1 }), fc.constant(1_700_000_000_000)),
  c: u32,
  n: fc.oneof(
    nodeId,
    unicode(1, 32).filter((n) => n.length <= 64),
  ),
});
const sid = fc.oneof(
  fc.stringMatching(/^[A-Za-z0-9_-]{32}$/),
  unicode(1, 128).filter((s) => s.length <= 256),
);
const expiresAt = fc.integer({ min: Number.MIN_SAFE_INTEGER, max: Number.MAX_SAFE_INTEGER });

const change: fc.Arbitrary<Change> = fc.oneof(
  fc.record({
    op: fc.constant('set' as const),
    sid,
    data: fc.oneof(unicode(0, 200), fc.json()),
    expiresAt,
    version,
  }),
  fc.record({ op: fc.constant('destroy' as const), sid, version }),
  fc.record({ op: fc.constant('touch' as const), sid, expiresAt, version }),
);

const frame: fc.Arbitrary<SyncFrame> = fc.oneof(
  fc.record({
    k: fc.constant('request' as const),
    challenge: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b)),
    to: nodeId,
  }),
  fc.record({
    k: fc.constant('header' as const),
    challenge: fc.uint8Array({ minLength: 16, maxLength: 16 }).map((b) => Buffer.from(b)),
    vector: fc
      .array(fc.tuple(nodeId, seq), { maxLength: 20 })
      .map((entries) => new Map(entries) as ReadonlyMap<string, number>),
  }),
  fc.record({ k: fc.constant('chunk' as const), changes: fc.array(change, { maxLength: 10 }) }),
  fc.record({ k: fc.constant('end' as const), total: seq }),
);

function roundTrip(msg: MeshMessage): MeshMessage | undefined {
  const [kind, body] = encodeMessage(msg);
  return decodeMessage(kind, body);
}

function frameRoundTrip(f: SyncFrame): SyncFrame | undefined {
  const [kind, body] = encodeSyncFrame(f);
  return decodeSyncFrame(kind, body);
}

// ---- tests ----------------------------------------------------------------------------------

describe('mesh messages', () => {
  const id = '0011223344556677';
  it.each<[string, MeshMessage]>([
    ['join', { k: 'join', seq: 0, port: 4100 }],
    ['greet', { k: 'greet', to: id, seq: 17, port: 65535 }],
    [
      'heartbeat',
      { k: 'heartbeat', seq: MAX_SEQ, port: 1, synced: true, digest: 0xffffffff, count: 3 },
    ],
    [
      'heartbeat (joining)',
      { k: 'heartbeat', seq: 0, port: 0, synced: false, digest: 0, count: 0 },
    ],
    [
      'data',
      {
        k: 'data',
        seq: 1,
        pieces: [
          { total: 3, offset: 0, bytes: Buffer.from('abc') },
          { total: 5000, offset: 4000, bytes: Buffer.alloc(1000, 7) },
        ],
      },
    ],
    [
      'nack',
      {
        k: 'nack',
        to: id,
        ranges: [
          [1, 1],
          [5, 4100],
          [MAX_SEQ, MAX_SEQ],
        ],
      },
    ],
    ['gone', { k: 'gone', to: id, seq: 9 }],
    ['leave', { k: 'leave', seq: 12 }],
  ])('%s round-trips', (_, msg) => {
    expect(roundTrip(msg)).toEqual(msg);
  });

  it('every kind round-trips (fast-check)', () => {
    fc.assert(
      fc.property(message, (msg) => {
        expect(roundTrip(msg)).toEqual(msg);
      }),
      { numRuns: 2000 },
    );
  });

  it('uses the kind numbers of the protocol', () => {
    expect(encodeMessage({ k: 'join', seq: 0, port: 0 })[0]).toBe(Kind.Join);
    expect(encodeMessage({ k: 'leave', seq: 0 })[0]).toBe(Kind.Leave);
    expect(encodeMessage({ k: 'data', seq: 1, pieces: [] })[0]).toBe(Kind.Data);
  });

  it('sends at most 64 NACK ranges (the rest are asked again later)', () => {
    const ranges = Array.from({ length: 100 }, (_, i): [number, number] => [
      i * 10 + 1,
      i * 10 + 5,
    ]);
    const out = roundTrip({ k: 'nack', to: id, ranges });
    expect(out).toEqual({ k: 'nack', to: id, ranges: ranges.slice(0, 64) });
  });

  it('rejects every truncation of a valid encoding', () => {
    fc.assert(
      fc.property(message, fc.nat(), (msg, cut) => {
        const [kind, body] = encodeMessage(msg);
        const n = cut % body.length;
        expect(decodeMessage(kind, body.subarray(0, n)), `${msg.k} cut to ${n}`).toBeUndefined();
      }),
      { numRuns: 2000 },
    );
  });

  it('rejects a valid encoding with a byte appended', () => {
    fc.assert(
      fc.property(message, fc.integer({ min: 0, max: 255 }), (msg, extra) => {
        const [kind, body] = encodeMessage(msg);
        expect(decodeMessage(kind, Buffer.concat([body, Buffer.from([extra])]))).toBeUndefined();
      }),
      { numRuns: 500 },
    );
  });

  /** A valid encoding of `msg`, altered by `edit`. */
  function altered(msg: MeshMessage, edit: (b: Buffer) => unknown): [number, Buffer] {
    const [kind, body] = encodeMessage(msg);
    const b = Buffer.from(body);
    const out = edit(b);
    return [kind, Buffer.isBuffer(out) ? out : b];
  }
  const data: MeshMessage = {
    k: 'data',
    seq: 1,
    pieces: [{ total: 3, offset: 0, bytes: Buffer.from('abc') }],
  };
  const nack: MeshMessage = { k: 'nack', to: id, ranges: [[5, 9]] };
  const beat: MeshMessage = {
    k: 'heartbeat',
    seq: 1,
    port: 2,
    synced: true,
    digest: 3,
    count: 4,
  };
  it.each<[string, [number, Buffer]]>([
    ['an unknown kind', [99, Buffer.alloc(8)]],
    ['a sync frame kind', [Kind.SyncRequest, Buffer.alloc(16)]],
    ['a heartbeat with an unknown flag bit', altered(beat, (b) => b.writeUInt8(4, 8))],
    ['data numbered 0', altered(data, (b) => b.writeUIntBE(0, 0, 6))],
    ['data with no pieces', altered(data, (b) => b.subarray(0, 7).fill(0, 6))],
    ['data with a zero-length piece', altered(data, (b) => b.writeUInt16BE(0, 15))],
    ['data with a piece past its total', altered(data, (b) => b.writeUInt32BE(1, 11))],
    [
      'data with a total over the largest change (64 MiB and its id, version, expiry)',
      altered(data, (b) => b.writeUInt32BE(LIMITS.maxSessionBytes + MAX_CHANGE_OVERHEAD + 1, 7)),
    ],
    ['data with a piece count too high', altered(data, (b) => b.writeUInt8(2, 6))],
    ['a NACK with no ranges', altered(nack, (b) => b.subarray(0, 9).fill(0, 8))],
    ['a NACK from 0', altered(nack, (b) => b.writeUIntBE(0, 9, 6))],
    ['a backwards NACK range', altered(nack, (b) => b.writeUIntBE(4, 15, 6))],
    ['a NACK count too high', altered(nack, (b) => b.writeUInt8(2, 8))],
  ])('rejects %s', (_, [kind, body]) => {
    expect(decodeMessage(kind, body)).toBeUndefined();
  });

  it('never throws on arbitrary bytes, whatever the kind', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 400 }), (k, b) => {
        const msg = decodeMessage(k, Buffer.from(b));
        // Whatever decodes re-encodes to the same bytes (nothing is invented or dropped).
        if (msg) {
          const [kind, body] = encodeMessage(msg);
          expect(kind).toBe(k);
          expect(body.equals(Buffer.from(b))).toBe(true);
        }
      }),
      { numRuns: 5000 },
    );
  });

  it('never throws on bytes shaped like data and NACK messages', () => {
    const shaped = fc.oneof(
      fc
        .tuple(
          fc.uint8Array({ minLength: 6, maxLength: 6 }),
          fc.integer({ min: 0, max: 3 }),
          fc.uint8Array({ maxLength: 60 }),
        )
        .map(
          ([s, n, rest]) =>
            [
              Kind.Data,
              Buffer.concat([Buffer.from(s), Buffer.from([n]), Buffer.from(rest)]),
            ] as const,
        ),
      fc
        .tuple(
          fc.uint8Array({ minLength: 8, maxLength: 8 }),
          fc.integer({ min: 0, max: 70 }),
          fc.uint8Array({ maxLength: 40 }),
        )
        .map(
          ([to, n, rest]) =>
            [
              Kind.Nack,
              Buffer.concat([Buffer.from(to), Buffer.from([n]), Buffer.from(rest)]),
            ] as const,
        ),
    );
    fc.assert(
      fc.property(shaped, ([kind, body]) => {
        decodeMessage(kind, body);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('changes', () => {
  const v = { t: 1_700_000_000_000, c: 2, n: 'a1b2c3d4e5f60708' };
  it.each<[string, Change]>([
    [
      'set',
      { op: 'set', sid: 's1', data: '{"user":"ann"}', expiresAt: 1_700_086_400_000, version: v },
    ],
    ['set with empty data', { op: 'set', sid: 's1', data: '', expiresAt: 0, version: v }],
    ['destroy', { op: 'destroy', sid: 'ß€😀', version: v }],
    ['touch', { op: 'touch', sid: 's1', expiresAt: -5, version: { t: 0, c: 0, n: 'x' } }],
  ])('%s round-trips', (_, c) => {
    const b = encodeChange(c);
    expect(decodeChange(b)).toEqual([c, b.length]);
  });

  it('round-trips any change, with unicode ids, data and writer ids (fast-check)', () => {
    fc.assert(
      fc.property(change, (c) => {
        const b = encodeChange(c);
        expect(decodeChange(b)).toEqual([c, b.length]);
      }),
      { numRuns: 3000 },
    );
  });

  it('carries the largest session any store takes, and refuses a larger one', () => {
    const max = LIMITS.maxSessionBytes;
    const at = { op: 'set', sid: 's'.repeat(256), data: 'x'.repeat(max), expiresAt: 1, version: v };
    const b = encodeChange(at as Change);
    expect(decodeChange(b)?.[1]).toBe(b.length);
    // Its datagram pieces announce the whole change's size: over the session limit by its id.
    const piece = {
      k: 'data',
      seq: 1,
      pieces: [{ total: b.length, offset: 0, bytes: b.subarray(0, 1000) }],
    };
    const [kind, body] = encodeMessage(piece as MeshMessage);
    expect(decodeMessage(kind, body)).toMatchObject({ k: 'data', seq: 1 });
    expect(decodeChange(encodeChange({ ...at, data: `${at.data}x` } as Change))).toBeUndefined();
  });

  it('decodes a run of changes, each from where the last ended', () => {
    fc.assert(
      fc.property(
        fc.array(change, { maxLength: 20 }),
        fc.uint8Array({ maxLength: 5 }),
        (cs, pre) => {
          const b = Buffer.concat([Buffer.from(pre), ...cs.map(encodeChange)]);
          let at = pre.length;
          for (const c of cs) {
            const next = decodeChange(b, at);
            expect(next?.[0]).toEqual(c);
            at = (next as [Change, number])[1];
          }
          expect(at).toBe(b.length);
          expect(decodeChanges(b.subarray(pre.length))).toEqual(cs);
        },
      ),
      { numRuns: 500 },
    );
  });

  it('rejects every truncation of a change', () => {
    fc.assert(
      fc.property(change, fc.nat(), (c, cut) => {
        const b = encodeChange(c);
        const n = cut % b.length;
        expect(
          decodeChange(b.subarray(0, n)),
          `${c.op} cut to ${n} of ${b.length}`,
        ).toBeUndefined();
        expect(decodeChanges(b.subarray(0, n === 0 ? 1 : n))).toBeUndefined();
      }),
      { numRuns: 3000 },
    );
  });

  it.each<[string, Change]>([
    ['an empty sid', { op: 'destroy', sid: '', version: v }],
    ['a sid over 256 characters', { op: 'destroy', sid: 'x'.repeat(257), version: v }],
    ['an empty writer id', { op: 'destroy', sid: 's', version: { t: 1, c: 0, n: '' } }],
    [
      'a writer id over 64 characters',
      { op: 'destroy', sid: 's', version: { t: 1, c: 0, n: 'n'.repeat(65) } },
    ],
    ['a fractional expiry', { op: 'touch', sid: 's', expiresAt: 1.5, version: v }],
    [
      'an infinite expiry',
      { op: 'set', sid: 's', data: '{}', expiresAt: Number.POSITIVE_INFINITY, version: v },
    ],
  ])('rejects a change with %s', (_, c) => {
    expect(decodeChange(encodeChange(c))).toBeUndefined();
  });

  it('rejects an unknown op', () => {
    const b = encodeChange({ op: 'touch', sid: 's', expiresAt: 5, version: v });
    b[0] = 9;
    expect(decodeChange(b)).toBeUndefined();
  });

  it('never throws on arbitrary bytes at any start', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), fc.nat({ max: 310 }), (bytes, start) => {
        const b = Buffer.from(bytes);
        const r = decodeChange(b, start);
        if (r) {
          expect(r[1]).toBeGreaterThan(start);
          expect(r[1]).toBeLessThanOrEqual(b.length);
        }
        decodeChanges(b);
      }),
      { numRuns: 5000 },
    );
  });

  it('never throws on mutated encodings', () => {
    fc.assert(
      fc.property(change, fc.nat(), fc.integer({ min: 1, max: 255 }), (c, where, mask) => {
        const b = Buffer.from(encodeChange(c));
        const at = where % b.length;
        b[at] = (b[at] as number) ^ mask;
        const r = decodeChange(b);
        if (r) expect(r[1]).toBeLessThanOrEqual(b.length);
      }),
      { numRuns: 3000 },
    );
  });
});

describe('state-transfer frames', () => {
  it('every frame round-trips (fast-check)', () => {
    fc.assert(
      fc.property(frame, (f) => {
        expect(frameRoundTrip(f)).toEqual(f);
      }),
      { numRuns: 1000 },
    );
  });

  it('rejects truncations of requests, headers and ends', () => {
    fc.assert(
      fc.property(
        frame.filter((f) => f.k !== 'chunk'),
        fc.nat(),
        (f, cut) => {
          const [kind, body] = encodeSyncFrame(f);
          const n = cut % body.length;
          expect(decodeSyncFrame(kind, body.subarray(0, n)), `${f.k} cut to ${n}`).toBeUndefined();
        },
      ),
      { numRuns: 1000 },
    );
  });

  it('a chunk cut inside a change is rejected; cut between changes it holds the whole ones', () => {
    fc.assert(
      fc.property(fc.array(change, { minLength: 1, maxLength: 8 }), fc.nat(), (cs, cut) => {
        const [kind, body] = encodeSyncFrame({ k: 'chunk', changes: cs });
        const n = cut % body.length;
        const bounds = [0];
        for (const c of cs) bounds.push((bounds.at(-1) as number) + encodeChange(c).length);
        const whole = bounds.indexOf(n);
        const out = decodeSyncFrame(kind, body.subarray(0, n));
        if (whole < 0) expect(out, `cut to ${n}`).toBeUndefined();
        else expect(out).toEqual({ k: 'chunk', changes: cs.slice(0, whole) });
      }),
      { numRuns: 1000 },
    );
  });

  it('never throws on arbitrary bytes, whatever the kind', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 255 }), fc.uint8Array({ maxLength: 400 }), (k, b) => {
        decodeSyncFrame(k, Buffer.from(b));
      }),
      { numRuns: 5000 },
    );
    // A header whose count would need more bytes than there are.
    const header = Buffer.alloc(20 + 14);
    header.writeUInt32BE(0xffffffff, 16);
    expect(decodeSyncFrame(Kind.SyncHeader, header)).toBeUndefined();
  });

  it('refuses message kinds as frames', () => {
    expect(decodeSyncFrame(Kind.Join, Buffer.alloc(8))).toBeUndefined();
  });
});

describe('node ids', () => {
  it('are 16 lowercase hex digits', () => {
    expect(isNodeId('0123456789abcdef')).toBe(true);
    expect(isNodeId('0123456789ABCDEF')).toBe(false);
    expect(isNodeId('0123456789abcde')).toBe(false);
  });
});
