import { StickyMeshError } from '../errors.js';
import type { ResolvedStickyOptions } from '../options.js';
import type { WorkerPool } from './pool.js';

/** One slot in a {@link ReloadReport}. */
export interface ReloadSlot {
  slot: number;
  /** The slot's worker now. */
  pid: number | null;
  /** Workers forked into the slot so far (see `stats().slots`). */
  generation: number;
  /** Whether this reload gave the slot a worker that runs the code on disk now. */
  reloaded: boolean;
  /** The worker it replaced (drained), where it was replaced. */
  previousPid?: number;
}

/** What `reload()` did: each slot's worker and generation; on failure, where it stopped. */
export interface ReloadReport {
  startedAt: number;
  finishedAt: number;
  slots: ReloadSlot[];
  /** The slot whose new worker failed, and why (the reload stopped there). */
  failed?: { slot: number; pid: number; reason: string };
}

/**
 * A step of a rolling reload, in order: `start`; per slot `fork` (its successor is starting),
 * `switch` (the successor is ready and has the slot; the old worker drains), `drained` (the old
 * worker has exited) or `failed`; then `done` (or nothing more after `failed`).
 */
export type ReloadStep =
  | { step: 'start'; slots: number }
  | { step: 'fork'; slot: number }
  | { step: 'switch'; slot: number; pid: number; previousPid: number; generation: number }
  | { step: 'drained'; slot: number; previousPid: number }
  | { step: 'failed'; slot: number; pid: number; reason: string }
  | { step: 'done'; report: ReloadReport };

/** `reload()`'s error: which slots run which generation, and why the new worker failed. */
export class ReloadError extends StickyMeshError {
  constructor(readonly report: ReloadReport) {
    const f = report.failed;
    super(
      'ERR_STICKY_RELOAD_FAILED',
      f && f.pid > 0
        ? `sticky-mesh: reload stopped at slot ${f.slot}: its new worker (pid ${f.pid}) ` +
            `${f.reason}; the slot keeps its previous worker`
        : `sticky-mesh: reload stopped at slot ${f?.slot}: ${f?.reason}`,
    );
    this.name = 'ReloadError';
  }
}

/** What a rolling reload needs of the primary. */
export interface ReloadHost {
  pool: WorkerPool;
  options: ResolvedStickyOptions;
  /** true when the cluster is ready, else its state (a reload needs it ready). */
  ready: () => true | string;
  emit: (step: ReloadStep) => void;
}

/** Runs a rolling reload (see StickyPrimary#reload). */
export async function rollingReload(host: ReloadHost): Promise<ReloadReport> {
  const { pool, options, emit } = host;
  const startedAt = Date.now();
  const report: ReloadReport = {
    startedAt,
    finishedAt: startedAt,
    slots: pool.stats().map((s) => ({
      slot: s.slot,
      pid: s.pid,
      generation: s.generation,
      reloaded: false,
    })),
  };
  const fail = (slot: number, pid: number, reason: string): never => {
    report.failed = { slot, pid, reason };
    report.finishedAt = Date.now();
    emit({ step: 'failed', slot, pid, reason });
    throw new ReloadError(report);
  };
  const ready = host.ready();
  if (ready !== true) fail(0, -1, `could not start: the cluster is ${ready}, not ready`);
  emit({ step: 'start', slots: options.num });
  const jitter = Math.min(options.closeJitter, Math.floor(options.shutdownTimeout / 2));
  for (const entry of report.slots) {
    const { slot } = entry;
    // A slot whose worker crashed meanwhile gets it back first (its respawn runs the new code
    // too, but is replaced like any other, so every slot ends on a worker this reload made).
    if (!(await pool.succession.whenReady(slot, options.readyTimeout))) {
      fail(slot, -1, 'the slot has no ready worker to replace');
    }
    emit({ step: 'fork', slot });
    const outcome = await pool.succession.replace(slot, jitter);
    if (!outcome.ok) fail(slot, outcome.pid, outcome.reason);
    else {
      Object.assign(entry, {
        pid: outcome.pid,
        generation: outcome.generation,
        reloaded: true,
        previousPid: outcome.oldPid,
      });
      emit({
        step: 'switch',
        slot,
        pid: outcome.pid,
        previousPid: outcome.oldPid,
        generation: outcome.generation,
      });
      // One extra worker at a time: the next slot starts once this one's old worker is gone.
      await outcome.drained;
      emit({ step: 'drained', slot, previousPid: outcome.oldPid });
    }
  }
  report.finishedAt = Date.now();
  emit({ step: 'done', report });
  return report;
}
