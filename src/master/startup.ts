import { StickyMeshError } from '../errors.js';
import type { StartFailedMessage } from '../protocol/messages.js';

/**
 * Failures in a row, the same each time, after which a slot's start counts as failing for good
 * (while no worker has ever been ready). The README names it.
 */
export const STARTUP_ATTEMPTS = 3;

/** What a worker said when its start failed (the StartFailed message's fields). */
export type StartFailure = Pick<StartFailedMessage, 'reason' | 'thrown'>;

interface Streak {
  /** The failure's identity: its message and the thrown error's code. */
  key: string;
  count: number;
  failure: StartFailure;
}

/**
 * Tells a deterministic startup failure from a worker that may yet come up. A worker whose start
 * fails says why (StartFailed) before it exits; each slot counts the exits in a row that followed
 * the same report. Once every slot has failed the same way `attempts` times in a row, and no
 * worker has ever been ready in this primary, respawning cannot help (a wrong option, a missing
 * module): `exited` returns the error to stop with. A worker that exits without a report (it
 * crashed, exited, was killed at `readyTimeout`) ends its slot's streak; once any worker has
 * been ready, crashes are respawned as always and nothing is counted. Pure: no timers, no I/O.
 */
export class StartupWatch {
  private everReady = false;
  private readonly streaks: (Streak | undefined)[];
  /** What the starting worker of each slot reported, until it exits. */
  private readonly reports: (StartFailure | undefined)[];

  constructor(
    slots: number,
    private readonly attempts = STARTUP_ATTEMPTS,
  ) {
    this.streaks = Array.from({ length: slots }, () => undefined);
    this.reports = Array.from({ length: slots }, () => undefined);
  }

  /** The starting worker of `slot` says why its start failed; it exits next. */
  reported(slot: number, failure: StartFailure): void {
    if (slot >= 0 && slot < this.reports.length) {
      const { reason, thrown } = failure;
      this.reports[slot] = thrown ? { reason, thrown } : { reason };
    }
  }

  /** A worker became ready: from now on no failure is final. */
  ready(): void {
    this.everReady = true;
    this.streaks.fill(undefined);
    this.reports.fill(undefined);
  }

  /**
   * The worker of `slot` exited unasked (a worker that was ready, or one that never was, with
   * or without a report). Returns the error to stop with when every slot now fails for good.
   */
  exited(slot: number): StickyMeshError | undefined {
    const failure = this.reports[slot];
    this.reports[slot] = undefined;
    if (this.everReady || slot < 0 || slot >= this.streaks.length) return undefined;
    if (!failure) {
      this.streaks[slot] = undefined;
      return undefined;
    }
    const key = `${failure.thrown?.code ?? ''}\n${failure.reason}`;
    const streak = this.streaks[slot];
    this.streaks[slot] =
      streak?.key === key ? { ...streak, count: streak.count + 1 } : { key, count: 1, failure };
    const done = this.streaks.every((s) => s !== undefined && s.count >= this.attempts);
    return done ? this.error() : undefined;
  }

  /** One line naming the first slot's failure; `cause` rebuilds it as the worker had it. */
  private error(): StickyMeshError {
    const failures = this.streaks.flatMap((s) => (s ? [s] : []));
    const first = failures[0] as Streak;
    const others = new Set(failures.map((s) => s.key)).size - 1;
    const also = others === 0 ? '' : ` (and ${others} other error${others > 1 ? 's' : ''})`;
    const err = new StickyMeshError(
      'ERR_STICKY_STARTUP_FAILED',
      `sticky-mesh: no worker can start (the same failure ${this.attempts} times in a row in ` +
        `each of the ${failures.length} slots; not respawning): ` +
        `${firstLine(first.failure.reason)}${also}`,
      { cause: rebuild(first.failure) },
    );
    // Made of other processes' reports: its frames here would only show the pool's insides.
    err.stack = `${err.name}: ${err.message}`;
    return err;
  }
}

/** `reason` without the `sticky-mesh: ` it starts with, its first line, at most 300 chars. */
function firstLine(reason: string): string {
  const line = reason.replace(/^sticky-mesh: /, '').split('\n')[0] ?? '';
  return line.length > 300 ? `${line.slice(0, 300)}…` : line;
}

/**
 * The worker's error (`ERR_STICKY_FACTORY_FAILED`), its cause what the factory threw, with the
 * stack it had in the worker. Neither has a stack of this process: they were made there.
 */
function rebuild(failure: StartFailure): StickyMeshError {
  const thrown = failure.thrown;
  let cause: Error | undefined;
  if (thrown) {
    cause = new Error(thrown.message);
    cause.name = thrown.name;
    cause.stack = thrown.stack ?? `${thrown.name}: ${thrown.message}`;
    if (thrown.code !== undefined) Object.assign(cause, { code: thrown.code });
  }
  const err = new StickyMeshError(
    'ERR_STICKY_FACTORY_FAILED',
    failure.reason,
    cause ? { cause } : undefined,
  );
  err.stack = `${err.name}: ${err.message}`;
  return err;
}
