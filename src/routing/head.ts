import { HTTP_TOKEN } from '../validate.js';
import { parseProxyHeader } from './proxy-protocol.js';

/**
 * Reading an HTTP/1.x request head in the primary (proxy mode) and in workers between requests.
 * Pure code over bytes (no sockets: routing/head-reader.ts feeds it): it never throws and never
 * looks past the bytes it is given, so the caller's size cap bounds all work and memory.
 */

const LF = 0x0a;
const CR = 0x0d;

/**
 * Where a search for the end of a request head stands, so that the next bytes continue it
 * (`scanHeadEnd`): a head that arrives in pieces is scanned once in all, not once per piece.
 */
export interface HeadScan {
  /** Bytes of the head looked at so far (the next piece starts at this index). */
  readonly scanned: number;
  /** What the bytes so far leave pending. */
  readonly state: ScanState;
  /** Index just past the blank line that ends the head, or -1 while it has not been seen. */
  readonly end: number;
}

/** Only empty lines so far; in a line; a line just ended; a line ended, then CR. */
type ScanState = 'leading' | 'line' | 'lf' | 'lf-cr';

/** The scan of a head of which nothing has been seen yet. */
export const HEAD_SCAN: HeadScan = { scanned: 0, state: 'leading', end: -1 };

/**
 * Continues `scan` over `next`, the bytes of the head that follow the `scan.scanned` already
 * looked at; each byte is looked at once, and none past the head's end. Tolerates bare LF line
 * ends (`\n\n`, `\r\n\n`, `\n\r\n`) as HTTP parsers do, and skips empty lines before the request
 * line (RFC 9112 section 2.2), wherever the pieces were cut.
 */
export function scanHeadEnd(scan: HeadScan, next: Uint8Array): HeadScan {
  if (scan.end !== -1) return scan;
  let { state } = scan;
  let i = 0;
  if (state === 'leading') {
    // Leading empty lines are not the end of a head that has not started.
    while (i < next.length && (next[i] === CR || next[i] === LF)) i++;
    if (i === next.length) return { scanned: scan.scanned + i, state, end: -1 };
    state = 'line';
  }
  while (i < next.length) {
    if (state === 'line') {
      const lf = next.indexOf(LF, i);
      if (lf === -1) break;
      state = 'lf';
      i = lf + 1;
      continue;
    }
    // A line ended: the head ends if the next line is empty (LF, or CR LF).
    const byte = next[i];
    if (byte === LF) return { scanned: scan.scanned + i + 1, state, end: scan.scanned + i + 1 };
    state = state === 'lf' && byte === CR ? 'lf-cr' : 'line';
    i++;
  }
  return { scanned: scan.scanned + next.length, state, end: -1 };
}

/** Index just past the blank line that ends the request head in `buf`, or -1 (see `scanHeadEnd`). */
export function findHeadEnd(buf: Uint8Array): number {
  return scanHeadEnd(HEAD_SCAN, buf).end;
}

/** See `HeadParser#trickling`. */
const TRICKLE_READS = 8;
const TRICKLE_BYTES = 256;

/** What a head reader looks for, and how far. */
export interface HeadLimits {
  /** Most bytes read while looking for the end of the head (PROXY header included). */
  maxBytes: number;
  /** Expect a PROXY protocol (v1 or v2) header before the request. */
  proxyProtocol: boolean;
  /**
   * Also read the HTTP request head after any PROXY header. `false` stops right after the PROXY
   * header (what follows may be a TLS handshake for the workers to terminate).
   */
  untilHead: boolean;
}

/**
 * Collects bytes until the head is complete (or a limit is hit) and decides. Shared by both
 * read paths of routing/head-reader.ts, which only differ in how bytes arrive and how reading
 * stops (and waits, while `trickling`).
 *
 * Linear in the bytes read, however they are cut (a client trickling its head one byte per
 * segment included): each byte is copied into the buffer once, plus the copies of a buffer that
 * doubles as it grows, and looked at once by the end-of-head scan, which resumes where the
 * previous chunk left it; the PROXY header is parsed again only once enough has arrived to change
 * the answer. One growing buffer rather than a list of chunks: a trickled head would otherwise
 * hold one Buffer object per byte.
 */
export class HeadParser {
  /** Work done so far, for tests and benches: bytes copied, bytes handed to the parsers. */
  readonly work = { copied: 0, scanned: 0 };
  /** Chunks pushed so far (each one a read). */
  reads = 0;
  /** Every byte read so far is `buffer.subarray(0, total)`; the first chunk is kept uncopied. */
  private buffer: Buffer = Buffer.alloc(0);
  total = 0;
  /** The PROXY header's length: -1 while it is still expected, 0 when none is. */
  private proxyLength: number;
  /** The fewest bytes in all that can change the PROXY header's verdict. */
  private proxyNeed = 1;
  private scan: HeadScan = HEAD_SCAN;
  private source: string | undefined;

  constructor(private readonly options: HeadLimits) {
    this.proxyLength = options.proxyProtocol ? -1 : 0;
  }

  /**
   * Adds a chunk. Returns `undefined` while more is needed, else what was found: the head's end
   * (`bytes` after any PROXY header), a limit, or a bad PROXY header.
   */
  push(
    chunk: Buffer,
  ):
    | { status: 'ok'; all: Buffer; headLength: number }
    | { status: 'too-large' }
    | { status: 'bad-proxy'; reason: string }
    | undefined {
    const before = this.total;
    this.reads++;
    this.append(chunk);
    if (this.proxyLength === -1 && this.total >= this.proxyNeed) {
      const read = this.buffer.subarray(0, this.total);
      this.work.scanned += read.length;
      const proxy = parseProxyHeader(read);
      if (proxy.status === 'invalid') return { status: 'bad-proxy', reason: proxy.reason };
      if (proxy.status === 'incomplete') this.proxyNeed = proxy.need;
      else {
        this.proxyLength = proxy.length;
        this.source = proxy.source;
      }
    }
    if (this.proxyLength >= 0 && !this.options.untilHead) {
      return { status: 'ok', all: this.bytes(), headLength: 0 };
    }
    if (this.proxyLength >= 0) {
      // Only the new bytes, and only those within maxBytes: an end past it is too late anyway.
      const from = Math.max(before, this.proxyLength);
      const to = Math.min(this.total, this.options.maxBytes);
      if (to > from) {
        this.work.scanned += to - from;
        this.scan = scanHeadEnd(this.scan, this.buffer.subarray(from, to));
        if (this.scan.end !== -1) {
          return { status: 'ok', all: this.bytes(), headLength: this.scan.end };
        }
      }
    }
    // No head end within the first maxBytes: too large, however much more has arrived.
    if (this.total > this.options.maxBytes) return { status: 'too-large' };
    return undefined;
  }

  get proxySource(): string | undefined {
    return this.source;
  }

  /**
   * Whether the client trickles its head: many reads of a few bytes each (at least
   * `TRICKLE_READS`, fewer than `TRICKLE_BYTES` a read on average). Every read costs its reader
   * a system call and a wakeup whatever it holds, so the reader then spaces its reads and lets
   * bytes gather in the kernel meanwhile. Unspaced reads are at most
   * `TRICKLE_READS + maxBytes / TRICKLE_BYTES` (72 at the default 16 KB).
   */
  get trickling(): boolean {
    return this.reads >= TRICKLE_READS && this.total < TRICKLE_BYTES * this.reads;
  }

  /** Everything read after any PROXY header. */
  private bytes(): Buffer {
    return this.buffer.subarray(Math.max(this.proxyLength, 0), this.total);
  }

  private append(chunk: Buffer): void {
    const total = this.total + chunk.length;
    if (this.total === 0) {
      // Usually the whole head arrives at once: no copy at all.
      this.buffer = chunk;
    } else {
      if (total > this.buffer.length) {
        // The first chunk is exactly its own length (never written past). A buffer of our own
        // doubles, so it is copied O(log n) times, O(n) bytes in all; never past maxBytes but
        // for the chunk that crosses it, after which the parser decides.
        const capacity = Math.min(Math.max(2 * total, 1024), this.options.maxBytes);
        const grown = Buffer.allocUnsafe(Math.max(total, capacity));
        this.work.copied += this.buffer.copy(grown, 0, 0, this.total);
        this.buffer = grown;
      }
      this.work.copied += chunk.copy(this.buffer, this.total);
    }
    this.total = total;
  }
}

export interface RequestHead {
  method: string;
  /** The request target as sent (origin form `/path?query`, or absolute form). */
  target: string;
  /** Header values by lower-case name, in the order they appeared (repeated lines kept apart). */
  headers: Map<string, string[]>;
}

/**
 * Parses a complete request head (as delimited by `findHeadEnd`). Returns `undefined` for
 * anything that is not a plausible HTTP/1.x request head; the caller then treats the request as
 * carrying no routing information. Header names match exactly, case-insensitively; a name with
 * whitespace before the colon or any non-token character is invalid, as in RFC 9112.
 */
export function parseHead(head: Uint8Array): RequestHead | undefined {
  const text = Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('latin1');
  const lines = text.split(/\r?\n/);
  let first = 0;
  while (first < lines.length && lines[first] === '') first++;
  const requestLine = lines[first];
  if (requestLine === undefined) return undefined;
  const parts = requestLine.split(' ');
  const [method, target, version] = parts;
  if (parts.length !== 3 || !method || !target || !HTTP_TOKEN.test(method)) return undefined;
  if (!version || !/^HTTP\/1\.[01]$/.test(version)) return undefined;
  const headers = new Map<string, string[]>();
  for (let i = first + 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon);
    if (!HTTP_TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).trim();
    const key = name.toLowerCase();
    const values = headers.get(key);
    if (values) values.push(value);
    else headers.set(key, [value]);
  }
  return { method, target, headers };
}
