import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findHeadEnd, HEAD_SCAN, parseHead, scanHeadEnd } from '../../src/routing/head.js';

const bytes = (s: string) => Buffer.from(s, 'latin1');

describe('findHeadEnd', () => {
  it.each([
    ['GET / HTTP/1.1\r\nHost: a\r\n\r\n', 27],
    ['GET / HTTP/1.1\nHost: a\n\n', 24],
    ['GET / HTTP/1.1\r\nHost: a\n\r\n', 26],
    ['GET / HTTP/1.1\r\nHost: a\r\n\n', 26],
    ['\r\n\r\nGET / HTTP/1.1\r\n\r\n', 22],
  ])('finds the end of %j at %d', (head, end) => {
    expect(findHeadEnd(bytes(head))).toBe(end);
    expect(findHeadEnd(bytes(`${head}BODY\r\n\r\n`))).toBe(end);
  });

  it.each([
    '',
    '\r\n',
    'GET / HTTP/1.1\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\n',
    'GET / HTTP/1.1\r\nHost: a\r\n\r',
  ])('reports an incomplete head for %j', (head) => {
    expect(findHeadEnd(bytes(head))).toBe(-1);
  });

  it('never throws and never reports an end past the buffer (fuzzed)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 300 }), (buf) => {
        const end = findHeadEnd(buf);
        expect(end === -1 || (end > 0 && end <= buf.length)).toBe(true);
      }),
    );
  });

  it('finds the same end however the head is split, when fed cumulatively (fuzzed)', () => {
    const head = fc
      .array(fc.tuple(fc.stringMatching(/^[A-Za-z-]{1,12}$/), fc.stringMatching(/^[ -~]{0,30}$/)), {
        maxLength: 8,
      })
      .chain((fields) =>
        fc.record({
          text: fc.constant(
            `GET /x HTTP/1.1\r\n${fields.map(([n, v]) => `${n}: ${v}\r\n`).join('')}\r\n`,
          ),
          cuts: fc.array(fc.nat(), { maxLength: 6 }),
        }),
      );
    fc.assert(
      fc.property(head, ({ text, cuts }) => {
        const full = bytes(`${text}rest-of-body`);
        const expected = findHeadEnd(full);
        expect(expected).toBe(text.length);
        const points = [...new Set(cuts.map((c) => c % full.length))].sort((a, b) => a - b);
        // Every prefix that ends before the terminator reports incomplete; the first that
        // contains it reports the same end.
        for (const p of points) {
          const seen = findHeadEnd(full.subarray(0, p));
          expect(seen).toBe(p >= expected ? expected : -1);
        }
      }),
    );
  });
});

/** findHeadEnd as it was: rescans from byte 0 (the reference for the incremental scan). */
function referenceHeadEnd(buf: Uint8Array): number {
  let i = 0;
  while (i < buf.length && (buf[i] === 0x0d || buf[i] === 0x0a)) i++;
  for (; i < buf.length; i++) {
    if (buf[i] !== 0x0a) continue;
    if (buf[i + 1] === 0x0a) return i + 2;
    if (buf[i + 1] === 0x0d && buf[i + 2] === 0x0a) return i + 3;
  }
  return -1;
}

describe('scanHeadEnd: the end-of-head search, resumed piece by piece', () => {
  // Heads made of line ends and text, so that every bare-LF form, CR runs and leading empty
  // lines occur, cut anywhere (a CRLFCRLF split across pieces included).
  const input = fc.array(fc.constantFrom(0x0d, 0x0a, 0x41), { maxLength: 60 });

  it('finds what one scan of the whole finds, however the bytes are cut (fuzzed)', () => {
    fc.assert(
      fc.property(input, fc.array(fc.nat(), { maxLength: 8 }), (values, cuts) => {
        const buf = Uint8Array.from(values);
        const points = [...new Set(cuts.map((c) => c % (buf.length + 1)))].sort((a, b) => a - b);
        let scan = HEAD_SCAN;
        let from = 0;
        for (const to of [...points, buf.length]) {
          const before = scan.scanned;
          scan = scanHeadEnd(scan, buf.subarray(from, to));
          // Resumed where it stopped: each byte looked at once, none past the head's end.
          if (scan.end === -1) expect(scan.scanned).toBe(before + to - from);
          else expect(scan.scanned).toBe(scan.end);
          from = to;
        }
        expect(scan.end).toBe(referenceHeadEnd(buf));
        expect(findHeadEnd(buf)).toBe(referenceHeadEnd(buf));
      }),
      { numRuns: 2_000 },
    );
  });

  it('finds a CRLFCRLF cut between every pair of its bytes, and skips leading empty lines fed alone', () => {
    const head = bytes('GET / HTTP/1.1\r\n\r\n');
    for (let cut = 0; cut <= head.length; cut++) {
      const scan = scanHeadEnd(scanHeadEnd(HEAD_SCAN, head.subarray(0, cut)), head.subarray(cut));
      expect(scan.end, `cut at ${cut}`).toBe(head.length);
    }
    const pieces = ['\r\n', '\n', '\r\n', 'GET / HTTP/1.1\n', '\r', '\n'];
    let scan = HEAD_SCAN;
    for (const piece of pieces) scan = scanHeadEnd(scan, bytes(piece));
    expect(scan.end).toBe(pieces.join('').length);
  });
});

describe('parseHead', () => {
  it('parses the request line and headers, names case-insensitively, repeated lines kept in order', () => {
    const head = parseHead(
      bytes(
        'POST /a?b=c HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 1.1.1.1\r\nx-forwarded-for: 2.2.2.2\r\n\r\n',
      ),
    );
    expect(head).toEqual({
      method: 'POST',
      target: '/a?b=c',
      headers: new Map([
        ['host', ['x']],
        ['x-forwarded-for', ['1.1.1.1', '2.2.2.2']],
      ]),
    });
  });

  it('matches header names exactly, never as a substring', () => {
    const head = parseHead(
      bytes(
        'GET / HTTP/1.1\r\nX-Forwarded-For-Not: 9.9.9.9\r\nReferer: x-forwarded-for: 8.8.8.8\r\n\r\n',
      ),
    );
    expect(head?.headers.get('x-forwarded-for')).toBeUndefined();
  });

  it.each([
    'GARBAGE\r\n\r\n',
    'GET /\r\n\r\n',
    'GET / HTTP/2.0\r\n\r\n',
    'GET / HTTP/1.1\r\nNo colon here\r\n\r\n',
    'GET / HTTP/1.1\r\nBad Name: x\r\n\r\n',
    'GET / HTTP/1.1\r\n folded: x\r\n\r\n',
    'G(T / HTTP/1.1\r\n\r\n',
  ])('rejects %j', (text) => {
    expect(parseHead(bytes(text))).toBeUndefined();
  });

  it('never throws on arbitrary bytes (fuzzed)', () => {
    fc.assert(
      fc.property(fc.uint8Array({ maxLength: 400 }), (buf) => {
        parseHead(buf);
      }),
    );
  });
});
