import type { Change, SessionTable } from './table.js';
import type { ReplicaHost } from './transport.js';

/**
 * Read on miss, the machine side. A read of a session this machine holds no record of (not
 * even a tombstone) may be one that has not arrived yet: a client whose load balancer moved it
 * to this machine right after its login elsewhere, or a logout sent here before the login's
 * datagrams were repaired. The transport asks the cluster and the read waits, bounded, for the
 * record to arrive; an id nobody knows is remembered for a while, so that unknown ids (expired
 * long ago, forged) cost one bounded wait at most.
 */

/** How long an id nobody knew is remembered as unknown, in ms. */
export const UNKNOWN_TTL = 60_000;
/** Most ids remembered as unknown (the oldest are forgotten first). */
const MAX_UNKNOWN = 10_000;

export interface MissCounters {
  /** Lookups that asked the cluster. */
  asked: number;
  /** ... and got the record within the wait. */
  found: number;
  /** ... where the cluster said it has no such session, or nobody answered in time. */
  unknown: number;
  /** Lookups answered at once from the ids remembered as unknown. */
  cached: number;
}

export interface LookupOptions {
  /** Asks again every this many ms while waiting (a lossy channel); 0: asks once. */
  askEvery: number;
  /** Whether an id nobody answered for within the wait is remembered as unknown. */
  rememberSilence: boolean;
}

interface Waiter {
  resolve: () => void;
  timer: NodeJS.Timeout;
  resend: NodeJS.Timeout | undefined;
}

export class MissLookups {
  readonly counters: MissCounters = { asked: 0, found: 0, unknown: 0, cached: 0 };
  private readonly waiting = new Map<string, Waiter>();
  private readonly waits = new Map<string, Promise<void>>();
  /** Unknown ids and when they may be asked for again (insertion order: oldest first). */
  private readonly unknown = new Map<string, number>();

  constructor(
    private readonly table: SessionTable,
    /** The longest a read waits, in ms; 0 turns read on miss off. */
    private readonly waitMs: number,
    private readonly now: () => number = Date.now,
  ) {}

  /**
   * Resolves once the table holds a record of `sid`, or the cluster said it has none, or
   * `waitMs` passed. `ask` asks the cluster (the answer arrives as a change, or as
   * {@link notFound}). Lookups of one id share one wait.
   */
  lookup(sid: string, ask: () => void, options: LookupOptions): Promise<void> {
    if (this.waitMs === 0 || this.table.record(sid) !== undefined) return Promise.resolve();
    const pending = this.waits.get(sid);
    if (pending) return pending;
    const until = this.unknown.get(sid);
    if (until !== undefined) {
      if (until > this.now()) {
        this.counters.cached++;
        return Promise.resolve();
      }
      this.unknown.delete(sid);
    }
    this.counters.asked++;
    const wait = new Promise<void>((resolve) => {
      const timer = setTimeout(() => {
        if (options.rememberSilence) this.remember(sid);
        else this.counters.unknown++;
        this.settle(sid);
      }, this.waitMs);
      timer.unref();
      let resend: NodeJS.Timeout | undefined;
      if (options.askEvery > 0) {
        resend = setInterval(ask, options.askEvery);
        resend.unref();
      }
      this.waiting.set(sid, { resolve, timer, resend });
    });
    this.waits.set(sid, wait);
    ask();
    return wait;
  }

  /** `host` whose received changes also wake the reads waiting for them (a transport's host). */
  watching(host: ReplicaHost): ReplicaHost {
    return {
      table: host.table,
      applyRemote: (changes) => {
        host.applyRemote(changes);
        this.arrived(changes);
      },
      ...(host.forget ? { forget: host.forget.bind(host) } : {}),
    };
  }

  /** Changes applied from elsewhere: the reads waiting for them go on. */
  arrived(changes: readonly Change[]): void {
    if (this.waiting.size === 0) return;
    for (const change of changes) {
      if (this.waiting.has(change.sid) && this.table.record(change.sid) !== undefined) {
        this.counters.found++;
        this.settle(change.sid);
      }
    }
  }

  /** The cluster answered that it has no record of `sid`. */
  notFound(sid: string): void {
    if (!this.waiting.has(sid)) return;
    this.remember(sid);
    this.settle(sid);
  }

  /** Lets every waiting read go on (the transport is closing). */
  close(): void {
    for (const sid of [...this.waiting.keys()]) this.settle(sid);
  }

  private remember(sid: string): void {
    this.counters.unknown++;
    if (this.unknown.size >= MAX_UNKNOWN) {
      const oldest = this.unknown.keys().next().value;
      if (oldest !== undefined) this.unknown.delete(oldest);
    }
    this.unknown.set(sid, this.now() + UNKNOWN_TTL);
  }

  private settle(sid: string): void {
    const w = this.waiting.get(sid);
    if (!w) return;
    this.waiting.delete(sid);
    this.waits.delete(sid);
    clearTimeout(w.timer);
    clearInterval(w.resend);
    w.resolve();
  }
}
