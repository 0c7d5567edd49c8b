import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { resolveOptions } from '../../src/options.js';
import { normaliseAddress } from '../../src/routing/address.js';
import {
  fromForwarded,
  fromForwardedFor,
  parseAddressToken,
  pickHop,
} from '../../src/routing/forwarded.js';
import { routeFields, routeKey } from '../../src/routing/key.js';

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

describe('Forwarded with trusted proxies: client text never decides the key (issue 14)', () => {
  // In these literals `\\` is one backslash on the wire: the first line sends x="a" + 2 backslashes
  // + '"', a quoted-pair (an escaped backslash) and then the closing quote.
  it('an escaped backslash before the closing quote (x="a\\\\") ended nothing: the quote stayed open', () => {
    // Passes nginx's documented $proxy_add_forwarded validation, so nginx appends to the line.
    const line = 'for=9.9.9.9;x="a\\\\", for=203.0.113.7';
    expect(fromForwarded([line], 1)).toBe('203.0.113.7');
    expect(fromForwarded(['for=9.9.9.9;x="\\\\\\\\", for=203.0.113.7'], 1)).toBe('203.0.113.7');
  });

  it('an unterminated quote (x=") does not swallow the element a proxy appends to its line', () => {
    expect(fromForwarded(['for=9.9.9.9;x=", for=203.0.113.7'], 1)).toBe('203.0.113.7');
    // HAProxy's option forwarded stops validating once for, by, host and proto were seen, then
    // appends to the client's line.
    const haproxy = 'proto=http;host=a;by=_x;for=9.9.9.9;x=", proto=http;for=203.0.113.7';
    expect(fromForwarded([haproxy], 1)).toBe('203.0.113.7');
  });

  it("a client's quote that pairs with a quote of the proxy's element does not hide it", () => {
    // The proxy quotes an IPv6 address ...
    expect(fromForwarded(['for=9.9.9.9;x=", for="[2001:db8::7]"'], 1)).toBe('2001:db8::7');
    // ... or a Host it was sent: `host=", for=9.9.9.9;y="` is the proxy's, quoted by it.
    const host = 'x=", for=203.0.113.7;host=", for=9.9.9.9;y="';
    expect(fromForwarded([host], 1)).toBe('203.0.113.7');
  });

  it('an unterminated quote on a line of its own does not reach into the next line', () => {
    expect(fromForwarded(['for=9.9.9.9;x="', 'for=203.0.113.7'], 1)).toBe('203.0.113.7');
    expect(fromForwarded(['for=9.9.9.9;x="a\\\\"', 'for=203.0.113.7'], 1)).toBe('203.0.113.7');
  });

  it("a malformed client part is one unusable element, never a reason to lose the proxy's", () => {
    const values = ['for=192.0.2.1, garbage" x, for=203.0.113.7, for=10.0.0.1'];
    expect(fromForwarded(values, 1)).toBe('10.0.0.1');
    expect(fromForwarded(values, 2)).toBe('203.0.113.7');
    expect(fromForwarded(values, 3)).toBeUndefined();
    expect(fromForwarded(values, 4)).toBeUndefined();
    expect(fromForwarded(values, 0)).toBeUndefined();
    expect(fromForwarded(['for=9.9.9.9\\, for=203.0.113.7'], 1)).toBe('203.0.113.7');
  });

  it('reads quoted-pairs as RFC 7230 says: an escaped quote or comma stays inside the string', () => {
    const values = ['for=192.0.2.1;x="a\\"b,c\\\\", for=203.0.113.7'];
    expect(fromForwarded(values, 1)).toBe('203.0.113.7');
    expect(fromForwarded(values, 2)).toBe('192.0.2.1');
    expect(fromForwarded(['for="192.0.2.\\1"'], 0)).toBe('192.0.2.1');
  });

  it('ignores empty list elements (nginx\'s map writes ", for=..." when the client sent none)', () => {
    expect(fromForwarded([', for=203.0.113.7'], 0)).toBe('203.0.113.7');
    expect(fromForwarded([', for=203.0.113.7'], 1)).toBe('203.0.113.7');
    expect(fromForwarded(['for=192.0.2.1 , ,, for=203.0.113.7'], 2)).toBe('192.0.2.1');
  });

  it('takes an element that names for= twice as unusable (which one was meant is ambiguous)', () => {
    expect(fromForwarded(['for=9.9.9.9;for=203.0.113.7'], 1)).toBeUndefined();
    expect(fromForwarded(['for=9.9.9.9;FOR=203.0.113.7'], 0)).toBeUndefined();
  });

  it('still reads what real proxies write: OWS around ";" and ",", unquoted ports and IPv6', () => {
    expect(fromForwarded(['proto=http;for=192.0.2.1 ; by=_x'], 0)).toBe('192.0.2.1');
    expect(fromForwarded(['for=192.0.2.1:8080'], 0)).toBe('192.0.2.1');
    expect(fromForwarded(['For=2001:DB8:0::7'], 0)).toBe('2001:db8::7');
    expect(fromForwarded(['for=[2001:db8::7]:80'], 0)).toBe('2001:db8::7');
  });
});

/**
 * What a client may write into a forwarding header: arbitrary text, weighted towards the
 * characters and pieces that matter to a tokenizer. Header lines hold no CR or LF; the head is
 * read as latin1, so nothing above U+00FF either.
 */
const clientText = fc.string({
  unit: fc.oneof(
    fc.constantFrom('"', '\\', ',', ';', '=', ' ', '\t', '[', ']', ':', '_', '\x00', '\x7f'),
    fc.constantFrom('for=', 'FOR=', '9.9.9.9', '"9.9.9.9"', '"[::9]"', 'x="', '\\"', 'unknown'),
    fc.constantFrom('a', '0', '\x80', '\xe9', '\xff', '\x0b', '\xa0'),
  ),
  maxLength: 24,
});
/** parseHead gives each line's value trimmed, one string per header line. */
const asParsed = (lines: string[]) => lines.map((l) => l.trim());

/** An address a proxy writes, with the key it stands for. */
const proxyAddress = fc.oneof(
  fc.ipV4().map((a) => ({ key: a, forwarded: a, xff: a })),
  fc.tuple(fc.ipV4(), fc.integer({ min: 1, max: 65535 })).map(([a, port]) => ({
    key: a,
    forwarded: `"${a}:${port}"`,
    xff: `${a}:${port}`,
  })),
  fc.ipV6().map((a) => ({ key: a, forwarded: `"[${a}]"`, xff: a })),
);

/** Parameters a proxy may add next to for=, among them quoted-strings with quoted-pairs. */
const quotedString = fc
  .string({
    unit: fc.constantFrom(
      'a',
      ' ',
      '\t',
      ',',
      ';',
      '=',
      '\\"',
      '\\\\',
      'for=9.9.9.9',
      '\xe9',
      '\\,',
    ),
    maxLength: 8,
  })
  .map((s) => `"${s}"`);
const otherParameter = fc.oneof(
  fc.constantFrom('proto=http', 'proto=https', 'by=_hidden', 'by=unknown', 'by="[::1]:80"'),
  quotedString.map((q) => `host=${q}`),
  quotedString.map((q) => `ext=${q}`),
);
const proxyElement = fc
  .tuple(proxyAddress, fc.array(otherParameter, { maxLength: 3 }), fc.nat())
  .map(([address, others, at]) => {
    const pairs = [...others];
    pairs.splice(at % (others.length + 1), 0, `for=${address.forwarded}`);
    return { key: address.key, text: pairs.join(';') };
  });

/**
 * The header lines after n proxies: the client's lines (if any), then each proxy's text, either
 * appended to the last line after ", " (nginx's map, HAProxy's option forwarded when it accepted
 * the client's header) or on a line of its own (HAProxy otherwise, and many others).
 */
function proxied(client: string[], appended: { text: string; ownLine: boolean }[]): string[] {
  const lines = [...client];
  for (const { text, ownLine } of appended) {
    if (ownLine || lines.length === 0) lines.push(text);
    else lines[lines.length - 1] = `${lines[lines.length - 1]}, ${text}`;
  }
  return asParsed(lines);
}

describe('with n trusted proxies the key is what the outermost of them appended (fuzzed)', () => {
  it('Forwarded: whatever the client wrote before, on its line or lines of its own', () => {
    fc.assert(
      fc.property(
        fc.array(clientText, { maxLength: 3 }),
        fc.array(fc.tuple(proxyElement, fc.boolean()), { minLength: 1, maxLength: 3 }),
        (client, hops) => {
          const values = proxied(
            client,
            hops.map(([e, ownLine]) => ({ text: e.text, ownLine })),
          );
          // trustedProxies = k reads the element the k-th proxy from the app appended.
          hops.forEach(([element], i) => {
            const k = hops.length - i;
            expect(fromForwarded(values, k), JSON.stringify(values)).toBe(
              normaliseAddress(element.key),
            );
          });
        },
      ),
      { numRuns: 1500 },
    );
  });

  it('X-Forwarded-For: whatever the client wrote before, on its line or lines of its own', () => {
    fc.assert(
      fc.property(
        fc.array(clientText, { maxLength: 3 }),
        fc.array(fc.tuple(proxyAddress, fc.boolean()), { minLength: 1, maxLength: 3 }),
        (client, hops) => {
          const values = proxied(
            client,
            hops.map(([a, ownLine]) => ({ text: a.xff, ownLine })),
          );
          hops.forEach(([address], i) => {
            const k = hops.length - i;
            expect(fromForwardedFor(values, k), JSON.stringify(values)).toBe(
              normaliseAddress(address.key),
            );
          });
        },
      ),
      { numRuns: 1500 },
    );
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

describe('proxy: true with the default trustedProxies (issue 19: the recipe let clients pick)', () => {
  const head = (xff: string) =>
    Buffer.from(`GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${xff}\r\n\r\n`, 'latin1');
  const options = resolveOptions({ proxy: true, num: 4 });

  it('keys by the address the nearest proxy appended, not by what the client wrote', () => {
    // nginx's $proxy_add_x_forwarded_for: the client's header, then the address nginx saw.
    expect(routeKey(head('6.6.6.6, 203.0.113.7'), '127.0.0.1', options).key).toBe('203.0.113.7');
    expect(routeKey(head('203.0.113.7'), '127.0.0.1', options).key).toBe('203.0.113.7');
    expect(
      routeFields('/', ['X-Forwarded-For', '6.6.6.6, 203.0.113.7'], undefined, options),
    ).toEqual({ owner: undefined, key: '203.0.113.7' });
  });

  it('takes the left-most address only when trustedProxies is 0, given explicitly', () => {
    const leftMost = resolveOptions({ proxy: true, num: 4, trustedProxies: 0 });
    expect(routeKey(head('6.6.6.6, 203.0.113.7'), '127.0.0.1', leftMost).key).toBe('6.6.6.6');
  });
});
