import type { Worker } from 'node:cluster';
import { debug } from '../debug.js';
import type { StickyMeshError } from '../errors.js';
import type { RawHandle } from '../node-internals.js';
import type { ResolvedStickyOptions } from '../options.js';
import type { Handoff } from './handoff.js';

// The worker pool's records and events (pool.ts), and the rolling reload's (succession.ts).

/** Lifecycle of one slot. `down` = no process (crashed, waiting to respawn, or closed). */
export type SlotState = 'starting' | 'ready' | 'stopping' | 'down';

export interface SlotStats {
  slot: number;
  pid: number | null;
  state: SlotState;
  /** Connections handed to this slot's workers since the primary started. */
  connections: number;
  /** Times this slot's worker was re-forked after exiting unplanned. */
  restarts: number;
  /**
   * Workers forked into this slot so far (1 for the first): each replacement, whatever its
   * reason, is a new generation.
   */
  generation: number;
  /** Replacements of this slot's worker so far, by why the one before it went. */
  replaced: Record<ReplaceReason, number>;
}

/**
 * Why a slot's worker was replaced: `crash` (it exited unasked), `unresponsive` (killed for not
 * answering pings or not taking connections), `planned` (the app closed it: `close()` in the
 * worker), `reload` (a rolling reload replaced it).
 */
export type ReplaceReason = 'crash' | 'unresponsive' | 'planned' | 'reload';

export interface WorkerExitInfo {
  slot: number;
  pid: number;
  code: number | null;
  signal: NodeJS.Signals | null;
  /** True when the worker was asked to stop (shutdown) or left with close(); false for a crash. */
  planned: boolean;
}

export interface PoolEvents {
  workerUp: [{ slot: number; pid: number }];
  workerExit: [WorkerExitInfo];
  /** `attempt`: unplanned exits in a row (0 when a worker that left on its own is replaced). */
  workerRespawn: [{ slot: number; attempt: number; delay: number }];
  /**
   * A ready worker stopped answering (`ping`: no answer to the liveness pings for
   * `unresponsiveTimeout`; `queue`: `maxQueuedHandles` connections it has not taken): it is
   * out of routing, its queued connections go elsewhere, and it is killed (then re-forked as
   * after a crash). `silentFor`: ms since it last answered.
   */
  workerUnresponsive: [{ slot: number; pid: number; reason: 'ping' | 'queue'; silentFor: number }];
  /** The set of ready slots changed. */
  change: [];
  /** Connections sent to a worker that died before taking them; they need another home. */
  orphans: [RawHandle[]];
  /** A connection the worker of `slot` could not take (send failed or refused). */
  returned: [RawHandle, number];
  /** Every slot that was ever started has exited and no respawn is pending. */
  idle: [];
  /** A worker reported ready and is about to be routed to: give it what it must have first. */
  syncWorker: [Worker];
  /** A worker was forked into `slot`: route its messages (before any can arrive). */
  forked: [Worker, number];
  /**
   * Every slot failed to start the same way `STARTUP_ATTEMPTS` times in a row, and no worker
   * was ever ready (startup.ts): nothing is respawned; the pool waits to be shut down.
   */
  startupFailed: [StickyMeshError];
}

/** How a successor's start ended (see `WorkerPool#replace`). */
export type ReplaceOutcome =
  | {
      ok: true;
      pid: number;
      generation: number;
      /** The worker it replaced, now draining. */
      oldPid: number;
      /** Resolves once the replaced worker has exited. */
      drained: Promise<void>;
    }
  | { ok: false; reason: string; pid: number };

/** A worker replaced by a rolling reload, draining until it exits. */
export interface Retiring {
  slot: number;
  handoff: Handoff;
  timer: NodeJS.Timeout;
  /** engine.io sessions it still serves (their requests keep coming here). */
  sids: Set<string>;
  exited: () => void;
}

/** A slot's successor being started by a rolling reload. */
export interface Incoming {
  worker: Worker;
  handoff: Handoff;
  timer: NodeJS.Timeout;
  /** Why it failed, if it said (the factory's error). */
  failure: string | undefined;
  /** ms over which the replaced worker's upgraded connections close. */
  jitter: number;
  settle: (outcome: ReplaceOutcome) => void;
}

/** One worker slot's record (`SlotStats` is what it reports). */
export interface WorkerSlot {
  readonly slot: number;
  state: SlotState;
  worker: Worker | undefined;
  handoff: Handoff | undefined;
  /** Unplanned exits in a row; reset after `respawnResetAfter` of uptime. */
  crashes: number;
  /** The worker announced it is leaving (the app called close() in it). */
  leaving: boolean;
  readyAt: number;
  /** When the worker last answered a liveness ping (or became ready). */
  lastHeard: number;
  /** Workers forked into this slot so far: a new worker is a new generation. */
  generation: number;
  connections: number;
  restarts: number;
  replaced: Record<ReplaceReason, number>;
  /** A rolling reload's successor for this slot, while it starts. */
  incoming: Incoming | undefined;
  /** Set when the primary kills an unresponsive worker: its exit is not a crash. */
  killedUnresponsive: boolean;
  timer: NodeJS.Timeout | undefined;
}

/** A slot's record before its first worker. */
export function newSlot(slot: number): WorkerSlot {
  return {
    slot,
    state: 'down',
    worker: undefined,
    handoff: undefined,
    crashes: 0,
    leaving: false,
    readyAt: 0,
    lastHeard: 0,
    generation: 0,
    connections: 0,
    restarts: 0,
    replaced: { crash: 0, unresponsive: 0, planned: 0, reload: 0 },
    incoming: undefined,
    killedUnresponsive: false,
    timer: undefined,
  };
}

export function kill(worker: Worker, signal: NodeJS.Signals): void {
  try {
    worker.process.kill(signal);
  } catch (err) {
    debug('kill %s of pid %d failed: %s', signal, worker.process.pid, (err as Error).message);
  }
}

/**
 * How often the primary pings each worker (and looks at its queue of connections): five pings
 * per `unresponsiveTimeout`, and at least one a second.
 */
export function pingInterval(options: ResolvedStickyOptions): number {
  return Math.min(1000, Math.max(20, Math.floor(options.unresponsiveTimeout / 5)));
}
