import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { parseProxyHeader } from '../../src/routing/proxy-protocol.js';

const SIG = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];

function v2(command: number, family: number, body: number[]): Buffer {
  return Buffer.from([
    ...SIG,
    0x20 | command,
    family,
    body.length >> 8,
    body.length & 0xff,
    ...body,
  ]);
}

const ipv4Block = [203, 0, 113, 7, 10, 0, 0, 1, 0x1f, 0x90, 0x00, 0x50];

describe('PROXY protocol v1', () => {
  it.each([
    ['PROXY TCP4 203.0.113.7 10.0.0.1 56324 443\r\n', '203.0.113.7'],
    ['PROXY TCP6 2001:db8::1 2001:db8::2 56324 443\r\n', '2001:db8::1'],
    ['PROXY UNKNOWN\r\n', undefined],
    ['PROXY UNKNOWN ffff:f...f:ffff ffff:f...f:ffff 65535 65535\r\n', undefined],
  ])('%j', (line, source) => {
    const buf = Buffer.from(`${line}GET / HTTP/1.1\r\n\r\n`, 'latin1');
    expect(parseProxyHeader(buf)).toEqual({ status: 'ok', length: line.length, source });
  });

  it.each([
    'PROXY TCP4 203.0.113.7 10.0.0.1 56324\r\n',
    'PROXY TCP4 2001:db8::1 10.0.0.1 1 2\r\n',
    'PROXY TCP4 203.0.113.7 10.0.0.1 99999 443\r\n',
    'PROXY TCP5 203.0.113.7 10.0.0.1 1 2\r\n',
    'PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n',
  ])('rejects %j', (line) => {
    expect(parseProxyHeader(Buffer.from(line, 'latin1')).status).toBe('invalid');
  });

  it('accepts TCP6 with IPv4-mapped addresses and keys it as the IPv4 address (regression: it was refused)', () => {
    const line = 'PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 1234 80\r\n';
    expect(parseProxyHeader(Buffer.from(`${line}GET / HTTP/1.1\r\n\r\n`, 'latin1'))).toEqual({
      status: 'ok',
      length: line.length,
      source: '192.0.2.1',
    });
    // The same client as v1 TCP4 and as v2 TCP6 with a mapped source: one key for all three.
    const mapped = [...new Array(10).fill(0), 0xff, 0xff, 192, 0, 2, 1];
    const v2Header = v2(1, 0x21, [...mapped, ...mapped, 0x04, 0xd2, 0, 80]);
    expect(parseProxyHeader(v2Header)).toMatchObject({ status: 'ok', source: '192.0.2.1' });
    const tcp4 = Buffer.from('PROXY TCP4 192.0.2.1 192.0.2.2 1234 80\r\n', 'latin1');
    expect(parseProxyHeader(tcp4)).toMatchObject({ status: 'ok', source: '192.0.2.1' });
  });

  it('still refuses a TCP6 header whose source is written as plain IPv4', () => {
    const line = 'PROXY TCP6 192.0.2.1 ::ffff:192.0.2.2 1234 80\r\n';
    expect(parseProxyHeader(Buffer.from(line, 'latin1')).status).toBe('invalid');
  });

  it('waits for the line end, and gives up past 107 bytes', () => {
    expect(parseProxyHeader(Buffer.from('PROXY TCP4 203.0.113.7 10.0', 'latin1'))).toEqual({
      status: 'incomplete',
      need: 28,
    });
    expect(parseProxyHeader(Buffer.from('PRO', 'latin1'))).toEqual({
      status: 'incomplete',
      need: 6,
    });
    expect(parseProxyHeader(Buffer.from(`PROXY ${'x'.repeat(120)}`, 'latin1')).status).toBe(
      'invalid',
    );
  });

  it('is no PROXY header when a plain request arrives', () => {
    expect(parseProxyHeader(Buffer.from('GET / HTTP/1.1\r\n\r\n')).status).toBe('invalid');
  });
});

describe('PROXY protocol v2', () => {
  it('reads an IPv4 source and skips TLVs', () => {
    const header = v2(1, 0x11, [...ipv4Block, 0x04, 0x00, 0x01, 0x00]);
    const buf = Buffer.concat([header, Buffer.from('\x16\x03\x01')]);
    expect(parseProxyHeader(buf)).toEqual({
      status: 'ok',
      length: header.length,
      source: '203.0.113.7',
    });
  });

  it('reads an IPv6 source', () => {
    const src = [0x20, 0x01, 0x0d, 0xb8, ...new Array(11).fill(0), 1];
    const header = v2(1, 0x21, [...src, ...new Array(16).fill(0), 0, 80, 0, 80]);
    expect(parseProxyHeader(header)).toEqual({
      status: 'ok',
      length: header.length,
      source: '2001:db8::1',
    });
  });

  it('has no source for LOCAL (health checks) and UNSPEC', () => {
    expect(parseProxyHeader(v2(0, 0x00, []))).toEqual({
      status: 'ok',
      length: 16,
      source: undefined,
    });
    expect(parseProxyHeader(v2(1, 0x00, []))).toEqual({
      status: 'ok',
      length: 16,
      source: undefined,
    });
  });

  it('waits for the whole announced length and rejects short address blocks and bad versions', () => {
    const header = v2(1, 0x11, ipv4Block);
    expect(parseProxyHeader(header.subarray(0, 10))).toEqual({ status: 'incomplete', need: 16 });
    expect(parseProxyHeader(header.subarray(0, 20))).toEqual({ status: 'incomplete', need: 28 });
    expect(parseProxyHeader(v2(1, 0x11, [1, 2, 3])).status).toBe('invalid');
    const badVersion = Buffer.from(header);
    badVersion[12] = 0x11;
    expect(parseProxyHeader(badVersion).status).toBe('invalid');
  });
});

describe('PROXY parsing (fuzzed)', () => {
  it('never throws and never claims more bytes than it was given', () => {
    fc.assert(
      fc.property(
        fc.oneof(
          fc.uint8Array({ maxLength: 200 }),
          fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.concat([Buffer.from(SIG), b])),
          fc.string({ maxLength: 120 }).map((s) => Buffer.from(`PROXY ${s}`, 'latin1')),
        ),
        (buf) => {
          const r = parseProxyHeader(buf);
          if (r.status === 'ok') expect(r.length).toBeLessThanOrEqual(buf.length);
        },
      ),
    );
  });

  it('answers nothing new before the `need` an incomplete answer names', () => {
    const inputs = fc.oneof(
      fc.uint8Array({ maxLength: 120 }).map((b) => Buffer.concat([Buffer.from(SIG), b])),
      fc.string({ maxLength: 120 }).map((s) => Buffer.from(`PROXY ${s}`, 'latin1')),
      fc.constant(Buffer.from('PROXY TCP6 ::ffff:192.0.2.1 ::ffff:192.0.2.2 1234 80\r\n')),
      fc.constant(v2(1, 0x11, [...ipv4Block, 0x04, 0x00, 0x20, ...new Array(32).fill(7)])),
    );
    fc.assert(
      fc.property(inputs, (buf) => {
        for (let cut = 0; cut <= buf.length; cut++) {
          const r = parseProxyHeader(buf.subarray(0, cut));
          if (r.status !== 'incomplete') continue;
          expect(r.need).toBeGreaterThan(cut);
          for (let more = cut + 1; more < Math.min(r.need, buf.length + 1); more++) {
            expect(parseProxyHeader(buf.subarray(0, more)).status).toBe('incomplete');
          }
        }
      }),
      { numRuns: 200 },
    );
  });

  it('gives the same answer once complete however the header was split', () => {
    const header = Buffer.concat([v2(1, 0x11, ipv4Block), Buffer.from('GET / HTTP/1.1\r\n\r\n')]);
    fc.assert(
      fc.property(fc.nat(header.length), (cut) => {
        const r = parseProxyHeader(header.subarray(0, cut));
        if (cut < 28) expect(r).toMatchObject({ status: 'incomplete' });
        else expect(r).toEqual({ status: 'ok', length: 28, source: '203.0.113.7' });
      }),
    );
  });
});
