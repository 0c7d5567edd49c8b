// The part of the head reader that decides (HeadParser), fed by hand: what it finds however the
// bytes are split, and how much work that costs. The read paths themselves (handle and socket)
// are exercised on real sockets in test/integration/head-reader.test.ts.
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { type HeadLimits, HeadParser } from '../../src/routing/head.js';

const OPTIONS: HeadLimits = { maxBytes: 64 * 1024, proxyProtocol: false, untilHead: true };

const latin1 = (s: string) => Buffer.from(s, 'latin1');

/** A request head of exactly `size` bytes. */
function headOf(size: number): Buffer {
  const start = 'GET / HTTP/1.1\r\nHost: x\r\nX-Pad: ';
  return latin1(`${start}${'a'.repeat(size - start.length - 4)}\r\n\r\n`);
}

const V1 = latin1('PROXY TCP4 198.51.100.4 10.0.0.1 40000 443\r\n');

/** A PROXY v2 header (IPv4 source 203.0.113.7) padded with a TLV to `size` bytes. */
function v2(size: number): Buffer {
  const tlv = size - 16 - 12;
  const header = Buffer.alloc(size);
  Buffer.from([0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a]).copy(
    header,
  );
  header.set([0x21, 0x11, (size - 16) >> 8, (size - 16) & 0xff, 203, 0, 113, 7, 10, 0, 0, 1], 12);
  header.set([0, 0x50, 0x01, 0xbb, 0x04, (tlv - 3) >> 8, (tlv - 3) & 0xff], 24);
  return header;
}

type Found = ReturnType<HeadParser['push']>;

/** Feeds `parts` in order until the parser decides; returns the decision and its work. */
function feed(parts: Buffer[], options: HeadLimits): { found: Found; work: number } {
  const parser = new HeadParser(options);
  let found: Found;
  for (const part of parts) {
    found = parser.push(part);
    if (found) break;
  }
  return { found, work: parser.work.copied + parser.work.scanned };
}

const singleBytes = (buf: Buffer) => [...buf].map((b) => Buffer.from([b]));

describe('HeadParser: reading a head costs work linear in its bytes (regression: quadratic head reading)', () => {
  // Each case: what precedes the request head, the options, the bytes that make the case `size`
  // bytes long, and what the parser must find.
  const cases = [
    {
      name: 'a request head',
      options: OPTIONS,
      bytes: (size: number) => headOf(size),
      expected: (size: number) => ({ headLength: size, skip: 0 }),
    },
    {
      name: 'a PROXY v1 header, then a request head',
      options: { ...OPTIONS, proxyProtocol: true },
      bytes: (size: number) => Buffer.concat([V1, headOf(size - V1.length)]),
      expected: (size: number) => ({ headLength: size - V1.length, skip: V1.length }),
    },
    {
      name: 'a PROXY v2 header with TLVs, then a short request head',
      options: { ...OPTIONS, proxyProtocol: true },
      bytes: (size: number) => Buffer.concat([v2(size - 64), headOf(64)]),
      expected: (size: number) => ({ headLength: 64, skip: size - 64 }),
    },
    {
      name: 'a PROXY v2 header with TLVs alone (untilHead: false)',
      options: { ...OPTIONS, proxyProtocol: true, untilHead: false },
      bytes: (size: number) => v2(size),
      expected: (size: number) => ({ headLength: 0, skip: size }),
    },
  ];

  it.each(cases)('$name, 16 KB and 32 KB one byte at a time', ({ options, bytes, expected }) => {
    const work: number[] = [];
    for (const size of [16 * 1024, 32 * 1024]) {
      const input = bytes(size);
      const { found, work: done } = feed(singleBytes(input), options);
      const { headLength, skip } = expected(size);
      expect(found).toEqual({ status: 'ok', all: input.subarray(skip), headLength });
      // A few passes over each byte (copy, scan), never a pass over everything per read.
      expect(done, `work for ${size} bytes`).toBeLessThanOrEqual(8 * size);
      work.push(done);
    }
    const [small = 0, large = 0] = work;
    expect(large / small, `work ${small} for 16 KB, ${large} for 32 KB`).toBeLessThanOrEqual(2.2);
  });

  it('gives up on a head without an end after maxBytes, one byte at a time, in linear work', () => {
    const endless = latin1(`GET / HTTP/1.1\r\nX-Pad: ${'a'.repeat(40_000)}`);
    const options = { ...OPTIONS, maxBytes: 32 * 1024 };
    const { found, work } = feed(singleBytes(endless), options);
    expect(found).toEqual({ status: 'too-large' });
    expect(work).toBeLessThanOrEqual(8 * options.maxBytes);
  });
});

describe('HeadParser: what it finds does not depend on how the bytes are split', () => {
  const eol = fc.constantFrom('\r\n', '\n');
  const request = fc
    .record({
      leading: fc.constantFrom('', '\r\n', '\n\r\n'),
      fields: fc.array(fc.tuple(fc.stringMatching(/^[A-Za-z-]{1,12}$/), fc.string()), {
        maxLength: 6,
      }),
      ends: fc.array(eol, { minLength: 8, maxLength: 8 }),
      body: fc.uint8Array({ maxLength: 40 }),
      proxy: fc.constantFrom('none', 'v1', 'v2'),
    })
    .map(({ leading, fields, ends, body, proxy }) => {
      const lines = fields.map(([n, v], i) => `${n}: ${v.replace(/[\r\n]/g, '')}${ends[i]}`);
      const head = latin1(`${leading}GET /x HTTP/1.1${ends[6]}${lines.join('')}${ends[7]}`);
      const prefix = proxy === 'v1' ? V1 : proxy === 'v2' ? v2(40) : Buffer.alloc(0);
      return { prefix, head, bytes: Buffer.concat([prefix, head, body]) };
    });

  it('finds the same head end and keeps every byte, however the input is cut (fuzzed)', () => {
    fc.assert(
      fc.property(request, fc.array(fc.nat(), { maxLength: 10 }), (r, cuts) => {
        const options = { ...OPTIONS, proxyProtocol: r.prefix.length > 0 };
        const points = [...new Set(cuts.map((c) => c % r.bytes.length))].sort((a, b) => a - b);
        const parts = [0, ...points, r.bytes.length]
          .slice(1)
          .map((end, i, ends) => r.bytes.subarray(i === 0 ? 0 : ends[i - 1], end))
          .filter((p) => p.length > 0);
        const { found } = feed(parts, options);
        expect(found?.status).toBe('ok');
        if (found?.status !== 'ok') return;
        expect(found.headLength).toBe(r.head.length);
        // Every byte up to the end of the chunk that completed the head, PROXY header stripped.
        let read = 0;
        for (const part of parts) {
          read += part.length;
          if (read >= r.prefix.length + r.head.length) break;
        }
        expect(Buffer.from(found.all)).toEqual(r.bytes.subarray(r.prefix.length, read));
      }),
    );
  });
});

describe('HeadParser: telling a trickling client (whose reads the reader spaces)', () => {
  it('is trickling after 8 reads of a few bytes each, and not for a head in a few reads', () => {
    const trickled = new HeadParser(OPTIONS);
    const seen = singleBytes(headOf(200)).map((b) => {
      trickled.push(b);
      return trickled.trickling;
    });
    expect(seen.indexOf(true)).toBe(7);
    const whole = new HeadParser(OPTIONS);
    for (const part of [headOf(4096).subarray(0, 1448), headOf(4096).subarray(1448, 2896)]) {
      whole.push(part);
    }
    expect(whole.trickling).toBe(false);
    // Full segments, read one at a time: no pause however many.
    const segments = new HeadParser(OPTIONS);
    const big = headOf(60 * 1024);
    for (let i = 0; i + 1448 < big.length - 4; i += 1448) segments.push(big.subarray(i, i + 1448));
    expect(segments.trickling).toBe(false);
  });

  it('stops counting as trickling once reads bring 256 bytes on average', () => {
    const parser = new HeadParser(OPTIONS);
    const head = headOf(8192);
    for (let i = 0; i < 8; i++) parser.push(head.subarray(i, i + 1));
    expect(parser.trickling).toBe(true);
    // What gathered in the kernel while reads were spaced arrives in one read.
    parser.push(head.subarray(8, 2300));
    expect(parser.trickling).toBe(true);
    parser.push(head.subarray(2300, 4096));
    expect(parser.trickling).toBe(false);
  });
});
