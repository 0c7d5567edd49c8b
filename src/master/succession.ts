import type { Worker } from 'node:cluster';
import type { EventEmitter } from 'node:events';
import type { ResolvedStickyOptions } from '../options.js';
import { sendToWorker } from '../protocol/ipc.js';
import {
  MessageType,
  message,
  type RetainMessage,
  type RetiringMessage,
  type ServeMessage,
  type ShutdownMessage,
} from '../protocol/messages.js';
import { fenceOf } from '../replication/transports/ipc/fence.js';
import { Handoff } from './handoff.js';
import {
  type Incoming,
  kill,
  type PoolEvents,
  type ReplaceOutcome,
  type Retiring,
  type WorkerSlot,
} from './slots.js';

/**
 * How long a worker about to be replaced keeps its slot after it was asked for its engine.io
 * sessions, in ms: long enough for a polling client between two polls to send the next one.
 */
const SETTLE_MS = 500;

/** What a rolling reload needs of the worker pool that runs it. */
export interface SuccessionHost extends EventEmitter<PoolEvents> {
  readonly options: ResolvedStickyOptions;
  readonly closing: boolean;
  readonly live: readonly number[];
  slot(slot: number): WorkerSlot | undefined;
  /** Forks a worker for the slot (`successor`: it waits for its Serve message). */
  spawn(s: WorkerSlot, successor: boolean): Worker;
  /** Handles the exits of `worker` as the slot's worker's from now on. */
  followExit(s: WorkerSlot, worker: Worker): void;
  /** The slots that serve now, with their workers. */
  serving(): Iterable<{ slot: number; worker: Worker }>;
  /** Emits `idle` if the pool is closing and nothing is left. */
  checkIdle(): void;
}

/**
 * The rolling reload's side of the worker pool: a slot's successor while it starts, the workers
 * it replaced while they drain, and the engine.io sessions those still serve.
 */
export class Succession {
  /** Workers replaced by a rolling reload that have not exited yet. */
  private readonly retiring = new Map<Worker, Retiring>();
  /** engine.io sessions of the retiring workers, by id. */
  private readonly retained = new Map<string, Worker>();
  /** Workers about to be replaced, and the engine.io sessions they reported so far. */
  private readonly preparing = new Map<Worker, Set<string>>();

  constructor(private readonly host: SuccessionHost) {}

  /** Whether `worker` is `slot`'s successor being started, or a worker of `slot` draining. */
  owns(slot: number, worker: Worker): boolean {
    return (
      this.host.slot(slot)?.incoming?.worker === worker || this.retiring.get(worker)?.slot === slot
    );
  }

  /** No successor starting and no replaced worker left. */
  idle(): boolean {
    return this.retiring.size === 0;
  }

  /**
   * Resolves true once `slot` has a ready worker (at once if it has), false if it has none
   * within `ms` plus the longest respawn delay, or the pool closes.
   */
  whenReady(slot: number, ms: number): Promise<boolean> {
    if (this.host.slot(slot)?.state === 'ready') return Promise.resolve(true);
    if (this.host.closing) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.host.off('workerUp', onUp);
        this.host.off('idle', onIdle);
        resolve(ok);
      };
      const onUp = (info: { slot: number }) => {
        if (info.slot === slot) done(true);
      };
      const onIdle = () => done(false);
      const timer = setTimeout(() => done(false), ms + this.host.options.maxRespawnDelay);
      timer.unref();
      this.host.on('workerUp', onUp);
      this.host.on('idle', onIdle);
    });
  }

  /**
   * Starts a successor for `slot` (a rolling reload): once it is ready it gets the full session
   * state, takes the slot (every later connection goes to it), and the worker it replaces is
   * told to drain (`jitter`: ms over which its upgraded connections close). Resolves with how it
   * ended: a successor that fails (its factory throws, it exits, it is not ready within
   * `readyTimeout`) is removed and the slot keeps its worker.
   */
  replace(slot: number, jitter: number): Promise<ReplaceOutcome> {
    const s = this.host.slot(slot);
    if (!s || this.host.closing || s.state !== 'ready' || !s.worker || s.incoming) {
      const why = this.host.closing ? 'the cluster is closing' : `slot ${slot} has no ready worker`;
      return Promise.resolve({ ok: false, reason: why, pid: -1 });
    }
    return new Promise<ReplaceOutcome>((settle) => {
      const worker = this.host.spawn(s, true);
      const pid = worker.process.pid ?? -1;
      const timer = setTimeout(() => {
        const incoming = s.incoming;
        if (incoming?.worker !== worker) return;
        incoming.failure ??= `not ready within readyTimeout (${this.host.options.readyTimeout} ms)`;
        kill(worker, 'SIGKILL');
      }, this.host.options.readyTimeout);
      timer.unref();
      const handoff = new Handoff(worker, (handle) => this.host.emit('returned', handle, s.slot));
      s.incoming = { worker, handoff, timer, failure: undefined, jitter, settle };
      worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
        const incoming = s.incoming;
        if (incoming?.worker !== worker) return;
        // Gone before it took the slot: the slot keeps the worker it has, which need not report
        // its engine.io sessions any more.
        clearTimeout(incoming.timer);
        s.incoming = undefined;
        const kept = s.worker;
        if (kept && this.preparing.delete(kept)) {
          const stop = message<RetainMessage>(MessageType.Retain, { stop: true });
          sendToWorker(kept, stop, `slot ${s.slot}: retain stop`);
        }
        this.host.emit('workerExit', { slot: s.slot, pid, code, signal, planned: false });
        const reason =
          incoming.failure ?? `exited before it was ready (${signal ?? `code ${code}`})`;
        settle({ ok: false, reason, pid });
        this.host.checkIdle();
      });
    });
  }

  /** The successor of `s` is ready: it takes the slot; the worker it replaces drains. */
  /**
   * The successor of `s` is ready and has the full session state (sent now, before anything
   * else). Its predecessor is asked which engine.io sessions it serves and keeps serving for
   * `SETTLE_MS` more (a polling client is between two polls for a moment only, and its next poll
   * lands there meanwhile); then the successor takes the slot.
   */
  succeed(s: WorkerSlot, incoming: Incoming): void {
    clearTimeout(incoming.timer);
    // The full session state first: IPC keeps the order, so it lands before any connection.
    this.host.emit('syncWorker', incoming.worker);
    const old = s.worker;
    if (!old) return;
    this.preparing.set(old, new Set());
    sendToWorker(old, message<RetainMessage>(MessageType.Retain, {}), `slot ${s.slot}: retain`);
    const timer = setTimeout(() => this.swap(s, incoming, old), SETTLE_MS);
    timer.unref();
    incoming.timer = timer;
  }

  /** The successor takes the slot; `old` drains (it keeps the sessions it reported). */
  private swap(s: WorkerSlot, incoming: Incoming, old: Worker): void {
    const sids = this.preparing.get(old) ?? new Set<string>();
    this.preparing.delete(old);
    if (s.incoming !== incoming) return;
    const worker = incoming.worker;
    if (s.worker !== old || !s.handoff || s.state !== 'ready') {
      // The slot lost its worker meanwhile (a crash): its respawn takes the slot instead.
      incoming.failure = `slot ${s.slot} lost its worker while the successor started`;
      kill(worker, 'SIGKILL');
      return;
    }
    s.incoming = undefined;
    const oldHandoff = s.handoff;
    s.worker = worker;
    s.handoff = incoming.handoff;
    s.generation++;
    s.replaced.reload++;
    s.readyAt = Date.now();
    s.lastHeard = s.readyAt;
    const pid = worker.process.pid ?? -1;
    const drained = this.retire(s, old, oldHandoff, incoming.jitter, sids);
    const serve = message<ServeMessage>(MessageType.Serve, {
      live: [...this.host.live],
      draining: this.retiring.size,
      ...(this.retained.size > 0 ? { retained: [...this.retained.keys()] } : {}),
      ...(fenceOf(worker) > 0 ? { fence: fenceOf(worker) } : {}),
    });
    sendToWorker(worker, serve, `slot ${s.slot}: serve message`);
    this.host.followExit(s, worker);
    this.host.emit('workerUp', { slot: s.slot, pid });
    incoming.settle({
      ok: true,
      pid,
      generation: s.generation,
      oldPid: old.process.pid ?? -1,
      drained,
    });
  }

  /**
   * `old` no longer gets connections (the slot has its successor): it drains. Its queued
   * handles still reach it before the shutdown message (IPC keeps the order).
   */
  private retire(
    s: WorkerSlot,
    old: Worker,
    handoff: Handoff,
    jitter: number,
    sids: Set<string>,
  ): Promise<void> {
    return new Promise<void>((exited) => {
      const timer = setTimeout(() => kill(old, 'SIGKILL'), this.host.options.shutdownTimeout);
      timer.unref();
      this.retiring.set(old, { slot: s.slot, handoff, timer, sids, exited });
      for (const sid of sids) this.retained.set(sid, old);
      this.broadcastRetiring(sids.size > 0 ? { add: [...sids] } : {});
      const shutdown = message<ShutdownMessage>(MessageType.Shutdown, { reload: true, jitter });
      sendToWorker(old, shutdown, `slot ${s.slot}: reload shutdown message`);
    });
  }

  /** A worker draining for a reload has gone. */
  onRetiredExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const r = this.retiring.get(worker);
    if (!r) return;
    clearTimeout(r.timer);
    this.retiring.delete(worker);
    for (const sid of r.sids) this.retained.delete(sid);
    this.broadcastRetiring(r.sids.size > 0 ? { remove: [...r.sids] } : {});
    const orphans = r.handoff.takeUnacknowledged();
    if (orphans.length > 0) this.host.emit('orphans', orphans);
    this.host.emit('workerExit', {
      slot: r.slot,
      pid: worker.process.pid ?? -1,
      code,
      signal,
      planned: true,
    });
    r.exited();
    this.host.checkIdle();
  }

  /** A draining worker still serves these engine.io sessions: their requests go on to it. */
  retain(worker: Worker, sids: readonly string[]): void {
    const preparing = this.preparing.get(worker);
    if (preparing) {
      for (const sid of sids) preparing.add(sid);
      return;
    }
    const r = this.retiring.get(worker);
    if (!r) return;
    const added = sids.filter((sid) => !r.sids.has(sid));
    for (const sid of added) {
      r.sids.add(sid);
      this.retained.set(sid, worker);
    }
    if (added.length > 0) this.broadcastRetiring({ add: added });
  }

  /** Where a request of engine.io session `sid` goes while its worker drains, if it does. */
  retainedHandoff(sid: string): Handoff | undefined {
    const worker = this.retained.get(sid);
    return worker ? this.retiring.get(worker)?.handoff : undefined;
  }

  /** Whether any draining worker holds engine.io sessions (routing then looks at ids). */
  get retaining(): boolean {
    return this.retained.size > 0;
  }

  /** Tells every serving worker which sessions are retained, and how many workers drain. */
  private broadcastRetiring(change: { add?: string[]; remove?: string[] }): void {
    const msg = message<RetiringMessage>(MessageType.Retiring, {
      ...change,
      draining: this.retiring.size,
    });
    for (const r of this.host.serving()) {
      sendToWorker(r.worker, msg, `slot ${r.slot}: retiring message`);
    }
  }
}
