// The store data channel's frames (replication/transports/ipc/frames.ts): a stream cut anywhere
// reads back as the same frames; a turn's writes are split into frames of about FRAME_TARGET
// bytes, so a large session never makes a frame the other side refuses; a length over the
// limit stops the reader.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { LIMITS } from '../../src/replication/limits.js';
import type { Change } from '../../src/replication/table.js';
import {
  ackFrame,
  changesFrames,
  FRAME_TARGET,
  Frame,
  FrameReader,
  MAX_FRAME,
  readAck,
  readChanges,
} from '../../src/replication/transports/ipc/frames.js';
import { encodeChange } from '../../src/replication/transports/multicast/codec.js';

const set = (sid: string, bytes: number): Change => ({
  op: 'set',
  sid,
  data: JSON.stringify({ pad: 'x'.repeat(Math.max(0, bytes - 10)) }),
  expiresAt: 1_790_000_000_000,
  version: { t: 1_790_000_000_000, c: 0, n: 'a1b2c3d4e5f60708' },
});

/**
 * Feeds `stream` cut at `cuts`. `transient`: every piece is read into one scratch buffer that is
 * overwritten after each push (as a socket's own read buffer is), so the reader must copy what it
 * keeps; bodies are copied inside the callback, the only time they are valid.
 */
function readAll(
  stream: Buffer,
  cuts: number[],
  transient = false,
): { kind: number; body: Buffer }[] {
  const reader = new FrameReader();
  const out: { kind: number; body: Buffer }[] = [];
  const scratch = Buffer.alloc(stream.length + 1);
  const onFrame = (kind: number, body: Buffer) =>
    out.push({ kind, body: transient ? Buffer.from(body) : body });
  const feed = (piece: Buffer): boolean => {
    if (!transient) return reader.push(piece, onFrame);
    piece.copy(scratch);
    const ok = reader.push(scratch.subarray(0, piece.length), onFrame, true);
    scratch.fill(0xee);
    return ok;
  };
  let at = 0;
  for (const cut of [...cuts.filter((c) => c < stream.length)].sort((a, b) => a - b)) {
    expect(feed(stream.subarray(at, cut))).toBe(true);
    at = cut;
  }
  feed(stream.subarray(at));
  expect(reader.consumed).toBe(stream.length);
  return out;
}

describe('data channel frames', () => {
  it('read back the same changes wherever the stream is cut, from a reused read buffer too', () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 0, max: 5000 }), { minLength: 1, maxLength: 30 }),
        fc.array(fc.nat(), { maxLength: 10 }),
        fc.boolean(),
        (sizes, cutSeeds, transient) => {
          const changes = sizes.map((n, i) => set(`s${i}`, n));
          const stream = Buffer.concat([
            ...changesFrames(changes.map(encodeChange)),
            ackFrame(7, [{ n: 3, lost: true, reason: 'newer' }]),
          ]);
          const cuts = cutSeeds.map((c) => c % (stream.length + 1));
          const frames = readAll(stream, cuts, transient);
          const got = frames
            .filter((f) => f.kind === Frame.Changes)
            .flatMap((f) => readChanges(f.body).changes.map((c) => c.change));
          expect(got).toEqual(changes);
          const last = frames.at(-1) as { kind: number; body: Buffer };
          expect(last.kind).toBe(Frame.Ack);
          expect(readAck(last.body)).toEqual({
            answered: 7,
            refusals: [{ n: 3, lost: true, reason: 'newer' }],
          });
        },
      ),
      { numRuns: 200 },
    );
  });

  it('split a turn of large sessions into frames of about FRAME_TARGET bytes, each under the limit', () => {
    const big = Array.from({ length: 5 }, (_, i) => encodeChange(set(`big${i}`, 700_000)));
    const frames = changesFrames(big);
    expect(frames.length).toBeGreaterThan(1);
    for (const f of frames) expect(f.length).toBeLessThanOrEqual(FRAME_TARGET + 700_100);
    // One session as large as the limit allows still fits in a frame of its own.
    const largest = encodeChange(set('largest', LIMITS.maxSessionBytes - 100));
    const [alone] = changesFrames([largest]);
    expect((alone as Buffer).length - 4).toBeLessThanOrEqual(MAX_FRAME);
    expect(readAll(alone as Buffer, [3, 1000])).toHaveLength(1);
  });

  it('stop at a length over the limit', () => {
    const bad = Buffer.alloc(8);
    bad.writeUInt32BE(MAX_FRAME + 1, 0);
    expect(new FrameReader().push(bad, () => undefined)).toBe(false);
    const zero = Buffer.alloc(8);
    expect(new FrameReader().push(zero, () => undefined)).toBe(false);
  });
});
