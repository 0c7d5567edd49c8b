import { isVersion } from '../../clock.js';
import { LIMITS, MAX_CHANGE_OVERHEAD } from '../../limits.js';
import type { Change } from '../../table.js';
import { MAX_SID_LENGTH } from '../../wire.js';

/**
 * The messages nodes exchange between machines, and their binary forms (the bodies inside the
 * envelopes of seal.ts). Decoding never throws: a body that is not exactly one well-formed
 * message gives `undefined`, to be dropped and counted.
 *
 * Node ids travel as 8 bytes (16 hex digits in memory); sequence numbers as 6 bytes.
 */
export const Kind = {
  Join: 1,
  Greet: 2,
  Heartbeat: 3,
  Data: 4,
  Nack: 5,
  Gone: 6,
  Leave: 7,
  Query: 8,
  SyncRequest: 16,
  SyncHeader: 17,
  SyncChunk: 18,
  SyncEnd: 19,
} as const;

/** A part of one encoded change; a change larger than a datagram travels in several. */
export interface Piece {
  /** Bytes of the whole encoded change. */
  readonly total: number;
  /** Where this part starts in it. */
  readonly offset: number;
  readonly bytes: Buffer;
}

export type MeshMessage =
  /** A node starting up asks to be greeted. `port`: its state-transfer (TCP) port. */
  | { readonly k: 'join'; readonly seq: number; readonly port: number }
  /** A synced node's answer to a join, naming the joiner. */
  | { readonly k: 'greet'; readonly to: string; readonly seq: number; readonly port: number }
  /**
   * Liveness, and what a receiver needs to notice loss: the last sequence number sent (a lost
   * last datagram shows), and a digest of the sender's sessions (replicas that differ show).
   */
  | {
      readonly k: 'heartbeat';
      readonly seq: number;
      readonly port: number;
      readonly synced: boolean;
      /** The sender knows of no gap in what it received (its digest is final, for now). */
      readonly complete?: boolean;
      readonly digest: number;
      readonly count: number;
    }
  /** Changes, numbered per sender so that receivers notice gaps. */
  | { readonly k: 'data'; readonly seq: number; readonly pieces: readonly Piece[] }
  /** "Send these again", to one node: inclusive ranges of its sequence numbers. */
  | { readonly k: 'nack'; readonly to: string; readonly ranges: readonly [number, number][] }
  /** "I no longer hold what you asked for, from `seq` down": the asker fetches my state. */
  | { readonly k: 'gone'; readonly to: string; readonly seq: number }
  | { readonly k: 'leave'; readonly seq: number }
  /** "Who holds this session?": a read missed here; holders send its record again. */
  | { readonly k: 'query'; readonly sid: string };

export type SyncFrame =
  /** "Send me your whole state": to one node (`to`), answered by echoing `challenge`. */
  | { readonly k: 'request'; readonly challenge: Buffer; readonly to: string }
  /** First frame of a state transfer: what it covers, per node: the last sequence included. */
  | {
      readonly k: 'header';
      readonly challenge: Buffer;
      readonly vector: ReadonlyMap<string, number>;
    }
  | { readonly k: 'chunk'; readonly changes: readonly Change[] }
  | { readonly k: 'end'; readonly total: number };

/** Largest sequence number (6 bytes). */
export const MAX_SEQ = 2 ** 48 - 1;
const MAX_RANGES = 64;
/** Largest change a data message reassembles: the largest session and its id, version, expiry. */
const MAX_DATA_BYTES = LIMITS.maxSessionBytes + MAX_CHANGE_OVERHEAD;

export function encodeMessage(msg: MeshMessage): [kind: number, body: Buffer] {
  switch (msg.k) {
    case 'join': {
      const b = Buffer.allocUnsafe(8);
      b.writeUIntBE(msg.seq, 0, 6);
      b.writeUInt16BE(msg.port, 6);
      return [Kind.Join, b];
    }
    case 'greet': {
      const b = Buffer.allocUnsafe(16);
      b.write(msg.to, 0, 8, 'hex');
      b.writeUIntBE(msg.seq, 8, 6);
      b.writeUInt16BE(msg.port, 14);
      return [Kind.Greet, b];
    }
    case 'heartbeat': {
      const b = Buffer.allocUnsafe(17);
      b.writeUIntBE(msg.seq, 0, 6);
      b.writeUInt16BE(msg.port, 6);
      b[8] = (msg.synced ? 1 : 0) | (msg.complete ? 2 : 0);
      b.writeUInt32BE(msg.digest >>> 0, 9);
      b.writeUInt32BE(msg.count >>> 0, 13);
      return [Kind.Heartbeat, b];
    }
    case 'data': {
      const parts: Buffer[] = [];
      const head = Buffer.allocUnsafe(7);
      head.writeUIntBE(msg.seq, 0, 6);
      head[6] = msg.pieces.length;
      parts.push(head);
      for (const p of msg.pieces) {
        const h = Buffer.allocUnsafe(10);
        h.writeUInt32BE(p.total, 0);
        h.writeUInt32BE(p.offset, 4);
        h.writeUInt16BE(p.bytes.length, 8);
        parts.push(h, p.bytes);
      }
      return [Kind.Data, Buffer.concat(parts)];
    }
    case 'nack': {
      const ranges = msg.ranges.slice(0, MAX_RANGES);
      const b = Buffer.allocUnsafe(9 + 12 * ranges.length);
      b.write(msg.to, 0, 8, 'hex');
      b[8] = ranges.length;
      ranges.forEach(([from, to], i) => {
        b.writeUIntBE(from, 9 + 12 * i, 6);
        b.writeUIntBE(to, 15 + 12 * i, 6);
      });
      return [Kind.Nack, b];
    }
    case 'gone': {
      const b = Buffer.allocUnsafe(14);
      b.write(msg.to, 0, 8, 'hex');
      b.writeUIntBE(msg.seq, 8, 6);
      return [Kind.Gone, b];
    }
    case 'leave':
      return [Kind.Leave, uint48(msg.seq)];
    case 'query':
      return [Kind.Query, Buffer.from(msg.sid, 'utf8')];
  }
}

export function decodeMessage(kind: number, b: Buffer): MeshMessage | undefined {
  try {
    switch (kind) {
      case Kind.Join:
        if (b.length !== 8) return undefined;
        return { k: 'join', seq: b.readUIntBE(0, 6), port: b.readUInt16BE(6) };
      case Kind.Greet:
        if (b.length !== 16) return undefined;
        return {
          k: 'greet',
          to: b.toString('hex', 0, 8),
          seq: b.readUIntBE(8, 6),
          port: b.readUInt16BE(14),
        };
      case Kind.Heartbeat:
        if (b.length !== 17 || (b[8] as number) > 3) return undefined;
        return {
          k: 'heartbeat',
          seq: b.readUIntBE(0, 6),
          port: b.readUInt16BE(6),
          synced: ((b[8] as number) & 1) === 1,
          ...(((b[8] as number) & 2) === 2 ? { complete: true } : {}),
          digest: b.readUInt32BE(9),
          count: b.readUInt32BE(13),
        };
      case Kind.Data:
        return decodeData(b);
      case Kind.Nack: {
        const n = b[8];
        if (n === undefined || n === 0 || n > MAX_RANGES || b.length !== 9 + 12 * n) {
          return undefined;
        }
        const ranges: [number, number][] = [];
        for (let i = 0; i < n; i++) {
          const from = b.readUIntBE(9 + 12 * i, 6);
          const to = b.readUIntBE(15 + 12 * i, 6);
          if (from < 1 || to < from) return undefined;
          ranges.push([from, to]);
        }
        return { k: 'nack', to: b.toString('hex', 0, 8), ranges };
      }
      case Kind.Gone:
        if (b.length !== 14) return undefined;
        return { k: 'gone', to: b.toString('hex', 0, 8), seq: b.readUIntBE(8, 6) };
      case Kind.Leave:
        if (b.length !== 6) return undefined;
        return { k: 'leave', seq: b.readUIntBE(0, 6) };
      case Kind.Query: {
        if (b.length === 0 || b.length > 4 * MAX_SID_LENGTH) return undefined;
        const sid = b.toString('utf8');
        if (sid.length > MAX_SID_LENGTH || Buffer.byteLength(sid) !== b.length) return undefined;
        return { k: 'query', sid };
      }
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

function decodeData(b: Buffer): MeshMessage | undefined {
  if (b.length < 7) return undefined;
  const seq = b.readUIntBE(0, 6);
  const n = b[6] as number;
  if (seq < 1 || n === 0) return undefined;
  const pieces: Piece[] = [];
  let at = 7;
  for (let i = 0; i < n; i++) {
    if (at + 10 > b.length) return undefined;
    const total = b.readUInt32BE(at);
    const offset = b.readUInt32BE(at + 4);
    const len = b.readUInt16BE(at + 8);
    at += 10;
    if (len === 0 || at + len > b.length || total > MAX_DATA_BYTES || offset + len > total) {
      return undefined;
    }
    pieces.push({ total, offset, bytes: b.subarray(at, at + len) });
    at += len;
  }
  if (at !== b.length) return undefined;
  return { k: 'data', seq, pieces };
}

const OP_SET = 1;
const OP_DESTROY = 2;
const OP_TOUCH = 3;

/** One change in its binary form (how it travels in datagrams and state transfers). */
export function encodeChange(c: Change): Buffer {
  const sidLen = Buffer.byteLength(c.sid);
  const nLen = Buffer.byteLength(c.version.n);
  const dataLen = c.op === 'set' ? Buffer.byteLength(c.data) : 0;
  const size =
    1 +
    2 +
    sidLen +
    6 +
    4 +
    1 +
    nLen +
    (c.op === 'destroy' ? 0 : 8) +
    (c.op === 'set' ? 4 + dataLen : 0);
  const b = Buffer.allocUnsafe(size);
  let at = 0;
  b[at++] = c.op === 'set' ? OP_SET : c.op === 'destroy' ? OP_DESTROY : OP_TOUCH;
  b.writeUInt16BE(sidLen, at);
  at += 2;
  at += b.write(c.sid, at, 'utf8');
  b.writeUIntBE(c.version.t, at, 6);
  b.writeUInt32BE(c.version.c, at + 6);
  b[at + 10] = nLen;
  at += 11;
  at += b.write(c.version.n, at, 'utf8');
  if (c.op !== 'destroy') {
    b.writeDoubleBE(c.expiresAt, at);
    at += 8;
  }
  if (c.op === 'set') {
    b.writeUInt32BE(dataLen, at);
    at += 4;
    b.write(c.data, at, 'utf8');
  }
  return b;
}

/**
 * Decodes one change at `start`; returns it and where the next begins, or `undefined`. With
 * `limits` false, an id or data over the size limits still decodes (the caller checks them, to
 * say why it refuses the change).
 */
export function decodeChange(b: Buffer, start = 0, limits = true): [Change, number] | undefined {
  try {
    let at = start;
    const op = b[at++];
    const sidLen = b.readUInt16BE(at);
    at += 2;
    if ((limits && sidLen === 0) || at + sidLen > b.length) return undefined;
    const sid = b.toString('utf8', at, at + sidLen);
    at += sidLen;
    if (limits && sid.length > MAX_SID_LENGTH) return undefined;
    const t = b.readUIntBE(at, 6);
    const c = b.readUInt32BE(at + 6);
    const nLen = b[at + 10] as number;
    at += 11;
    if (at + nLen > b.length) return undefined;
    const version = { t, c, n: b.toString('utf8', at, at + nLen) };
    at += nLen;
    if (!isVersion(version)) return undefined;
    if (op === OP_DESTROY) return [{ op: 'destroy', sid, version }, at];
    if (op !== OP_SET && op !== OP_TOUCH) return undefined;
    const expiresAt = b.readDoubleBE(at);
    at += 8;
    if (!Number.isSafeInteger(expiresAt)) return undefined;
    if (op === OP_TOUCH) return [{ op: 'touch', sid, expiresAt, version }, at];
    const dataLen = b.readUInt32BE(at);
    at += 4;
    if (at + dataLen > b.length || (limits && dataLen > LIMITS.maxSessionBytes)) return undefined;
    const data = b.toString('utf8', at, at + dataLen);
    return [{ op: 'set', sid, data, expiresAt, version }, at + dataLen];
  } catch {
    return undefined;
  }
}

/** Decodes a buffer holding exactly a run of changes, or `undefined` if any is malformed. */
export function decodeChanges(b: Buffer): Change[] | undefined {
  const out: Change[] = [];
  let at = 0;
  while (at < b.length) {
    const next = decodeChange(b, at);
    if (!next) return undefined;
    out.push(next[0]);
    at = next[1];
  }
  return out;
}

export function encodeSyncFrame(f: SyncFrame): [kind: number, body: Buffer] {
  switch (f.k) {
    case 'request': {
      const b = Buffer.alloc(24);
      f.challenge.copy(b, 0, 0, 16);
      b.write(f.to, 16, 8, 'hex');
      return [Kind.SyncRequest, b];
    }
    case 'header': {
      const b = Buffer.allocUnsafe(16 + 4 + 14 * f.vector.size);
      f.challenge.copy(b, 0);
      b.writeUInt32BE(f.vector.size, 16);
      let at = 20;
      for (const [id, seq] of f.vector) {
        b.write(id, at, 8, 'hex');
        b.writeUIntBE(seq, at + 8, 6);
        at += 14;
      }
      return [Kind.SyncHeader, b];
    }
    case 'chunk':
      return [Kind.SyncChunk, Buffer.concat(f.changes.map(encodeChange))];
    case 'end':
      return [Kind.SyncEnd, uint48(f.total)];
  }
}

export function decodeSyncFrame(kind: number, b: Buffer): SyncFrame | undefined {
  try {
    switch (kind) {
      case Kind.SyncRequest:
        if (b.length !== 24) return undefined;
        return {
          k: 'request',
          challenge: Buffer.from(b.subarray(0, 16)),
          to: b.toString('hex', 16, 24),
        };
      case Kind.SyncHeader: {
        if (b.length < 20) return undefined;
        const n = b.readUInt32BE(16);
        if (b.length !== 20 + 14 * n) return undefined;
        const vector = new Map<string, number>();
        for (let i = 0, at = 20; i < n; i++, at += 14) {
          vector.set(b.toString('hex', at, at + 8), b.readUIntBE(at + 8, 6));
        }
        return { k: 'header', challenge: Buffer.from(b.subarray(0, 16)), vector };
      }
      case Kind.SyncChunk: {
        const changes = decodeChanges(b);
        return changes ? { k: 'chunk', changes } : undefined;
      }
      case Kind.SyncEnd:
        return b.length === 6 ? { k: 'end', total: b.readUIntBE(0, 6) } : undefined;
      default:
        return undefined;
    }
  } catch {
    return undefined;
  }
}

/** Whether a string is a node id as it travels (16 lowercase hex digits). */
export function isNodeId(value: string): boolean {
  return /^[0-9a-f]{16}$/.test(value);
}

/** A 6-byte big-endian unsigned integer (sequence numbers, counts). */
function uint48(value: number): Buffer {
  const b = Buffer.allocUnsafe(6);
  b.writeUIntBE(value, 0, 6);
  return b;
}
