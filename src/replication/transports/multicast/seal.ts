import {
  createCipheriv,
  createDecipheriv,
  hash,
  hkdfSync,
  randomBytes,
  scryptSync,
  timingSafeEqual,
} from 'node:crypto';
import { hashKey } from '../../../hash.js';

/**
 * The envelope of everything sent between machines: each UDP datagram and each TCP frame.
 *
 * ```
 * 0      2    3       4        12         20        28     36
 * | "SM" | v2 | flags | sender | key salt | counter | time | check | body ...       | tag (16) |
 * ```
 * - `sender` is the sending node's random id; `key salt` is random per sealer (each process
 *   start, each state-transfer connection); `time` is the sender's wall clock when it sealed
 *   the envelope (ms since the epoch, a float64).
 * - Sealed (flag bit 0): the body (a kind byte, then the message) is AES-256-GCM ciphertext
 *   under a key derived from the shared secret, the sender and the salt (so a counter nonce
 *   never repeats under one key), with the 36-byte header plus the cluster name as associated
 *   data. `check` is the gate tag: the first 8 bytes of SHA-256(gate key || header || GCM tag),
 *   the gate key derived once from the secret. It is verified first, at a fixed cost whatever
 *   the sender, salt or size: an envelope from anyone without the secret fails there, before any
 *   per-sender key is derived or anything is decrypted. Then the time and the counter are checked
 *   ({@link ReplayWindow}), still before decryption, so a recorded envelope played back costs no
 *   more. Any change to any byte, a wrong secret or another cluster name fails authentication.
 * - Unsealed (`insecure: true` only): `check` is a 4-byte hash of the cluster name, so clusters
 *   on one group still keep apart, and the body is plain. Sealed and unsealed nodes never accept
 *   each other.
 * - Version 1 (before the gate tag, time inside the ciphertext) and version 2 nodes count each
 *   other's envelopes as foreign and ignore them.
 */
export const HEADER_BYTES = 36;
export const TAG_BYTES = 16;
/** Bytes of the gate tag of a sealed envelope (after the header). */
export const GATE_BYTES = 8;
/** Bytes of the cluster tag of an insecure envelope (after the header). */
const CLUSTER_TAG_BYTES = 4;
/** Bytes of the plain body before the message itself: the kind. */
export const INNER_BYTES = 1;
/** Envelope bytes around a message body when sealed. */
export const SEAL_OVERHEAD = HEADER_BYTES + GATE_BYTES + INNER_BYTES + TAG_BYTES;

const MAGIC0 = 0x53; // 'S'
const MAGIC1 = 0x4d; // 'M'
const VERSION = 2;
const FLAG_SEALED = 1;
const TIME_AT = 28;
/** Bytes of the gate key, prefixed to what the gate hashes (the input length is fixed). */
const GATE_KEY_BYTES = 64;

/** Why an envelope was refused. */
export type OpenFailure = 'truncated' | 'foreign' | 'auth' | 'stale' | 'replay';

export interface Opened {
  /** The sender's node id, as 16 hex digits. */
  readonly sender: string;
  /** The sender's per-sealer key salt, as 16 hex digits. */
  readonly salt: string;
  readonly counter: number;
  /** The sender's clock when it sealed the envelope, ms since the epoch. */
  readonly time: number;
  readonly kind: number;
  readonly body: Buffer;
}

/** The secret material a cluster shares: a derived master key, or none (insecure mode). */
export class Keyring {
  readonly sealed: boolean;
  readonly clusterBytes: Buffer;
  readonly clusterTag: number;
  private readonly master: Buffer | undefined;
  /** The gate key, then room for a header and a GCM tag: what the gate tag hashes. */
  private readonly gateInput = Buffer.alloc(GATE_KEY_BYTES + HEADER_BYTES + TAG_BYTES);
  /** The associated data of the envelope being sealed or opened: its header, the cluster name. */
  private readonly aadScratch: Buffer;
  /** Per-sender keys already derived, by sender + salt (bounded). */
  private readonly keys = new Map<string, Buffer>();

  /**
   * `secret` is stretched with scrypt (salted with the cluster name) once per process, so a
   * short passphrase is not trivially guessed from captured traffic; a long random secret is
   * still what the documentation asks for.
   */
  constructor(secret: string | Buffer | undefined, cluster: string) {
    this.clusterBytes = Buffer.from(cluster, 'utf8');
    this.aadScratch = Buffer.concat([Buffer.alloc(HEADER_BYTES), this.clusterBytes]);
    this.clusterTag = hashKey(cluster, 0x5eed5eed);
    this.sealed = secret !== undefined;
    this.master =
      secret === undefined
        ? undefined
        : scryptSync(secret, `sticky-mesh/v1/${cluster}`, 32, { N: 1 << 14, r: 8, p: 1 });
    if (this.master) {
      // A per-sender key's info is an 8-byte node id: this longer info never collides with one.
      const gateKey = hkdfSync('sha256', this.master, Buffer.alloc(0), 'sticky-mesh gate', 64);
      Buffer.from(gateKey).copy(this.gateInput, 0);
    }
  }

  /**
   * The AES key for one sender's sealer (its node id and salt). Derived (HKDF) the first time;
   * callers ask only for envelopes whose gate tag was right, so only senders that hold the
   * secret ever cost a derivation.
   */
  keyFor(
    sender: Buffer,
    salt: Buffer,
    id = `${sender.toString('hex')}${salt.toString('hex')}`,
  ): Buffer {
    let key = this.keys.get(id);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', this.master as Buffer, salt, sender, 32));
      if (this.keys.size >= 4096) this.keys.clear();
      this.keys.set(id, key);
    }
    return key;
  }

  /**
   * The gate tag of a sealed envelope: SHA-256 over the gate key, the header and the GCM tag
   * (a fixed-length input, so a secret prefix is a sound keyed hash), cut to 8 bytes, as 16 hex
   * digits (a hex digest costs less than a Buffer one).
   */
  gate(header: Buffer, tag: Buffer): string {
    header.copy(this.gateInput, GATE_KEY_BYTES, 0, HEADER_BYTES);
    tag.copy(this.gateInput, GATE_KEY_BYTES + HEADER_BYTES);
    return hash('sha256', this.gateInput, 'hex').slice(0, 2 * GATE_BYTES);
  }

  /** The AES-GCM associated data of an envelope with this header (valid until the next call). */
  aad(header: Buffer): Buffer {
    header.copy(this.aadScratch, 0, 0, HEADER_BYTES);
    return this.aadScratch;
  }

  /** Whether `buf` carries, at `at`, the gate tag `hex` (compared without an early exit). */
  static sameGate(hex: string, buf: Buffer, at: number): boolean {
    const hi = Number.parseInt(hex.slice(0, 8), 16) ^ (buf.readUInt32BE(at) as number);
    const lo = Number.parseInt(hex.slice(8, 16), 16) ^ (buf.readUInt32BE(at + 4) as number);
    return (hi | lo) === 0;
  }
}

/** Seals outgoing envelopes for one node (or one state-transfer connection). */
export class Sealer {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private counter = 0;
  private readonly key: Buffer | undefined;
  /** This sealer's salt, as 16 hex digits (what {@link Opened.salt} shows at the other end). */
  readonly salt: string;

  constructor(
    private readonly ring: Keyring,
    nodeId: string,
    private readonly now: () => number = Date.now,
  ) {
    const sender = Buffer.from(nodeId, 'hex');
    if (sender.length !== 8) throw new Error('a node id is 16 hex digits');
    const salt = randomBytes(8);
    this.salt = salt.toString('hex');
    this.header[0] = MAGIC0;
    this.header[1] = MAGIC1;
    this.header[2] = VERSION;
    this.header[3] = ring.sealed ? FLAG_SEALED : 0;
    sender.copy(this.header, 4);
    salt.copy(this.header, 12);
    this.key = ring.sealed ? ring.keyFor(sender, salt) : undefined;
  }

  seal(kind: number, body: Buffer): Buffer {
    const counter = ++this.counter;
    const header = Buffer.from(this.header);
    header.writeUInt32BE(Math.floor(counter / 2 ** 32), 20);
    header.writeUInt32BE(counter >>> 0, 24);
    header.writeDoubleBE(this.now(), TIME_AT);
    const inner = Buffer.allocUnsafe(INNER_BYTES);
    inner[0] = kind;
    if (!this.key) {
      const tag = Buffer.allocUnsafe(CLUSTER_TAG_BYTES);
      tag.writeUInt32BE(this.ring.clusterTag, 0);
      return Buffer.concat([header, tag, inner, body]);
    }
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce(header));
    cipher.setAAD(this.ring.aad(header));
    const encrypted = [cipher.update(inner), cipher.update(body), cipher.final()];
    const tag = cipher.getAuthTag();
    const gate = Buffer.from(this.ring.gate(header, tag), 'hex');
    return Buffer.concat([header, gate, ...encrypted, tag]);
  }
}

/**
 * Where freshness is checked: the clock-skew window and the counters already seen. Given to
 * {@link open}, it is consulted after the gate tag and before decryption; an envelope is
 * recorded once it authenticated (or once its gate tag proved its header genuine but its body
 * failed: that counter is spent).
 */
export interface Freshness {
  /** `id`: the sender's node id and salt, as 32 hex digits. */
  check(id: string, counter: number, time: number): 'ok' | 'stale' | 'replay';
  record(id: string, counter: number): void;
}

/**
 * Opens an envelope from the network. Never throws: anything that is not exactly a well-formed
 * envelope of this cluster, under this secret (and, with `fresh`, not stale or replayed), gives
 * the reason it was refused. In that order: truncated, foreign, the gate tag (auth), the time
 * (stale), the counter (replay), and only then decryption (auth).
 */
export function open(ring: Keyring, buf: Buffer, fresh?: Freshness): Opened | OpenFailure {
  const check = ring.sealed ? GATE_BYTES : CLUSTER_TAG_BYTES;
  if (buf.length < HEADER_BYTES + check + INNER_BYTES + (ring.sealed ? TAG_BYTES : 0)) {
    return 'truncated';
  }
  if (buf[0] !== MAGIC0 || buf[1] !== MAGIC1 || buf[2] !== VERSION) return 'foreign';
  const sealed = (buf[3] as number) === FLAG_SEALED;
  if ((buf[3] as number) & ~FLAG_SEALED || sealed !== ring.sealed) return 'foreign';
  const header = buf.subarray(0, HEADER_BYTES);
  let tag: Buffer | undefined;
  if (sealed) {
    tag = buf.subarray(buf.length - TAG_BYTES);
    if (!Keyring.sameGate(ring.gate(header, tag), buf, HEADER_BYTES)) return 'auth';
  } else if (buf.readUInt32BE(HEADER_BYTES) !== ring.clusterTag) {
    return 'foreign';
  }
  const time = buf.readDoubleBE(TIME_AT);
  if (!Number.isFinite(time)) return 'auth';
  // Sender and salt, as 32 hex digits: the key of the replay window and of the key cache.
  const id = buf.toString('hex', 4, 20);
  const counter = buf.readUInt32BE(20) * 2 ** 32 + buf.readUInt32BE(24);
  if (fresh) {
    const verdict = fresh.check(id, counter, time);
    if (verdict !== 'ok') return verdict;
  }
  let plain: Buffer;
  if (!tag) {
    plain = buf.subarray(HEADER_BYTES + check);
  } else {
    try {
      const key = ring.keyFor(buf.subarray(4, 12), buf.subarray(12, 20), id);
      const decipher = createDecipheriv('aes-256-gcm', key, nonce(header));
      decipher.setAAD(ring.aad(header));
      decipher.setAuthTag(tag);
      plain = decipher.update(buf.subarray(HEADER_BYTES + check, buf.length - TAG_BYTES));
      decipher.final(); // GCM holds nothing back; this checks the tag (throws if wrong)
    } catch {
      // The gate tag was right, so the header is genuine: its counter is spent either way.
      fresh?.record(id, counter);
      return 'auth';
    }
  }
  fresh?.record(id, counter);
  const sender = id.slice(0, 16);
  const salt = id.slice(16);
  return { sender, salt, counter, time, kind: plain[0] as number, body: plain.subarray(1) };
}

function nonce(header: Buffer): Buffer {
  const iv = Buffer.alloc(12);
  header.copy(iv, 4, 20, 28);
  return iv;
}

/** Constant-time comparison of two byte strings of any lengths. */
export function sameBytes(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const WINDOW = 1024;

/**
 * Which envelopes of each sender have been seen: the highest counter and a bitmap of the 1,024
 * below it (as IPsec does). A counter seen before, or older than the bitmap, is a replay. State
 * for a sender that has been silent longer than the clock-skew window is forgotten: anything
 * it sent earlier is rejected by its time alone.
 */
export class ReplayWindow implements Freshness {
  private readonly senders = new Map<string, { top: number; bits: Uint32Array; seen: number }>();

  constructor(
    private readonly maxSkewMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the envelope is fresh; if so it is recorded. */
  accept(o: Opened): 'ok' | 'stale' | 'replay' {
    const id = `${o.sender}${o.salt}`;
    const verdict = this.check(id, o.counter, o.time);
    if (verdict === 'ok') this.record(id, o.counter);
    return verdict;
  }

  /** Whether an envelope would be fresh, recording nothing. */
  check(id: string, c: number, time: number): 'ok' | 'stale' | 'replay' {
    if (Math.abs(this.now() - time) > this.maxSkewMs) return 'stale';
    const s = this.senders.get(id);
    if (!s || c > s.top) return 'ok';
    return s.top - c >= WINDOW || isSet(s.bits, c) ? 'replay' : 'ok';
  }

  /** Records a counter as seen (whether or not it was fresh: recording twice is harmless). */
  record(id: string, c: number): void {
    const now = this.now();
    let s = this.senders.get(id);
    if (!s) {
      if (this.senders.size >= 4096) this.forget(now);
      s = { top: 0, bits: new Uint32Array(WINDOW / 32), seen: now };
      this.senders.set(id, s);
    }
    s.seen = now;
    if (c > s.top) {
      const shift = c - s.top;
      if (shift >= WINDOW) s.bits.fill(0);
      else for (let i = s.top + 1; i <= c; i++) clear(s.bits, i);
      s.top = c;
    } else if (s.top - c >= WINDOW) {
      return;
    }
    set(s.bits, c);
  }

  private forget(now: number): void {
    for (const [id, s] of this.senders) {
      if (now - s.seen > 2 * this.maxSkewMs) this.senders.delete(id);
    }
    if (this.senders.size >= 4096) this.senders.clear();
  }
}

function set(bits: Uint32Array, c: number): void {
  const i = c % WINDOW;
  bits[i >>> 5] = (bits[i >>> 5] as number) | (1 << (i & 31));
}
function clear(bits: Uint32Array, c: number): void {
  const i = c % WINDOW;
  bits[i >>> 5] = (bits[i >>> 5] as number) & ~(1 << (i & 31));
}
function isSet(bits: Uint32Array, c: number): boolean {
  const i = c % WINDOW;
  return ((bits[i >>> 5] as number) & (1 << (i & 31))) !== 0;
}
