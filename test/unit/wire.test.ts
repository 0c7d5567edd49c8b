import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { checkChange, parseChange } from '../../src/replication/wire.js';

const version = { t: 1_700_000_000_000, c: 3, n: 'a1b2c3d4e5f60708' };

describe('session changes received over IPC', () => {
  it('accepts exactly the three well-formed kinds, copying only known fields', () => {
    expect(
      parseChange({ op: 'set', sid: 's', data: '{}', expiresAt: 5, version, extra: 1 }),
    ).toEqual({
      op: 'set',
      sid: 's',
      data: '{}',
      expiresAt: 5,
      version,
    });
    expect(parseChange({ op: 'touch', sid: 's', expiresAt: 5, version })).toMatchObject({
      op: 'touch',
    });
    expect(parseChange({ op: 'destroy', sid: 's', version })).toMatchObject({ op: 'destroy' });
  });

  it.each([
    ['no op', { sid: 's', version }],
    ['unknown op', { op: 'drop', sid: 's', version }],
    ['empty sid', { op: 'destroy', sid: '', version }],
    ['huge sid', { op: 'destroy', sid: 'x'.repeat(300), version }],
    ['set without data', { op: 'set', sid: 's', expiresAt: 1, version }],
    ['set with object data', { op: 'set', sid: 's', data: {}, expiresAt: 1, version }],
    ['fractional expiry', { op: 'touch', sid: 's', expiresAt: 1.5, version }],
    ['bad version', { op: 'destroy', sid: 's', version: { t: -1, c: 0, n: 'x' } }],
    ['no version', { op: 'destroy', sid: 's' }],
    ['a sid of 257 characters', { op: 'destroy', sid: 'x'.repeat(257), version }],
    ['a sid with a lone surrogate', { op: 'destroy', sid: 'a\uDC00', version }],
    [
      'a session over the largest any store takes',
      { op: 'set', sid: 's', data: 'x'.repeat(64 * 1024 * 1024 + 1), expiresAt: 1, version },
    ],
  ])('drops a change with %s', (_, value) => {
    expect(parseChange(value)).toBeUndefined();
  });

  it('takes what the store takes: a sid of 256 characters, a session of exactly the limit', () => {
    expect(parseChange({ op: 'destroy', sid: 'x'.repeat(256), version })).toBeDefined();
    const data = 'é'.repeat(32 * 1024 * 1024); // 2 bytes each in UTF-8: exactly 64 MiB
    expect(parseChange({ op: 'set', sid: 's', data, expiresAt: 1, version })).toBeDefined();
    expect(parseChange({ op: 'set', sid: 's', data: `${data}x`, expiresAt: 1, version })).toBe(
      undefined,
    );
  });

  it('says why it refuses a change (what the hub answers a worker)', () => {
    expect(checkChange({ op: 'destroy', sid: 'x'.repeat(300), version })).toBe(
      'its session id is 300 characters long, over the limit of 256',
    );
    expect(checkChange({ op: 'set', sid: 's', expiresAt: 1, version })).toBe(
      'a set without session data',
    );
  });

  it('never throws, whatever arrives', () => {
    fc.assert(
      fc.property(fc.anything(), (value) => {
        parseChange(value);
      }),
      { numRuns: 2_000 },
    );
  });
});
