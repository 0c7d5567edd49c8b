import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import {
  cookieValue,
  idFromCookieValue,
  MAX_ENCODED_SLOT,
  makeSessionId,
  queryParam,
  SESSION_ID_LENGTH,
  sessionIdSlot,
  sidFromTarget,
} from '../../src/routing/session-id.js';

const SEED = 0x5eed1e55;

describe('session ids that name their slot', () => {
  it('round-trips every slot, for any balancer with the same seed and worker count', () => {
    for (const slot of [0, 1, 2, 7, 63, 64, 1023, MAX_ENCODED_SLOT]) {
      const id = makeSessionId(slot, SEED);
      expect(id).toHaveLength(SESSION_ID_LENGTH);
      expect(id).toMatch(/^[A-Za-z0-9_-]+$/);
      expect(sessionIdSlot(id, SEED, MAX_ENCODED_SLOT + 1)).toBe(slot);
    }
  });

  it('ids are unique', () => {
    const ids = new Set(Array.from({ length: 10_000 }, () => makeSessionId(3, SEED)));
    expect(ids.size).toBe(10_000);
  });

  it('names no slot for a slot beyond the worker count, another seed, or a tampered id', () => {
    const id = makeSessionId(5, SEED);
    expect(sessionIdSlot(id, SEED, 5)).toBeUndefined();
    expect(sessionIdSlot(id, SEED, 6)).toBe(5);
    let otherSeed = 0;
    for (let seed = 1; seed <= 200; seed++)
      if (sessionIdSlot(id, seed, 6) !== undefined) otherSeed++;
    expect(otherSeed).toBeLessThan(15); // ~1 in 64 by chance
    // A changed character passes the 6-bit check by chance about 1 time in 64: over all 63
    // other characters at one place, only a few may.
    const alphabet = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
    const passing = [...alphabet]
      .filter((c) => c !== id[3])
      .filter((c) => sessionIdSlot(`${id.slice(0, 3)}${c}${id.slice(4)}`, SEED, 6) !== undefined);
    expect(passing.length).toBeLessThan(8);
  });

  it('recognises about 1 in 64 foreign ids at most (the default generators, garbage)', () => {
    let hits = 0;
    fc.assert(
      fc.property(fc.string({ minLength: 0, maxLength: 40 }), (id) => {
        const slot = sessionIdSlot(id, SEED, 16);
        if (slot !== undefined) hits++;
        expect(slot === undefined || (slot >= 0 && slot < 16)).toBe(true);
      }),
      { numRuns: 2_000 },
    );
    expect(hits).toBeLessThan(40);
  });

  it('refuses to make an id for a slot it cannot encode', () => {
    expect(() => makeSessionId(-1, SEED)).toThrow(RangeError);
    expect(() => makeSessionId(MAX_ENCODED_SLOT + 1, SEED)).toThrow(RangeError);
  });
});

describe('finding the id in a request', () => {
  it('reads express-session cookies, signed or not, URL-encoded', () => {
    const id = makeSessionId(2, SEED);
    const signed = encodeURIComponent(`s:${id}.abcDEF123+/sig`);
    expect(idFromCookieValue(signed)).toBe(id);
    expect(idFromCookieValue(id)).toBe(id);
    expect(idFromCookieValue('"s:abc.sig"')).toBe('abc');
    expect(idFromCookieValue('%E0%A4%A')).toBeUndefined();
    expect(idFromCookieValue('')).toBeUndefined();
  });

  it('finds a cookie by exact name across Cookie header lines', () => {
    expect(cookieValue(['a=1; connect.sid=xyz; b=2'], 'connect.sid')).toBe('xyz');
    expect(cookieValue(['a=1', 'connect.sid=xyz'], 'connect.sid')).toBe('xyz');
    expect(cookieValue(['my.connect.sid=nope'], 'connect.sid')).toBeUndefined();
    expect(cookieValue([], 'connect.sid')).toBeUndefined();
  });

  it('reads the engine.io sid query parameter', () => {
    expect(sidFromTarget('/socket.io/?EIO=4&transport=polling&sid=abc%2Dd')).toBe('abc-d');
    expect(sidFromTarget('/socket.io/?EIO=4&transport=polling')).toBeUndefined();
    expect(sidFromTarget('/socket.io/?sid=%E0%A4%A')).toBeUndefined();
    expect(sidFromTarget('/plain')).toBeUndefined();
  });

  it('never throws on arbitrary input (fuzzed)', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 100 }), fc.string({ maxLength: 20 }), (text, name) => {
        idFromCookieValue(text);
        cookieValue([text], name);
        sidFromTarget(text);
      }),
    );
  });
});

describe('queryParam', () => {
  /** The plain reading it must agree with: split the query on '&', the first `name=` wins. */
  function reference(target: string, name: string): string | undefined {
    const q = target.indexOf('?');
    if (q === -1) return undefined;
    for (const part of target.slice(q + 1).split('&')) {
      if (part.startsWith(`${name}=`)) {
        try {
          return decodeURIComponent(part.slice(name.length + 1)) || undefined;
        } catch {
          return undefined;
        }
      }
    }
    return undefined;
  }

  it('reads a parameter as splitting the query would, for any target', () => {
    const piece = fc.constantFrom(
      'sid',
      'sid=',
      'sid=a',
      'EIO=4',
      '&',
      '?',
      '=',
      '%',
      '%2',
      '%41',
      'x',
      '',
    );
    fc.assert(
      fc.property(
        fc.array(piece, { maxLength: 12 }),
        fc.constantFrom('sid', 'EIO', 'x'),
        (parts, name) => {
          const target = `/p${parts.join('')}`;
          expect(queryParam(target, name)).toBe(reference(target, name));
        },
      ),
      { numRuns: 3000 },
    );
  });
});
