import { randomBytes } from 'node:crypto';

/**
 * A write's version: a hybrid logical clock reading (`t` wall-clock ms, `c` a counter that
 * orders writes within one ms or against a clock that went backwards) plus the writer's node
 * id, which breaks the remaining ties. Versions are totally ordered, so every replica picks
 * the same winner among concurrent writes without talking to the others.
 */
export interface Version {
  readonly t: number;
  readonly c: number;
  readonly n: string;
}

/** The version older than every real one (an empty slot). */
export const ZERO: Version = Object.freeze({ t: 0, c: 0, n: '' });

/** Negative, zero or positive as `a` is older than, equal to or newer than `b`. */
export function compareVersions(a: Version, b: Version): number {
  if (a.t !== b.t) return a.t < b.t ? -1 : 1;
  if (a.c !== b.c) return a.c < b.c ? -1 : 1;
  if (a.n === b.n) return 0;
  return a.n < b.n ? -1 : 1;
}

/**
 * How far ahead of this machine's clock a version received from elsewhere may be before it
 * counts as from a clock that runs fast (`versionsAhead` in the stats). Such a version is not
 * adopted by the clock, and cannot make a session undeletable: every write is ordered after the
 * version it replaces (`orderedAfter`).
 */
export const MAX_DRIFT_MS = 60_000;

/**
 * The version of a write that replaces `prev`: `v` if it is newer, else one step above `prev`
 * (with `v`'s node id). A write made after a read of a session is thus ordered after what was
 * read, whatever clock stamped that: a session written by a node whose clock runs hours ahead
 * is still deleted by the next `destroy()` anywhere.
 */
export function orderedAfter(v: Version, prev: Version | undefined): Version {
  if (prev === undefined || compareVersions(v, prev) > 0) return v;
  return { t: prev.t, c: prev.c + 1, n: v.n };
}

/** Whether `v` is further ahead of `now` than clocks may drift apart (`MAX_DRIFT_MS`). */
export function isFarAhead(v: Version, now: number): boolean {
  return v.t > now + MAX_DRIFT_MS;
}

/** Whether a value received from elsewhere is a well-formed version. Never throws. */
export function isVersion(value: unknown): value is Version {
  if (typeof value !== 'object' || value === null) return false;
  const v = value as Record<string, unknown>;
  return (
    Number.isSafeInteger(v.t) &&
    (v.t as number) >= 0 &&
    Number.isSafeInteger(v.c) &&
    (v.c as number) >= 0 &&
    typeof v.n === 'string' &&
    v.n.length > 0 &&
    v.n.length <= 64
  );
}

/** A random node id (never derived from an address). */
export function newNodeId(): string {
  return randomBytes(8).toString('hex');
}

/**
 * A hybrid logical clock. `tick()` versions a local write: never older than any version this
 * clock issued or observed, and close to wall-clock time. `observe()` takes in a version seen
 * from another node, so that a write made after seeing it is ordered after it even when this
 * machine's clock is behind. A remote reading further ahead than `maxDriftMs` is not adopted
 * (one bad clock must not drag every node into its future); the write still competes by its
 * version.
 */
export class Clock {
  private t = 0;
  private c = 0;

  constructor(
    readonly nodeId: string = newNodeId(),
    private readonly now: () => number = Date.now,
    private readonly maxDriftMs = MAX_DRIFT_MS,
  ) {}

  tick(): Version {
    const pt = this.now();
    if (pt > this.t) {
      this.t = pt;
      this.c = 0;
    } else {
      this.c++;
    }
    return { t: this.t, c: this.c, n: this.nodeId };
  }

  /**
   * The version of a local write to a session whose record holds `prev`: a tick, raised above
   * `prev` when that is newer (a write from a clock ahead of this one); see `orderedAfter`.
   */
  tickAfter(prev: Version | undefined): Version {
    return orderedAfter(this.tick(), prev);
  }

  observe(remote: Version): void {
    const pt = this.now();
    if (remote.t > pt + this.maxDriftMs) return;
    if (remote.t > this.t) {
      this.t = remote.t;
      this.c = remote.c;
    } else if (remote.t === this.t && remote.c > this.c) {
      this.c = remote.c;
    }
  }
}
