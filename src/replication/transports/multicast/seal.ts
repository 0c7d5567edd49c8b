import {
  createCipheriv,
  createDecipheriv,
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
 * 0      2    3      4         12         20        28
 * | "SM" | v1 | flags | sender | key salt | counter | body ...            | tag (16) |
 * ```
 * - `sender` is the sending node's random id; `key salt` is random per process start.
 * - Sealed (flag bit 0): the body is AES-256-GCM ciphertext under a key derived from the shared
 *   secret, the sender and the salt (so a counter nonce never repeats under one key), with the
 *   28-byte header plus the cluster name as associated data. Any change to any byte, a wrong
 *   secret or another cluster name fails authentication.
 * - Unsealed (`insecure: true` only): the body is plain, prefixed by a 4-byte hash of the
 *   cluster name, so clusters on one group still keep apart. Sealed and unsealed nodes never
 *   accept each other.
 * - The plain body starts with the sender's wall-clock time (8 bytes, ms) and a kind byte.
 *   Receivers reject times outside their clock-skew window and counters they have already seen
 *   ({@link ReplayWindow}), so a recorded datagram cannot be played back.
 */
export const HEADER_BYTES = 28;
export const TAG_BYTES = 16;
/** Bytes of the plain body before the message itself: time (8) + kind (1). */
export const INNER_BYTES = 9;
/** Envelope bytes around a message body when sealed. */
export const SEAL_OVERHEAD = HEADER_BYTES + TAG_BYTES + INNER_BYTES;

const MAGIC0 = 0x53; // 'S'
const MAGIC1 = 0x4d; // 'M'
const VERSION = 1;
const FLAG_SEALED = 1;

/** Why an envelope was refused. */
export type OpenFailure = 'truncated' | 'foreign' | 'auth';

export interface Opened {
  /** The sender's node id, as 16 hex digits. */
  readonly sender: string;
  /** The sender's per-start key salt, as 16 hex digits. */
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
  /** Per-sender keys already derived, by sender + salt (bounded). */
  private readonly keys = new Map<string, Buffer>();

  /**
   * `secret` is stretched with scrypt (salted with the cluster name) once per process, so a
   * short passphrase is not trivially guessed from captured traffic; a long random secret is
   * still what the documentation asks for.
   */
  constructor(secret: string | Buffer | undefined, cluster: string) {
    this.clusterBytes = Buffer.from(cluster, 'utf8');
    this.clusterTag = hashKey(cluster, 0x5eed5eed);
    this.sealed = secret !== undefined;
    this.master =
      secret === undefined
        ? undefined
        : scryptSync(secret, `sticky-mesh/v1/${cluster}`, 32, { N: 1 << 14, r: 8, p: 1 });
  }

  /** The AES key for one sender's start (its node id and salt). */
  keyFor(sender: Buffer, salt: Buffer): Buffer {
    const id = `${sender.toString('hex')}${salt.toString('hex')}`;
    let key = this.keys.get(id);
    if (!key) {
      key = Buffer.from(hkdfSync('sha256', this.master as Buffer, salt, sender, 32));
      if (this.keys.size >= 4096) this.keys.clear();
      this.keys.set(id, key);
    }
    return key;
  }
}

/** Seals outgoing envelopes for one node. */
export class Sealer {
  private readonly header = Buffer.alloc(HEADER_BYTES);
  private counter = 0;
  private readonly key: Buffer | undefined;

  constructor(
    private readonly ring: Keyring,
    nodeId: string,
    private readonly now: () => number = Date.now,
  ) {
    const sender = Buffer.from(nodeId, 'hex');
    if (sender.length !== 8) throw new Error('a node id is 16 hex digits');
    const salt = randomBytes(8);
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
    const inner = Buffer.allocUnsafe(INNER_BYTES);
    inner.writeDoubleBE(this.now(), 0);
    inner[8] = kind;
    if (!this.key) {
      const tag = Buffer.allocUnsafe(4);
      tag.writeUInt32BE(this.ring.clusterTag, 0);
      return Buffer.concat([header, tag, inner, body]);
    }
    const cipher = createCipheriv('aes-256-gcm', this.key, nonce(header));
    cipher.setAAD(Buffer.concat([header, this.ring.clusterBytes]));
    const out = Buffer.concat([
      header,
      cipher.update(inner),
      cipher.update(body),
      cipher.final(),
      cipher.getAuthTag(),
    ]);
    return out;
  }
}

/**
 * Opens an envelope from the network. Never throws: anything that is not exactly a well-formed
 * envelope of this cluster, under this secret, gives the reason it was refused.
 */
export function open(ring: Keyring, buf: Buffer): Opened | OpenFailure {
  if (buf.length < HEADER_BYTES + INNER_BYTES + (ring.sealed ? TAG_BYTES : 4)) return 'truncated';
  if (buf[0] !== MAGIC0 || buf[1] !== MAGIC1 || buf[2] !== VERSION) return 'foreign';
  const sealed = (buf[3] as number) === FLAG_SEALED;
  if ((buf[3] as number) & ~FLAG_SEALED || sealed !== ring.sealed) return 'foreign';
  const header = buf.subarray(0, HEADER_BYTES);
  const counter = buf.readUInt32BE(20) * 2 ** 32 + buf.readUInt32BE(24);
  let plain: Buffer;
  if (!sealed) {
    if (buf.readUInt32BE(HEADER_BYTES) !== ring.clusterTag) return 'foreign';
    plain = buf.subarray(HEADER_BYTES + 4);
  } else {
    const sender = buf.subarray(4, 12);
    const salt = buf.subarray(12, 20);
    try {
      const decipher = createDecipheriv('aes-256-gcm', ring.keyFor(sender, salt), nonce(header));
      decipher.setAAD(Buffer.concat([header, ring.clusterBytes]));
      decipher.setAuthTag(buf.subarray(buf.length - TAG_BYTES));
      plain = Buffer.concat([
        decipher.update(buf.subarray(HEADER_BYTES, buf.length - TAG_BYTES)),
        decipher.final(),
      ]);
    } catch {
      return 'auth';
    }
  }
  const time = plain.readDoubleBE(0);
  if (!Number.isFinite(time)) return 'auth';
  return {
    sender: buf.toString('hex', 4, 12),
    salt: buf.toString('hex', 12, 20),
    counter,
    time,
    kind: plain[8] as number,
    body: plain.subarray(INNER_BYTES),
  };
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
export class ReplayWindow {
  private readonly senders = new Map<string, { top: number; bits: Uint32Array; seen: number }>();

  constructor(
    private readonly maxSkewMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /** Whether the envelope is fresh; if so it is recorded. */
  accept(o: Opened): 'ok' | 'stale' | 'replay' {
    const now = this.now();
    if (Math.abs(now - o.time) > this.maxSkewMs) return 'stale';
    const id = `${o.sender}${o.salt}`;
    let s = this.senders.get(id);
    if (!s) {
      if (this.senders.size >= 4096) this.forget(now);
      s = { top: 0, bits: new Uint32Array(WINDOW / 32), seen: now };
      this.senders.set(id, s);
    }
    s.seen = now;
    const c = o.counter;
    if (c > s.top) {
      const shift = c - s.top;
      if (shift >= WINDOW) s.bits.fill(0);
      else for (let i = s.top + 1; i <= c; i++) clear(s.bits, i);
      s.top = c;
      set(s.bits, c);
      return 'ok';
    }
    if (s.top - c >= WINDOW || isSet(s.bits, c)) return 'replay';
    set(s.bits, c);
    return 'ok';
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
