import fc from 'fast-check';
import { describe, expect, it, vi } from 'vitest';
import {
  GATE_BYTES,
  HEADER_BYTES,
  INNER_BYTES,
  Keyring,
  type Opened,
  open,
  ReplayWindow,
  SEAL_OVERHEAD,
  Sealer,
  sameBytes,
  TAG_BYTES,
} from '../../src/replication/transports/multicast/seal.js';

// scrypt is deliberately slow (and 16 MiB): every keyring of the file is derived once, here.
const SECRET = 'a shared secret, 32 bytes long!!';
const sealed = new Keyring(SECRET, 'prod');
const sealedAgain = new Keyring(Buffer.from(SECRET), 'prod');
const otherSecret = new Keyring('another secret, also 32 bytes!!', 'prod');
const otherCluster = new Keyring(SECRET, 'staging');
const insecure = new Keyring(undefined, 'prod');
const insecureOther = new Keyring(undefined, 'staging');

const NODE = '0123456789abcdef';
const T0 = 1_700_000_000_000;

function isFailure(r: Opened | string): r is string {
  return typeof r === 'string';
}

function opened(r: Opened | string): Opened {
  if (isFailure(r)) throw new Error(`expected an opened envelope, got '${r}'`);
  return r;
}

describe('envelopes: sealed with AES-256-GCM, or plain with a cluster tag', () => {
  it('a sealed envelope opens to exactly what was sealed, under the same secret and cluster', () => {
    const sealer = new Sealer(sealed, NODE, () => T0);
    const body = Buffer.from('hello, mesh');
    const env = sealer.seal(4, body);
    expect(env.length).toBe(SEAL_OVERHEAD + body.length);
    // The body is not in clear.
    expect(env.includes(body)).toBe(false);
    const o = opened(open(sealedAgain, env));
    expect(o.sender).toBe(NODE);
    expect(o.salt).toMatch(/^[0-9a-f]{16}$/);
    expect(o.counter).toBe(1);
    expect(o.time).toBe(T0);
    expect(o.kind).toBe(4);
    expect(o.body.equals(body)).toBe(true);
  });

  it('an insecure envelope opens to what was sealed, the body in clear', () => {
    const sealer = new Sealer(insecure, NODE, () => T0);
    const body = Buffer.from('plain body');
    const env = sealer.seal(7, body);
    expect(env.includes(body)).toBe(true);
    const o = opened(open(new Keyring(undefined, 'prod'), env));
    expect(o).toMatchObject({ sender: NODE, counter: 1, time: T0, kind: 7 });
    expect(o.body.equals(body)).toBe(true);
  });

  it('round-trips any kind and body, sealed and insecure', () => {
    const s1 = new Sealer(sealed, NODE, () => T0);
    const s2 = new Sealer(insecure, NODE, () => T0);
    fc.assert(
      fc.property(
        fc.integer({ min: 0, max: 255 }),
        fc.uint8Array({ maxLength: 1500 }),
        (kind, bytes) => {
          const body = Buffer.from(bytes);
          for (const [sealer, ring] of [
            [s1, sealed],
            [s2, insecure],
          ] as const) {
            const o = opened(open(ring, sealer.seal(kind, body)));
            expect(o.kind).toBe(kind);
            expect(o.body.equals(body)).toBe(true);
          }
        },
      ),
      { numRuns: 200 },
    );
  });

  it('numbers envelopes 1, 2, 3... and salts each start of a sender differently', () => {
    const a = new Sealer(sealed, NODE);
    const counters = [1, 2, 3].map(() => opened(open(sealed, a.seal(1, Buffer.alloc(0)))).counter);
    expect(counters).toEqual([1, 2, 3]);
    const b = new Sealer(sealed, NODE);
    const saltA = opened(open(sealed, a.seal(1, Buffer.alloc(0)))).salt;
    const saltB = opened(open(sealed, b.seal(1, Buffer.alloc(0)))).salt;
    expect(saltA).not.toBe(saltB);
  });

  it('refuses a node id that is not 16 hex digits', () => {
    expect(() => new Sealer(sealed, 'abc')).toThrow(/16 hex digits/);
  });

  it('any single flipped bit or byte anywhere in a sealed envelope makes it fail, never throw', () => {
    const sealer = new Sealer(sealed, NODE, () => T0);
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 300 }),
        fc.integer({ min: 0, max: 255 }),
        fc.nat(),
        fc.integer({ min: 1, max: 255 }),
        (bytes, kind, where, mask) => {
          const env = sealer.seal(kind, Buffer.from(bytes));
          const at = where % env.length;
          const bad = Buffer.from(env);
          bad[at] = (bad[at] as number) ^ mask;
          const r = open(sealed, bad);
          expect(isFailure(r), `byte ${at} of ${env.length} ^ ${mask}`).toBe(true);
          // The header's magic, version and flags make it foreign; anything else fails the tag.
          expect(r).toBe(at < 4 ? 'foreign' : 'auth');
        },
      ),
      { numRuns: 3000 },
    );
  });

  it('every single-bit flip of one sealed envelope fails (exhaustive)', () => {
    const env = new Sealer(sealed, NODE, () => T0).seal(4, Buffer.from('{"user":"ann"}'));
    for (let at = 0; at < env.length; at++) {
      for (let bit = 0; bit < 8; bit++) {
        const bad = Buffer.from(env);
        bad[at] = (bad[at] as number) ^ (1 << bit);
        expect(isFailure(open(sealed, bad)), `byte ${at} bit ${bit}`).toBe(true);
      }
    }
  });

  it('random bytes never throw, sealed or insecure, with or without a plausible header', () => {
    const header = Buffer.from([0x53, 0x4d, 2]);
    fc.assert(
      fc.property(
        fc.uint8Array({ maxLength: 2000 }),
        fc.constantFrom(0, 1, 2, 255),
        fc.boolean(),
        (bytes, flags, plausible) => {
          let buf = Buffer.from(bytes);
          if (plausible) {
            buf = Buffer.concat([header, Buffer.from([flags]), buf]);
          }
          for (const ring of [sealed, insecure]) {
            const r = open(ring, buf);
            if (ring.sealed) expect(isFailure(r)).toBe(true);
            else if (!isFailure(r))
              expect(r.body.length).toBe(buf.length - HEADER_BYTES - 4 - INNER_BYTES);
          }
        },
      ),
      { numRuns: 2000 },
    );
  });

  it('a plausible insecure header with a right cluster tag but a non-finite time is refused', () => {
    const env = new Sealer(insecure, NODE, () => T0).seal(3, Buffer.alloc(0));
    const bad = Buffer.from(env);
    bad.writeDoubleBE(Number.NaN, 28);
    expect(open(insecure, bad)).toBe('auth');
  });

  it('a wrong secret fails authentication', () => {
    const env = new Sealer(otherSecret, NODE).seal(4, Buffer.from('x'));
    expect(open(sealed, env)).toBe('auth');
    expect(open(otherSecret, env)).not.toBe('auth');
  });

  it('another cluster name fails authentication (sealed) or is foreign (insecure)', () => {
    const env = new Sealer(otherCluster, NODE).seal(4, Buffer.from('x'));
    expect(open(sealed, env)).toBe('auth');
    const plain = new Sealer(insecureOther, NODE).seal(4, Buffer.from('x'));
    expect(open(insecure, plain)).toBe('foreign');
  });

  it('sealed and insecure nodes never accept each other', () => {
    const fromSealed = new Sealer(sealed, NODE).seal(4, Buffer.from('x'));
    const fromInsecure = new Sealer(insecure, NODE).seal(4, Buffer.from('x'.repeat(40)));
    expect(open(insecure, fromSealed)).toBe('foreign');
    expect(open(sealed, fromInsecure)).toBe('foreign');
  });

  it('anything shorter than the smallest envelope is truncated', () => {
    const env = new Sealer(sealed, NODE).seal(4, Buffer.alloc(0));
    expect(env.length).toBe(HEADER_BYTES + GATE_BYTES + INNER_BYTES + TAG_BYTES);
    for (let n = 0; n < env.length; n++) {
      expect(open(sealed, env.subarray(0, n)), `${n} bytes`).toBe('truncated');
    }
    const plain = new Sealer(insecure, NODE).seal(4, Buffer.alloc(0));
    for (let n = 0; n < plain.length; n++) {
      expect(open(insecure, plain.subarray(0, n)), `${n} bytes`).toBe('truncated');
    }
  });

  it('a sealed envelope cut short anywhere fails', () => {
    const env = new Sealer(sealed, NODE).seal(4, Buffer.from('x'.repeat(100)));
    for (let n = 0; n < env.length; n++) {
      const r = open(sealed, env.subarray(0, n));
      expect(isFailure(r), `${n} bytes`).toBe(true);
    }
  });

  it('compares byte strings of any lengths', () => {
    expect(sameBytes(Buffer.from('abc'), Buffer.from('abc'))).toBe(true);
    expect(sameBytes(Buffer.from('abc'), Buffer.from('abd'))).toBe(false);
    expect(sameBytes(Buffer.from('abc'), Buffer.from('ab'))).toBe(false);
  });
});

function env(counter: number, time = T0, sender = NODE, salt = '00112233aabbccdd'): Opened {
  return { sender, salt, counter, time, kind: 3, body: Buffer.alloc(0) };
}

describe('replay window', () => {
  it('accepts a counter once', () => {
    const w = new ReplayWindow(60_000, () => T0);
    expect(w.accept(env(1))).toBe('ok');
    expect(w.accept(env(1))).toBe('replay');
    expect(w.accept(env(2))).toBe('ok');
    expect(w.accept(env(2))).toBe('replay');
    expect(w.accept(env(1))).toBe('replay');
  });

  it('accepts counters out of order within 1,024 of the highest, each once', () => {
    const w = new ReplayWindow(60_000, () => T0);
    expect(w.accept(env(2000))).toBe('ok');
    for (const c of [1999, 1500, 977, 1998]) {
      expect(w.accept(env(c)), `${c}`).toBe('ok');
      expect(w.accept(env(c)), `${c} again`).toBe('replay');
    }
    // Older than the window: refused even though never seen.
    expect(w.accept(env(976))).toBe('replay');
    expect(w.accept(env(1))).toBe('replay');
  });

  it('a jump of more than the window forgets the old bitmap without accepting replays', () => {
    const w = new ReplayWindow(60_000, () => T0);
    for (let c = 1; c <= 10; c++) w.accept(env(c));
    expect(w.accept(env(5000))).toBe('ok');
    expect(w.accept(env(5000 - 1024))).toBe('replay');
    expect(w.accept(env(5000 - 1023))).toBe('ok');
    expect(w.accept(env(4999))).toBe('ok');
    expect(w.accept(env(4999))).toBe('replay');
  });

  it('keeps senders, and starts of one sender (salts), apart', () => {
    const w = new ReplayWindow(60_000, () => T0);
    expect(w.accept(env(1, T0, NODE))).toBe('ok');
    expect(w.accept(env(1, T0, 'fedcba9876543210'))).toBe('ok');
    expect(w.accept(env(1, T0, NODE, 'ffffffffffffffff'))).toBe('ok');
    expect(w.accept(env(1, T0, NODE))).toBe('replay');
  });

  it('refuses times outside the skew window, either way, without recording them', () => {
    const w = new ReplayWindow(1000, () => T0);
    expect(w.accept(env(1, T0 - 1001))).toBe('stale');
    expect(w.accept(env(2, T0 + 1001))).toBe('stale');
    expect(w.accept(env(3, T0 - 1000))).toBe('ok');
    expect(w.accept(env(4, T0 + 1000))).toBe('ok');
    // A stale envelope did not consume its counter.
    expect(w.accept(env(1))).toBe('ok');
  });

  it('behaves as "each counter once, nothing older than 1,024 below the highest" (model)', () => {
    fc.assert(
      fc.property(
        fc.array(
          fc.oneof(
            fc.integer({ min: 0, max: 3000 }),
            fc.integer({ min: 1, max: 40 }),
            fc.integer({ min: 0, max: 100_000 }),
          ),
          { maxLength: 400 },
        ),
        (counters) => {
          const w = new ReplayWindow(60_000, () => T0);
          const seen = new Set<number>();
          let top = 0;
          for (const c of counters) {
            const expected = c > top || (top - c < 1024 && !seen.has(c)) ? 'ok' : 'replay';
            expect(w.accept(env(c)), `counter ${c} (top ${top})`).toBe(expected);
            if (expected === 'ok') {
              seen.add(c);
              top = Math.max(top, c);
            }
          }
        },
      ),
      { numRuns: 500 },
    );
  });

  it('with a real envelope: the same datagram twice is a replay', () => {
    const sealer = new Sealer(sealed, NODE, () => T0);
    const w = new ReplayWindow(60_000, () => T0 + 5);
    const a = sealer.seal(3, Buffer.from('a'));
    const b = sealer.seal(3, Buffer.from('b'));
    expect(w.accept(opened(open(sealed, b)))).toBe('ok');
    expect(w.accept(opened(open(sealed, a)))).toBe('ok');
    expect(w.accept(opened(open(sealed, a)))).toBe('replay');
    expect(w.accept(opened(open(sealed, b)))).toBe('replay');
  });
});

describe('forged envelopes are refused at the gate, before any per-sender work', () => {
  /** A sealed-looking envelope from a sender without the secret: any sender, salt and size. */
  function forged(sender: Buffer, salt: Buffer, size: number, time = T0): Buffer {
    const buf = Buffer.alloc(size);
    buf[0] = 0x53;
    buf[1] = 0x4d;
    buf[2] = 2;
    buf[3] = 1;
    sender.copy(buf, 4);
    salt.copy(buf, 12);
    buf.writeUInt32BE(1, 24);
    buf.writeDoubleBE(time, 28);
    return buf;
  }

  it('regression: no key is derived for a forged envelope, whatever its sender and salt', () => {
    const ring = new Keyring(SECRET, 'prod');
    const keyFor = vi.spyOn(ring, 'keyFor');
    fc.assert(
      fc.property(
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.uint8Array({ minLength: 8, maxLength: 8 }),
        fc.integer({ min: 53, max: 1400 }),
        (sender, salt, size) => {
          const r = open(ring, forged(Buffer.from(sender), Buffer.from(salt), size));
          expect(r).toBe(size < SEAL_OVERHEAD ? 'truncated' : 'auth');
          expect(keyFor).not.toHaveBeenCalled();
        },
      ),
      { numRuns: 300 },
    );
  });

  it('a genuine envelope with its gate tag altered fails at the gate', () => {
    const ring = new Keyring(SECRET, 'prod');
    const env = new Sealer(ring, NODE, () => T0).seal(4, Buffer.from('x'));
    const keyFor = vi.spyOn(ring, 'keyFor');
    for (let i = 0; i < GATE_BYTES; i++) {
      const bad = Buffer.from(env);
      bad[HEADER_BYTES + i] = (bad[HEADER_BYTES + i] as number) ^ 1;
      expect(open(ring, bad)).toBe('auth');
    }
    expect(keyFor).not.toHaveBeenCalled();
    expect(opened(open(ring, env)).body.toString()).toBe('x');
  });

  it('with a freshness window: a replayed or stale envelope is refused before decryption', () => {
    const ring = new Keyring(SECRET, 'prod');
    const w = new ReplayWindow(1000, () => T0);
    const sealer = new Sealer(ring, NODE, () => T0);
    const env = sealer.seal(4, Buffer.from('once'));
    expect(opened(open(ring, env, w)).body.toString()).toBe('once');
    const old = new Sealer(ring, NODE, () => T0 - 5000).seal(4, Buffer.from('old'));
    const keyFor = vi.spyOn(ring, 'keyFor');
    expect(open(ring, env, w)).toBe('replay');
    expect(open(ring, old, w)).toBe('stale');
    expect(keyFor).not.toHaveBeenCalled();
  });

  it('a genuine header with an altered body spends its counter: played again it is a replay', () => {
    const ring = new Keyring(SECRET, 'prod');
    const w = new ReplayWindow(60_000, () => T0);
    const env = new Sealer(ring, NODE, () => T0).seal(4, Buffer.from('body'));
    const bad = Buffer.from(env);
    bad[HEADER_BYTES + GATE_BYTES + 2] = (bad[HEADER_BYTES + GATE_BYTES + 2] as number) ^ 1;
    expect(open(ring, bad, w)).toBe('auth');
    expect(open(ring, bad, w)).toBe('replay');
    expect(open(ring, env, w)).toBe('replay');
  });

  it('the time travels in the authenticated header: altering it fails the gate', () => {
    const ring = new Keyring(SECRET, 'prod');
    const env = new Sealer(ring, NODE, () => T0).seal(4, Buffer.from('x'));
    const bad = Buffer.from(env);
    bad.writeDoubleBE(T0 + 1, 28);
    expect(open(ring, bad)).toBe('auth');
  });

  it('a version 1 envelope (before the gate tag) is foreign', () => {
    const env = new Sealer(sealed, NODE, () => T0).seal(4, Buffer.from('x'));
    const v1 = Buffer.from(env);
    v1[2] = 1;
    expect(open(sealed, v1)).toBe('foreign');
  });
});
