import { fmix32 } from '../hash.js';
import { compareVersions, type Version, ZERO } from './clock.js';

/**
 * A replicated change to one session. Every replica applies the same set of changes, in any
 * order and any number of times, and ends in the same state:
 * - `set` and `destroy` are last-writer-wins by version: the newest replaces the record whole.
 *   A `destroy` leaves a tombstone, so an older `set` that arrives late cannot bring it back.
 * - `touch` never changes data: it raises the expiry of the record it is newer than. Touches
 *   newer than the current record are remembered until a newer `set` or `destroy` supersedes
 *   them, so the result does not depend on whether a touch or the set before it came first.
 */
export type Change =
  | { op: 'set'; sid: string; data: string; expiresAt: number; version: Version }
  | { op: 'destroy'; sid: string; version: Version }
  | { op: 'touch'; sid: string; expiresAt: number; version: Version };

/** One session as a replica holds it. `data` is the session as JSON; `null` is a tombstone. */
export interface SessionRecord {
  readonly sid: string;
  readonly data: string | null;
  /** ms since the epoch; for a tombstone, when it may be forgotten. */
  readonly expiresAt: number;
  readonly version: Version;
}

interface Entry {
  data: string | null;
  /** Expiry the winning `set` carried (a tombstone: when it may be purged). */
  setExpiresAt: number;
  version: Version;
  /** Touches newer than `version`: only their expiries matter. */
  touches: { expiresAt: number; version: Version }[];
}

export interface TableOptions {
  /** How long a destroyed (or expired) session's tombstone is kept, in ms. */
  tombstoneTtl: number;
  now?: () => number;
}

/**
 * The sessions of one replica: a pure data structure (no timers, no I/O) that applies
 * changes and answers reads. Expired records are never returned; `sweep()` turns them into
 * tombstones and forgets tombstones older than `tombstoneTtl`.
 */
export class SessionTable {
  /**
   * An order-independent digest of every record (XOR of a hash per session of its id, version,
   * expiry and kind): replicas holding the same records have the same digest, whatever order
   * they applied them in. Replication compares digests to find replicas that drifted apart.
   */
  digest = 0;
  /**
   * Records that hold session data: live sessions, and expired ones not swept yet (never served).
   * Kept as changes are applied, so reading it costs nothing.
   */
  sessions = 0;
  /** Characters of session JSON those records hold (bytes, for ASCII JSON). */
  dataLength = 0;
  private readonly entries = new Map<string, Entry>();
  private readonly now: () => number;
  private readonly options: TableOptions;

  constructor(options: TableOptions) {
    this.options = { ...options };
    this.now = options.now ?? Date.now;
  }

  /** Applies a change; returns whether it changed anything visible to reads or replicas. */
  apply(change: Change): boolean {
    const entry = this.entries.get(change.sid);
    const before = entry ? entryHash(change.sid, entry) : 0;
    const dataBefore = entry?.data ?? null;
    const changed = this.applyTo(entry, change);
    if (changed) {
      const after = this.entries.get(change.sid) as Entry;
      this.digest = (this.digest ^ before ^ entryHash(change.sid, after)) >>> 0;
      this.count(dataBefore, -1);
      this.count(after.data, 1);
    }
    return changed;
  }

  /** Adds (`sign` 1) or removes (-1) a record's data in `sessions` and `dataLength`. */
  private count(data: string | null, sign: 1 | -1): void {
    if (data === null) return;
    this.sessions += sign;
    this.dataLength += sign * data.length;
  }

  private applyTo(entry: Entry | undefined, change: Change): boolean {
    const current = entry?.version ?? ZERO;
    if (change.op === 'touch') {
      if (compareVersions(change.version, current) <= 0) return false;
      const s = entry ?? this.empty(change.sid);
      return addTouch(s, change.expiresAt, change.version);
    }
    if (compareVersions(change.version, current) <= 0) return false;
    const s = entry ?? this.empty(change.sid);
    s.version = change.version;
    s.touches = s.touches.filter((t) => compareVersions(t.version, change.version) > 0);
    if (change.op === 'set') {
      s.data = change.data;
      s.setExpiresAt = change.expiresAt;
    } else {
      s.data = null;
      s.setExpiresAt = this.now() + this.options.tombstoneTtl;
    }
    return true;
  }

  /** The session's JSON if it exists and has not expired. */
  get(sid: string): string | undefined {
    const entry = this.entries.get(sid);
    if (!entry || entry.data === null || expiry(entry) <= this.now()) return undefined;
    return entry.data;
  }

  /** The version of the record of `sid`, if any (`record(sid)?.version`, without the copy). */
  versionOf(sid: string): Version | undefined {
    const entry = this.entries.get(sid);
    return !entry || compareVersions(entry.version, ZERO) === 0 ? undefined : entry.version;
  }

  /** The current record, tombstones and expired records included (for replication). */
  record(sid: string): SessionRecord | undefined {
    const entry = this.entries.get(sid);
    if (!entry || compareVersions(entry.version, ZERO) === 0) return undefined;
    return { sid, data: entry.data, expiresAt: expiry(entry), version: entry.version };
  }

  /** Live, unexpired sessions. */
  *live(): IterableIterator<[string, string]> {
    const now = this.now();
    for (const [sid, entry] of this.entries) {
      if (entry.data !== null && expiry(entry) > now) yield [sid, entry.data];
    }
  }

  /** Every record, for a full state transfer; `changes()` of it rebuild this table elsewhere. */
  *changes(): IterableIterator<Change> {
    const now = this.now();
    for (const [sid, entry] of this.entries) {
      // What the next sweep forgets is not passed on (it would only be swept again there).
      if (this.deadline(entry) > now) yield* entryChanges(sid, entry);
    }
  }

  /** What the table holds of one session, as changes (empty if it holds nothing). */
  changesOf(sid: string): Change[] {
    const entry = this.entries.get(sid);
    return entry ? [...entryChanges(sid, entry)] : [];
  }

  /**
   * Forgets what can no longer matter: tombstones older than `tombstoneTtl`, and sessions that
   * expired more than `tombstoneTtl` ago. Until then an expired session is kept (never served),
   * so a touch or write still in flight from another replica lands the same way everywhere.
   * Returns how many records were removed.
   */
  sweep(): number {
    const now = this.now();
    let n = 0;
    for (const [sid, entry] of this.entries) {
      if (this.deadline(entry) <= now) {
        this.digest = (this.digest ^ entryHash(sid, entry)) >>> 0;
        this.count(entry.data, -1);
        this.entries.delete(sid);
        n++;
      }
    }
    return n;
  }

  /**
   * Drops a session's record entirely, tombstone and all: for what the cluster no longer knows
   * of after this replica was cut off longer than `tombstoneTtl`. Returns whether it held one.
   */
  forget(sid: string): boolean {
    const entry = this.entries.get(sid);
    if (!entry) return false;
    this.digest = (this.digest ^ entryHash(sid, entry)) >>> 0;
    this.count(entry.data, -1);
    this.entries.delete(sid);
    return true;
  }

  /** How long tombstones are kept, in ms. */
  get tombstoneTtl(): number {
    return this.options.tombstoneTtl;
  }

  /** Changes it (the hub takes its workers' stores' setting); applies to tombstones made from now. */
  set tombstoneTtl(ms: number) {
    this.options.tombstoneTtl = ms;
  }

  /** Number of records held, tombstones included (a memory figure, not a session count). */
  get size(): number {
    return this.entries.size;
  }

  /** When a record may be forgotten. */
  private deadline(entry: Entry): number {
    return entry.data === null && entry.version !== ZERO
      ? entry.setExpiresAt
      : expiry(entry) + this.options.tombstoneTtl;
  }

  private empty(sid: string): Entry {
    const entry: Entry = { data: null, setExpiresAt: 0, version: ZERO, touches: [] };
    this.entries.set(sid, entry);
    return entry;
  }
}

/** The changes that rebuild one entry elsewhere: its winning set or destroy, and its touches. */
function* entryChanges(sid: string, entry: Entry): IterableIterator<Change> {
  if (compareVersions(entry.version, ZERO) !== 0) {
    yield entry.data === null
      ? { op: 'destroy', sid, version: entry.version }
      : { op: 'set', sid, data: entry.data, expiresAt: entry.setExpiresAt, version: entry.version };
  }
  for (const t of entry.touches) {
    yield { op: 'touch', sid, expiresAt: t.expiresAt, version: t.version };
  }
}

/**
 * A record's share of the digest: `hashKey` of `${sid}|${t}|${c}|${n}|${expiry}` (the value every
 * version of this package computes, so replicas of different versions compare equal), fed
 * character by character without building the string (two per write, on the hot path).
 */
function entryHash(sid: string, entry: Entry): number {
  const v = entry.version;
  // A tombstone's expiry is local (when this replica may forget it): not part of the digest.
  const e = entry.data === null ? -1 : expiry(entry);
  h = 0x7ab1e;
  len = 0;
  mixString(sid);
  mixCode(124);
  mixInteger(v.t);
  mixCode(124);
  mixInteger(v.c);
  mixCode(124);
  mixString(v.n);
  mixCode(124);
  mixInteger(e);
  return fmix32(h ^ len);
}

/** The running state of `entryHash` (murmur3 block mixing, as `hashKey`). */
let h = 0;
let len = 0;

function mixCode(code: number): void {
  let k = Math.imul(code, 0xcc9e2d51);
  k = (k << 15) | (k >>> 17);
  h ^= Math.imul(k, 0x1b873593);
  h = (h << 13) | (h >>> 19);
  h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  len++;
}

function mixString(s: string): void {
  for (let i = 0; i < s.length; i++) mixCode(s.charCodeAt(i));
}

/** The decimal digits of a safe integer, as `String(n)` writes them. */
function mixInteger(n: number): void {
  if (n < 0) {
    mixCode(45);
    n = -n;
  }
  let p = 1;
  while (p * 10 <= n) p *= 10;
  for (; p >= 1; p /= 10) {
    const d = Math.floor(n / p);
    mixCode(48 + d);
    n -= d * p;
  }
}

function expiry(entry: Entry): number {
  let e = entry.setExpiresAt;
  for (const t of entry.touches) if (t.expiresAt > e) e = t.expiresAt;
  return e;
}

/**
 * Remembers a touch newer than the record; false if it changes nothing. A touch that is older
 * than another and extends the expiry no further can never matter (any `set` that would
 * supersede the newer one supersedes it too), so it is dropped: what is kept depends only on
 * the set of touches received, not their order, and is normally a single touch.
 */
function addTouch(entry: Entry, expiresAt: number, version: Version): boolean {
  const dominated = (older: { expiresAt: number; version: Version }, newer: typeof older) =>
    compareVersions(older.version, newer.version) <= 0 && older.expiresAt <= newer.expiresAt;
  const touch = { expiresAt, version };
  if (entry.touches.some((t) => dominated(touch, t))) return false;
  entry.touches = entry.touches.filter((t) => !dominated(t, touch));
  entry.touches.push(touch);
  return true;
}
