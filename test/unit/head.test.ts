import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { findHeadEnd, parseHead } from '../../src/routing/head.js';

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
