import { describe, expect, it } from 'vitest';
import { normaliseAddress } from '../../src/routing/address.js';

describe('normaliseAddress', () => {
  it.each([
    ['1.2.3.4', '1.2.3.4'],
    ['::ffff:1.2.3.4', '1.2.3.4'],
    ['::FFFF:1.2.3.4', '1.2.3.4'],
    ['::ffff:102:304', '1.2.3.4'],
    ['0:0:0:0:0:ffff:1.2.3.4', '1.2.3.4'],
    ['0000:0000:0000:0000:0000:ffff:0102:0304', '1.2.3.4'],
    ['::1', '::1'],
    ['0:0:0:0:0:0:0:1', '::1'],
    ['2001:DB8::1', '2001:db8::1'],
    ['2001:0db8:0000:0000:0000:0000:0000:0001', '2001:db8::1'],
    ['2001:db8:0:0:1:0:0:1', '2001:db8::1:0:0:1'],
    ['2001:db8:0:1:1:1:1:1', '2001:db8:0:1:1:1:1:1'],
    ['fe80::1%eth0', 'fe80::1'],
    ['::', '::'],
    ['::1.2.3.4', '::102:304'],
    ['64:ff9b::1.2.3.4', '64:ff9b::102:304'],
  ])('%s -> %s', (input, expected) => {
    expect(normaliseAddress(input)).toBe(expected);
  });

  it.each([
    undefined,
    '',
    'localhost',
    '1.2.3',
    '1.2.3.256',
    '::ffff:1.2.3.999',
    'gg::1',
    ':::',
    '1::2::3',
    'unknown',
  ])('rejects %s', (input) => {
    expect(normaliseAddress(input)).toBeUndefined();
  });

  it('maps every spelling of one IPv6 address to one key', () => {
    const forms = [
      '2001:db8::ff00:42:8329',
      '2001:0db8:0000:0000:0000:ff00:0042:8329',
      '2001:DB8:0:0:0:FF00:42:8329',
    ];
    expect(new Set(forms.map(normaliseAddress))).toEqual(new Set(['2001:db8::ff00:42:8329']));
  });
});
