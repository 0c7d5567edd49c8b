import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  fromForwarded,
  fromForwardedFor,
  parseAddressToken,
  pickHop,
} from '../../src/routing/forwarded.js';

describe('parseAddressToken', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['  1.2.3.4  ', '1.2.3.4'],
    ['1.2.3.4:5678', '1.2.3.4'],
    ['"1.2.3.4"', '1.2.3.4'],
    ['2001:db8::1', '2001:db8::1'],
    ['[2001:db8::1]', '2001:db8::1'],
    ['[2001:DB8::1]:443', '2001:db8::1'],
    ['"[2001:db8:cafe::17]:4711"', '2001:db8:cafe::17'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
  ])('%j -> %s', (token, expected) => {
    expect(parseAddressToken(token)).toBe(expected);
  });

  it.each([
    '',
    'unknown',
    '_hidden',
    '_SEVKISEK',
    'x',
    '1.2.3',
    '1.2.3.4:port',
    '[::1',
    '[::1]x',
    '1.2.3.4:99999999',
    '"',
  ])('gives undefined for %j', (token) => {
    expect(parseAddressToken(token)).toBeUndefined();
  });
});

describe('X-Forwarded-For', () => {
  it('takes the left-most hop by default and the n-th from the right with n trusted proxies', () => {
    const values = ['203.0.113.7, 10.0.0.1', '198.51.100.2'];
    expect(fromForwardedFor(values, 0)).toBe('203.0.113.7');
    expect(fromForwardedFor(values, 1)).toBe('198.51.100.2');
    expect(fromForwardedFor(values, 2)).toBe('10.0.0.1');
    expect(fromForwardedFor(values, 3)).toBe('203.0.113.7');
    expect(fromForwardedFor(values, 4)).toBeUndefined();
  });

  it('gives one client one key however many edges it came through (the chain is not the key)', () => {
    expect(fromForwardedFor(['203.0.113.7, 10.0.0.1'], 0)).toBe(
      fromForwardedFor(['203.0.113.7, 10.0.0.2'], 0),
    );
  });

  it('treats unknown and garbage hops as missing', () => {
    expect(fromForwardedFor(['unknown'], 0)).toBeUndefined();
    expect(fromForwardedFor(['<script>'], 0)).toBeUndefined();
    expect(fromForwardedFor([''], 0)).toBeUndefined();
  });
});

describe('Forwarded (RFC 7239)', () => {
  it('reads for= of the chosen element, any case, quoted IPv6 with port', () => {
    const values = ['for=192.0.2.60;proto=http;by=203.0.113.43', 'For="[2001:db8:cafe::17]:4711"'];
    expect(fromForwarded(values, 0)).toBe('192.0.2.60');
    expect(fromForwarded(values, 1)).toBe('2001:db8:cafe::17');
  });

  it('handles elements separated by commas in one line and quoted separators', () => {
    expect(fromForwarded(['for=192.0.2.43, for=198.51.100.17'], 1)).toBe('198.51.100.17');
    expect(fromForwarded(['proto="a;b,c";for=192.0.2.1'], 0)).toBe('192.0.2.1');
  });

  it('gives undefined without a usable for=', () => {
    expect(fromForwarded(['proto=https'], 0)).toBeUndefined();
    expect(fromForwarded(['for=unknown'], 0)).toBeUndefined();
    expect(fromForwarded(['for=_hidden'], 0)).toBeUndefined();
  });
});

describe('hop selection and parsing never throw (fuzzed)', () => {
  it('holds for arbitrary header values and hop counts', () => {
    fc.assert(
      fc.property(
        fc.array(fc.string({ maxLength: 80 }), { maxLength: 5 }),
        fc.nat(6),
        (values, hops) => {
          const a = fromForwardedFor(values, hops);
          const b = fromForwarded(values, hops);
          for (const v of [a, b]) expect(v === undefined || typeof v === 'string').toBe(true);
        },
      ),
    );
  });

  it('pickHop picks within bounds', () => {
    fc.assert(
      fc.property(fc.array(fc.nat(), { maxLength: 10 }), fc.nat(12), (hops, n) => {
        const hop = pickHop(hops, n);
        if (hop !== undefined) expect(hops).toContain(hop);
      }),
    );
  });
});
