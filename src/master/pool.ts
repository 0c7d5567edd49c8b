import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { debug } from '../debug.js';
import type { RawHandle } from '../node-internals.js';
import type { ResolvedStickyOptions } from '../options.js';
import { sendToWorker } from '../protocol/ipc.js';
import {
  ADDRESS_ENV,
  MessageType,
  message,
  NODELAY_ENV,
  type PingMessage,
  RELAY_DIR_ENV,
  type RetiringMessage,
  type ServeMessage,
  type ShutdownMessage,
  SLOT_ENV,
  type SlotsMessage,
  SUCCESSOR_ENV,
  TRANSPORT_ENV,
} from '../protocol/messages.js';
import { respawnDelay } from './backoff.js';
import { Handoff } from './handoff.js';
import type { LifecycleMessage } from './ipc.js';
import { makeRelayDir, removeRelayDir } from './relay-dir.js';

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
interface Retiring {
  slot: number;
  handoff: Handoff;
  timer: NodeJS.Timeout;
  /** engine.io sessions it still serves (their requests keep coming here). */
  sids: Set<string>;
  exited: () => void;
}

/** A slot's successor being started by a rolling reload. */
interface Incoming {
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
interface WorkerSlot {
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

const SHUTDOWN: ShutdownMessage = message<ShutdownMessage>(MessageType.Shutdown, {});

/**
 * The supervised workers, one per fixed slot. Forks, tracks readiness, respawns crashed workers
 * into the same slot with exponential backoff, and stops them all on `shutdown`.
 * Runs only in the cluster primary.
 */
export class WorkerPool extends EventEmitter<PoolEvents> {
  /** Ready slots in ascending order; replaced (never mutated) on every change. */
  live: readonly number[] = [];
  private readonly slots: WorkerSlot[];
  private closing = false;
  /** Workers replaced by a rolling reload that have not exited yet. */
  private readonly retiring = new Map<Worker, Retiring>();
  /** engine.io sessions of the retiring workers, by id. */
  private readonly retained = new Map<string, Worker>();

  constructor(private readonly options: ResolvedStickyOptions) {
    super();
    this.slots = Array.from({ length: options.num }, (_, slot) => ({
      slot,
      state: 'down' as SlotState,
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
    }));
  }

  private pinger: NodeJS.Timeout | undefined;
  private pings = 0;

  /** The primary's bound address, handed to every worker it forks (see `StickyWorker.address`). */
  private address = '';
  private noDelay = '0';

  /** Where the workers listen for their siblings' relay channels (see worker/relay.ts). */
  private relayDir = '';

  start(address: AddressInfo, noDelayInherited = false): void {
    this.address = JSON.stringify(address);
    this.noDelay = noDelayInherited ? '1' : '0';
    if (this.options.proxy || this.options.sessionAffinity) this.relayDir = makeRelayDir();
    for (const s of this.slots) this.fork(s);
    this.pinger = setInterval(() => this.checkLiveness(), pingInterval(this.options));
    this.pinger.unref();
  }

  /** How many workers have been forked into `slot`: it changes when its worker is replaced. */
  generation(slot: number): number {
    return this.slots[slot]?.generation ?? 0;
  }

  /**
   * Takes a ready worker that stopped answering out of routing: the connections it has not
   * taken go elsewhere, and it is killed (its exit re-forks the slot as after a crash).
   */
  unresponsive(slot: number, reason: 'ping' | 'queue'): void {
    const s = this.slots[slot];
    const worker = s?.worker;
    if (!s || !worker || s.state !== 'ready') return;
    s.state = 'stopping';
    s.killedUnresponsive = true;
    this.updateLive();
    const pid = worker.process.pid ?? -1;
    debug('slot %d: pid %d unresponsive (%s), killing it', slot, pid, reason);
    this.emit('workerUnresponsive', { slot, pid, reason, silentFor: Date.now() - s.lastHeard });
    // Killed first: a worker that wakes up must not also serve what is handed elsewhere.
    kill(worker, 'SIGKILL');
    const orphans = s.handoff?.takeUnacknowledged() ?? [];
    if (orphans.length > 0) this.emit('orphans', orphans);
  }

  /**
   * Whether `slot`'s worker holds `maxQueuedHandles` connections it has not taken and has taken
   * none for a ping interval: stuck, not merely busy (a burst of connections queues for a
   * moment at a worker whose event loop runs, and drains).
   */
  overQueued(slot: number, now = Date.now()): boolean {
    const handoff = this.slots[slot]?.handoff;
    return (
      handoff !== undefined &&
      handoff.queued >= this.options.maxQueuedHandles &&
      handoff.stalledFor(now) >= pingInterval(this.options)
    );
  }

  /**
   * Pings every ready worker; one silent for `unresponsiveTimeout`, or stuck with a full queue
   * of connections, is taken out.
   */
  private checkLiveness(): void {
    const now = Date.now();
    this.pings++;
    const ping = message<PingMessage>(MessageType.Ping, { n: this.pings });
    for (const s of this.slots) {
      if (s.state !== 'ready' || !s.worker) continue;
      if (now - s.lastHeard > this.options.unresponsiveTimeout) this.unresponsive(s.slot, 'ping');
      else if (this.overQueued(s.slot, now)) this.unresponsive(s.slot, 'queue');
      else sendToWorker(s.worker, ping, `slot ${s.slot}: ping`);
    }
  }

  /** The way to hand connections to `slot`'s worker, if it is ready. */
  handoff(slot: number): Handoff | undefined {
    const s = this.slots[slot];
    return s?.state === 'ready' ? s.handoff : undefined;
  }

  countConnection(slot: number): void {
    const s = this.slots[slot];
    if (s) s.connections++;
  }

  stats(): SlotStats[] {
    return this.slots.map((s) => ({
      slot: s.slot,
      pid: s.worker?.process.pid ?? null,
      state: s.state,
      connections: s.connections,
      restarts: s.restarts,
      generation: s.generation,
      replaced: { ...s.replaced },
    }));
  }

  /** True once every slot has been ready at least once since `start`. */
  get allReady(): boolean {
    return this.slots.every((s) => s.state === 'ready');
  }

  /**
   * Asks every worker to drain, kills what is left after `shutdownTimeout`, cancels pending
   * respawns. Emits `idle` once no worker process remains.
   */
  shutdown(): void {
    if (this.closing) return;
    this.closing = true;
    clearInterval(this.pinger);
    for (const s of this.slots) {
      clearTimeout(s.timer);
      s.timer = undefined;
      // A reload's successor serves nothing yet; the draining ones finish as they are.
      if (s.incoming) {
        s.incoming.failure = 'the cluster is closing';
        kill(s.incoming.worker, 'SIGKILL');
      }
      const worker = s.worker;
      if (!worker) {
        s.state = 'down';
        continue;
      }
      const wasReady = s.state === 'ready';
      s.state = 'stopping';
      if (wasReady) {
        sendToWorker(worker, SHUTDOWN, `slot ${s.slot}: shutdown message`);
        s.timer = setTimeout(() => kill(worker, 'SIGKILL'), this.options.shutdownTimeout);
      } else {
        // Not serving anything yet: nothing to drain.
        kill(worker, 'SIGKILL');
      }
      s.timer?.unref();
    }
    this.updateLive();
    this.checkIdle();
  }

  /** Forks a worker for `s`'s slot (`successor`: a reload's, which waits for its Serve message). */
  private spawn(s: WorkerSlot, successor: boolean): Worker {
    const worker = cluster.fork({
      [SLOT_ENV]: String(s.slot),
      [ADDRESS_ENV]: this.address,
      [NODELAY_ENV]: this.noDelay,
      [RELAY_DIR_ENV]: this.relayDir,
      [TRANSPORT_ENV]: this.options.multicast ? 'multicast' : this.options.redis ? 'redis' : '',
      [SUCCESSOR_ENV]: successor ? '1' : '',
    });
    this.emit('forked', worker, s.slot);
    // A worker's 'error' (e.g. a failed send to a dead process) must never become an uncaught
    // exception in the primary; send callbacks already report the failure where it matters.
    worker.on('error', (err: Error) => debug('slot %d: worker error: %s', s.slot, err.message));
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) =>
      this.onRetiredExit(worker, code, signal),
    );
    return worker;
  }

  private fork(s: WorkerSlot): void {
    s.timer = undefined;
    if (this.closing) return;
    const worker = this.spawn(s, false);
    s.worker = worker;
    s.generation++;
    s.handoff = new Handoff(worker, (handle) => this.emit('returned', handle, s.slot));
    s.state = 'starting';
    s.timer = setTimeout(() => {
      debug(
        'slot %d: not ready after %d ms, killing pid %d',
        s.slot,
        this.options.readyTimeout,
        worker.process.pid,
      );
      kill(worker, 'SIGKILL');
    }, this.options.readyTimeout);
    s.timer.unref();
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) =>
      this.onExit(s, worker, code, signal),
    );
  }

  /**
   * Whether `worker` still belongs to `slot`: its worker, the successor a reload is starting, or
   * a worker a reload replaced that is still draining (its sessions' writes count).
   */
  isCurrent(slot: number, worker: Worker): boolean {
    const s = this.slots[slot];
    return (
      s !== undefined &&
      (s.worker === worker ||
        s.incoming?.worker === worker ||
        this.retiring.get(worker)?.slot === slot)
    );
  }

  /**
   * Resolves true once `slot` has a ready worker (at once if it has), false if it has none
   * within `ms` plus the longest respawn delay, or the pool closes.
   */
  whenReady(slot: number, ms: number): Promise<boolean> {
    if (this.slots[slot]?.state === 'ready') return Promise.resolve(true);
    if (this.closing) return Promise.resolve(false);
    return new Promise<boolean>((resolve) => {
      const done = (ok: boolean) => {
        clearTimeout(timer);
        this.off('workerUp', onUp);
        this.off('idle', onIdle);
        resolve(ok);
      };
      const onUp = (info: { slot: number }) => {
        if (info.slot === slot) done(true);
      };
      const onIdle = () => done(false);
      const timer = setTimeout(() => done(false), ms + this.options.maxRespawnDelay);
      timer.unref();
      this.on('workerUp', onUp);
      this.on('idle', onIdle);
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
    const s = this.slots[slot];
    if (!s || this.closing || s.state !== 'ready' || !s.worker || s.incoming) {
      const why = this.closing ? 'the cluster is closing' : `slot ${slot} has no ready worker`;
      return Promise.resolve({ ok: false, reason: why, pid: -1 });
    }
    return new Promise<ReplaceOutcome>((settle) => {
      const worker = this.spawn(s, true);
      const pid = worker.process.pid ?? -1;
      const timer = setTimeout(() => {
        const incoming = s.incoming;
        if (incoming?.worker !== worker) return;
        incoming.failure ??= `not ready within readyTimeout (${this.options.readyTimeout} ms)`;
        kill(worker, 'SIGKILL');
      }, this.options.readyTimeout);
      timer.unref();
      const handoff = new Handoff(worker, (handle) => this.emit('returned', handle, s.slot));
      s.incoming = { worker, handoff, timer, failure: undefined, jitter, settle };
      worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) => {
        const incoming = s.incoming;
        if (incoming?.worker !== worker) return;
        // Gone before it was ready: the slot keeps the worker it has.
        clearTimeout(incoming.timer);
        s.incoming = undefined;
        this.emit('workerExit', { slot: s.slot, pid, code, signal, planned: false });
        const reason =
          incoming.failure ?? `exited before it was ready (${signal ?? `code ${code}`})`;
        settle({ ok: false, reason, pid });
        this.checkIdle();
      });
    });
  }

  /** The successor of `s` is ready: it takes the slot; the worker it replaces drains. */
  private succeed(s: WorkerSlot, incoming: Incoming): void {
    const old = s.worker;
    const oldHandoff = s.handoff;
    clearTimeout(incoming.timer);
    s.incoming = undefined;
    const worker = incoming.worker;
    // The full session state first: IPC keeps the order, so it lands before any connection.
    this.emit('syncWorker', worker);
    s.worker = worker;
    s.handoff = incoming.handoff;
    s.generation++;
    s.replaced.reload++;
    s.readyAt = Date.now();
    s.lastHeard = s.readyAt;
    const pid = worker.process.pid ?? -1;
    let drained = Promise.resolve();
    if (old && oldHandoff) {
      drained = this.retire(s, old, oldHandoff, incoming.jitter);
    }
    const serve = message<ServeMessage>(MessageType.Serve, {
      live: [...this.live],
      draining: this.retiring.size,
    });
    sendToWorker(worker, serve, `slot ${s.slot}: serve message`);
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) =>
      this.onExit(s, worker, code, signal),
    );
    this.emit('workerUp', { slot: s.slot, pid });
    incoming.settle({
      ok: true,
      pid,
      generation: s.generation,
      oldPid: old?.process.pid ?? -1,
      drained,
    });
  }

  /**
   * `old` no longer gets connections (the slot has its successor): it drains. Its queued
   * handles still reach it before the shutdown message (IPC keeps the order).
   */
  private retire(s: WorkerSlot, old: Worker, handoff: Handoff, jitter: number): Promise<void> {
    return new Promise<void>((exited) => {
      const timer = setTimeout(() => kill(old, 'SIGKILL'), this.options.shutdownTimeout);
      timer.unref();
      this.retiring.set(old, { slot: s.slot, handoff, timer, sids: new Set(), exited });
      this.broadcastRetiring({});
      const shutdown = message<ShutdownMessage>(MessageType.Shutdown, { reload: true, jitter });
      sendToWorker(old, shutdown, `slot ${s.slot}: reload shutdown message`);
    });
  }

  /** A worker draining for a reload has gone. */
  private onRetiredExit(worker: Worker, code: number | null, signal: NodeJS.Signals | null): void {
    const r = this.retiring.get(worker);
    if (!r) return;
    clearTimeout(r.timer);
    this.retiring.delete(worker);
    for (const sid of r.sids) this.retained.delete(sid);
    this.broadcastRetiring(r.sids.size > 0 ? { remove: [...r.sids] } : {});
    const orphans = r.handoff.takeUnacknowledged();
    if (orphans.length > 0) this.emit('orphans', orphans);
    this.emit('workerExit', {
      slot: r.slot,
      pid: worker.process.pid ?? -1,
      code,
      signal,
      planned: true,
    });
    r.exited();
    this.checkIdle();
  }

  /** A draining worker still serves these engine.io sessions: their requests go on to it. */
  retain(worker: Worker, sids: readonly string[]): void {
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
    for (const r of this.slots) {
      if (r.state === 'ready' && r.worker) {
        sendToWorker(r.worker, msg, `slot ${r.slot}: retiring message`);
      }
    }
  }

  /** A lifecycle message from the current worker of `slot`. */
  lifecycle(slot: number, worker: Worker, msg: LifecycleMessage): void {
    const s = this.slots[slot];
    if (!s) return;
    const incoming = s.incoming;
    if (incoming?.worker === worker) {
      if (msg.t === MessageType.Ready && s.state === 'ready') this.succeed(s, incoming);
      else if (msg.t === MessageType.Ready) {
        // The slot lost its worker meanwhile (it crashed): the successor is not wanted twice.
        incoming.failure = `slot ${slot} lost its worker while the successor started`;
        kill(worker, 'SIGKILL');
      } else if (msg.t === MessageType.StartFailed) incoming.failure = msg.reason;
      return;
    }
    if (s.worker !== worker) return;
    if (msg.t === MessageType.Ready && s.state === 'starting') {
      clearTimeout(s.timer);
      s.timer = undefined;
      s.state = 'ready';
      s.readyAt = Date.now();
      s.lastHeard = s.readyAt;
      // Sent before any connection can be: IPC keeps the order.
      this.emit('syncWorker', worker);
      this.updateLive();
      this.emit('workerUp', { slot: s.slot, pid: worker.process.pid ?? -1 });
    } else if (msg.t === MessageType.Pong) {
      s.lastHeard = Date.now();
    } else if (msg.t === MessageType.StartFailed) {
      debug('slot %d: worker failed to start: %s', s.slot, msg.reason);
    } else if (msg.t === MessageType.Leaving && s.state === 'ready') {
      // Its keys move to their next choice until the replacement is ready.
      s.state = 'stopping';
      s.leaving = true;
      this.updateLive();
      s.timer = setTimeout(() => kill(worker, 'SIGKILL'), this.options.shutdownTimeout);
      s.timer.unref();
    }
  }

  private onExit(
    s: WorkerSlot,
    worker: Worker,
    code: number | null,
    signal: NodeJS.Signals | null,
  ): void {
    if (s.worker !== worker) return;
    const planned = this.closing || s.leaving;
    clearTimeout(s.timer);
    s.timer = undefined;
    s.worker = undefined;
    const wasReady = s.state === 'ready';
    s.state = 'down';
    if (wasReady) this.updateLive();
    const orphans = s.handoff?.takeUnacknowledged() ?? [];
    s.handoff = undefined;
    if (orphans.length > 0) this.emit('orphans', orphans);
    this.emit('workerExit', { slot: s.slot, pid: worker.process.pid ?? -1, code, signal, planned });
    if (this.closing) {
      this.checkIdle();
      return;
    }
    const unresponsive = s.killedUnresponsive;
    s.killedUnresponsive = false;
    if (s.leaving) {
      s.leaving = false;
      s.replaced.planned++;
      this.emit('workerRespawn', { slot: s.slot, attempt: 0, delay: 0 });
      this.fork(s);
      return;
    }
    const stable = s.readyAt > 0 && Date.now() - s.readyAt >= this.options.respawnResetAfter;
    s.crashes = stable ? 1 : s.crashes + 1;
    s.readyAt = 0;
    s.restarts++;
    s.replaced[unresponsive ? 'unresponsive' : 'crash']++;
    const delay = respawnDelay(s.crashes, this.options.respawnDelay, this.options.maxRespawnDelay);
    this.emit('workerRespawn', { slot: s.slot, attempt: s.crashes, delay });
    s.timer = setTimeout(() => this.fork(s), delay);
    s.timer.unref();
  }

  private updateLive(): void {
    const live = this.slots.filter((s) => s.state === 'ready').map((s) => s.slot);
    if (live.length === this.live.length && live.every((slot, i) => slot === this.live[i])) return;
    this.live = live;
    // Workers route the later requests of their connections with the same view.
    const slots = message<SlotsMessage>(MessageType.Slots, { live });
    for (const r of this.slots) {
      if (r.state === 'ready' && r.worker) {
        sendToWorker(r.worker, slots, `slot ${r.slot}: slots message`);
      }
    }
    this.emit('change');
  }

  private checkIdle(): void {
    if (
      this.closing &&
      this.retiring.size === 0 &&
      this.slots.every((s) => s.worker === undefined && s.incoming === undefined)
    ) {
      removeRelayDir(this.relayDir);
      this.emit('idle');
    }
  }
}

function kill(worker: Worker, signal: NodeJS.Signals): void {
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
function pingInterval(options: ResolvedStickyOptions): number {
  return Math.min(1000, Math.max(20, Math.floor(options.unresponsiveTimeout / 5)));
}
