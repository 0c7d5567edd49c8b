import { LIMITS, MAX_CHANGE_OVERHEAD } from '../../limits.js';
import type { Change } from '../../table.js';
import { decodeChange, encodeChange } from '../multicast/codec.js';

/**
 * The replication data channel between the primary's hub and one worker: a stream socket of its
 * own (not the IPC channel, which carries connection handoffs), carrying length-prefixed binary
 * frames. A frame is `[u32 length of what follows][u8 kind][body]`. Changes travel in the
 * multicast codec's binary form (`encodeChange`): a worker encodes each write once, and the hub
 * passes the same bytes on to every other worker.
 */
export const Frame = {
  /**
   * worker -> hub: writes, each answered by the hub in order (`[u32 count][change]...`).
   * hub -> worker: changes to apply (another process's writes, or the winning record of a write
   * the hub refused), the same layout.
   */
  Changes: 1,
  /** worker -> hub: a read missed `[u32 id][sid]`: ask the other machines. */
  Query: 2,
  /**
   * hub -> worker: the worker's writes up to number `[u32 answered]` are answered; refused ones
   * follow, each `[u32 number][u8 lost][u16 length][reason]`.
   */
  Ack: 3,
  /** hub -> worker: the reads on miss `[u32 id]...` may go on. */
  Found: 4,
  /** hub -> worker: part of the full state `[u8 done][u32 count][change]...`. */
  State: 5,
} as const;
export type FrameKind = (typeof Frame)[keyof typeof Frame];

/**
 * Bytes of changes a frame holds before the next frame starts (one change larger than this goes
 * in a frame of its own).
 */
export const FRAME_TARGET = 1024 * 1024;

/**
 * Largest frame either side accepts: one change of the largest session and its header. Longer
 * is a broken or hostile stream, which is closed.
 */
export const MAX_FRAME = LIMITS.maxSessionBytes + MAX_CHANGE_OVERHEAD + 1024;

/** Encoded changes in runs of at most `FRAME_TARGET` bytes (a larger one alone), in order. */
export function runs(encoded: readonly Buffer[]): Buffer[][] {
  const out: Buffer[][] = [];
  let run: Buffer[] = [];
  let bytes = 0;
  for (const b of encoded) {
    if (run.length > 0 && bytes + b.length > FRAME_TARGET) {
      out.push(run);
      run = [];
      bytes = 0;
    }
    run.push(b);
    bytes += b.length;
  }
  if (run.length > 0) out.push(run);
  return out;
}

/** Changes frames of `encoded`, as many as `FRAME_TARGET` asks for. */
export function changesFrames(encoded: readonly Buffer[]): Buffer[] {
  return runs(encoded).map(changesFrame);
}

/** A frame of `kind` holding `parts`, in order. */
export function frame(kind: FrameKind, parts: readonly Buffer[], extra?: Buffer): Buffer {
  let size = 1 + (extra?.length ?? 0);
  for (const p of parts) size += p.length;
  const out = Buffer.allocUnsafe(4 + size);
  out.writeUInt32BE(size, 0);
  out[4] = kind;
  let at = 5;
  if (extra) at += extra.copy(out, at);
  for (const p of parts) at += p.copy(out, at);
  return out;
}

/** A Changes frame of already encoded changes. */
export function changesFrame(encoded: readonly Buffer[]): Buffer {
  const count = Buffer.allocUnsafe(4);
  count.writeUInt32BE(encoded.length, 0);
  return frame(Frame.Changes, encoded, count);
}

/** A Changes frame of `changes`. */
export function encodeChangesFrame(changes: readonly Change[]): Buffer {
  return changesFrame(changes.map(encodeChange));
}

/** One change of a Changes or State body, and where it lies in it. */
export interface FramedChange {
  change: Change;
  start: number;
  end: number;
}

/**
 * The changes of a Changes body (`[u32 count][change]...`, from `at`); a malformed one ends the
 * list (`complete` false; `count` says how many the sender meant). `limits` false: changes over
 * the size limits decode too (the hub checks them itself, to tell the writer why it refuses).
 */
export function readChanges(
  body: Buffer,
  at = 0,
  limits = true,
): { changes: FramedChange[]; count: number; complete: boolean } {
  if (body.length < at + 4) return { changes: [], count: 0, complete: false };
  const count = body.readUInt32BE(at);
  let pos = at + 4;
  const changes: FramedChange[] = [];
  for (let i = 0; i < count; i++) {
    const next = pos < body.length ? decodeChange(body, pos, limits) : undefined;
    if (!next) return { changes, count, complete: false };
    changes.push({ change: next[0], start: pos, end: next[1] });
    pos = next[1];
  }
  return { changes, count, complete: pos === body.length };
}

/** A refused write in an Ack frame. */
export interface Refusal {
  /** The write's number (the worker's writes are numbered from 1 in the order sent). */
  n: number;
  reason: string;
  /** It lost to a newer record (sent to the worker before the Ack). */
  lost: boolean;
}

export function ackFrame(answered: number, refusals: readonly Refusal[]): Buffer {
  const head = Buffer.allocUnsafe(4);
  head.writeUInt32BE(answered, 0);
  const parts = [head];
  for (const r of refusals) {
    const reason = Buffer.from(r.reason.slice(0, 1000), 'utf8');
    const h = Buffer.allocUnsafe(7);
    h.writeUInt32BE(r.n, 0);
    h[4] = r.lost ? 1 : 0;
    h.writeUInt16BE(reason.length, 5);
    parts.push(h, reason);
  }
  return frame(Frame.Ack, parts);
}

export function readAck(body: Buffer): { answered: number; refusals: Refusal[] } | undefined {
  if (body.length < 4) return undefined;
  const answered = body.readUInt32BE(0);
  const refusals: Refusal[] = [];
  let at = 4;
  while (at < body.length) {
    if (at + 7 > body.length) return undefined;
    const n = body.readUInt32BE(at);
    const lost = body[at + 4] === 1;
    const len = body.readUInt16BE(at + 5);
    at += 7;
    if (at + len > body.length) return undefined;
    refusals.push({ n, lost, reason: body.toString('utf8', at, at + len) });
    at += len;
  }
  return { answered, refusals };
}

export function idsFrame(kind: typeof Frame.Found, ids: readonly number[]): Buffer {
  const b = Buffer.allocUnsafe(ids.length * 4);
  for (let i = 0; i < ids.length; i++) b.writeUInt32BE(ids[i] as number, i * 4);
  return frame(kind, [b]);
}

export function readIds(body: Buffer): number[] | undefined {
  if (body.length % 4 !== 0) return undefined;
  const ids: number[] = [];
  for (let at = 0; at < body.length; at += 4) ids.push(body.readUInt32BE(at));
  return ids;
}

export function queryFrame(id: number, sid: string): Buffer {
  const b = Buffer.allocUnsafe(4);
  b.writeUInt32BE(id, 0);
  return frame(Frame.Query, [b, Buffer.from(sid, 'utf8')]);
}

export function readQuery(body: Buffer): { id: number; sid: string } | undefined {
  if (body.length < 5) return undefined;
  return { id: body.readUInt32BE(0), sid: body.toString('utf8', 4) };
}

export function stateFrame(encoded: readonly Buffer[], done: boolean): Buffer {
  const head = Buffer.allocUnsafe(5);
  head[0] = done ? 1 : 0;
  head.writeUInt32BE(encoded.length, 1);
  return frame(Frame.State, encoded, head);
}

/**
 * Cuts a byte stream into frames. `consumed` counts the bytes of every frame handed out (the
 * position a fence is compared with); a length over `MAX_FRAME` is an error (the stream is
 * unusable from there).
 */
export class FrameReader {
  consumed = 0;
  private pending: Buffer[] = [];
  private pendingBytes = 0;

  /**
   * Feeds a chunk; calls `onFrame` for each whole frame. Returns false on a bad length.
   * `transient`: the chunk's memory is reused once this returns (a socket's read buffer), so
   * what is kept of it (a frame's start) is copied, and the bodies `onFrame` gets are valid
   * only during that call.
   */
  push(chunk: Buffer, onFrame: (kind: number, body: Buffer) => void, transient = false): boolean {
    let buf = chunk;
    if (this.pendingBytes > 0) {
      this.pending.push(transient ? Buffer.from(chunk) : chunk);
      this.pendingBytes += chunk.length;
      if (this.pendingBytes < 4) return true;
      const need = peekLength(this.pending);
      if (need > MAX_FRAME) return false;
      if (this.pendingBytes < 4 + need) return true;
      buf = Buffer.concat(this.pending, this.pendingBytes);
      this.pending = [];
      this.pendingBytes = 0;
    }
    let at = 0;
    while (buf.length - at >= 4) {
      const len = buf.readUInt32BE(at);
      if (len > MAX_FRAME || len === 0) return false;
      if (buf.length - at < 4 + len) break;
      this.consumed += 4 + len;
      onFrame(buf[at + 4] as number, buf.subarray(at + 5, at + 4 + len));
      at += 4 + len;
    }
    if (at < buf.length) {
      // What stays must outlive the chunk (a concatenation is this reader's own already).
      const rest = transient && buf === chunk ? Buffer.from(buf.subarray(at)) : buf.subarray(at);
      this.pending = [rest];
      this.pendingBytes = rest.length;
    }
    return true;
  }
}

function peekLength(parts: readonly Buffer[]): number {
  const head = Buffer.concat(parts, 4);
  return head.readUInt32BE(0);
}
