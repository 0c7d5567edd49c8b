import cluster, { type Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { debug } from '../debug.js';
import type { ResolvedStickyOptions } from '../options.js';
import { sendToWorker } from '../protocol/ipc.js';
import {
  ADDRESS_ENV,
  MessageType,
  message,
  NODELAY_ENV,
  type PingMessage,
  RELAY_DIR_ENV,
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
import {
  kill,
  newSlot,
  type PoolEvents,
  pingInterval,
  type SlotStats,
  type WorkerSlot,
} from './slots.js';
import { StartupWatch } from './startup.js';
import { Succession } from './succession.js';

export type {
  PoolEvents,
  ReplaceOutcome,
  ReplaceReason,
  SlotState,
  SlotStats,
  WorkerExitInfo,
} from './slots.js';

const SHUTDOWN: ShutdownMessage = message<ShutdownMessage>(MessageType.Shutdown, {});

/**
 * The supervised workers, one per fixed slot, in the cluster primary: forks, tracks readiness,
 * respawns crashed workers into the same slot with exponential backoff, stops them on `shutdown`.
 */
export class WorkerPool extends EventEmitter<PoolEvents> {
  /** Ready slots in ascending order; replaced (never mutated) on every change. */
  live: readonly number[] = [];
  private readonly slots: WorkerSlot[];
  closing = false;
  /** Rolling reloads: successors starting, replaced workers draining (succession.ts). */
  readonly succession: Succession = new Succession(this);
  /** Whether a slot's start fails for good (only until a worker has been ready). */
  private readonly startup: StartupWatch;

  constructor(readonly options: ResolvedStickyOptions) {
    super();
    this.slots = Array.from({ length: options.num }, (_, slot) => newSlot(slot));
    this.startup = new StartupWatch(options.num);
  }

  private pinger: NodeJS.Timeout | undefined;
  private pings = 0;
  private lastCheck = 0;
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
    this.lastCheck = Date.now();
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
   * of connections, is taken out; but not in a round after a stall of this process's own loop
   * (a long GC of a large replica): the workers' answers then wait unread in their channels.
   */
  private checkLiveness(): void {
    const now = Date.now();
    const judge = now - this.lastCheck <= 2 * pingInterval(this.options);
    this.lastCheck = now;
    this.pings++;
    const ping = message<PingMessage>(MessageType.Ping, { n: this.pings });
    for (const s of this.slots) {
      if (s.state !== 'ready' || !s.worker) continue;
      if (judge && now - s.lastHeard > this.options.unresponsiveTimeout) {
        this.unresponsive(s.slot, 'ping');
      } else if (judge && this.overQueued(s.slot, now)) this.unresponsive(s.slot, 'queue');
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
  spawn(s: WorkerSlot, successor: boolean): Worker {
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
      this.succession.onRetiredExit(worker, code, signal),
    );
    return worker;
  }

  private fork(s: WorkerSlot): void {
    s.timer = undefined;
    if (this.closing) return;
    const worker = this.spawn(s, false);
    s.worker = worker;
    s.generation++;
    s.handoff = new Handoff(worker, (handle) => {
      // One a worker a reload replaced could not take is routed again as if new: marking its
      // slot as tried would steer it away from the slot's new worker, to another slot.
      if (s.worker === worker) this.emit('returned', handle, s.slot);
      else this.emit('orphans', [handle]);
    });
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
    this.followExit(s, worker);
  }

  /**
   * Whether `worker` still belongs to `slot`: its worker, the successor a reload is starting, or
   * a worker a reload replaced that is still draining (its sessions' writes count).
   */
  isCurrent(slot: number, worker: Worker): boolean {
    const s = this.slots[slot];
    return s !== undefined && (s.worker === worker || this.succession.owns(slot, worker));
  }

  /** The record of `slot` (for the rolling reload). */
  slot(slot: number): WorkerSlot | undefined {
    return this.slots[slot];
  }

  /** The slots that serve now, with their workers. */
  *serving(): Iterable<{ slot: number; worker: Worker }> {
    for (const s of this.slots) {
      if (s.state === 'ready' && s.worker) yield { slot: s.slot, worker: s.worker };
    }
  }

  /** Handles the exits of `worker` as `s`'s worker's. */
  followExit(s: WorkerSlot, worker: Worker): void {
    worker.on('exit', (code: number | null, signal: NodeJS.Signals | null) =>
      this.onExit(s, worker, code, signal),
    );
  }

  /** A lifecycle message from the current worker of `slot`. */
  lifecycle(slot: number, worker: Worker, msg: LifecycleMessage): void {
    const s = this.slots[slot];
    if (!s) return;
    const incoming = s.incoming;
    if (incoming?.worker === worker) {
      if (msg.t === MessageType.Ready && s.state === 'ready') this.succession.succeed(s, incoming);
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
      this.startup.ready();
      // Sent before any connection can be: IPC keeps the order.
      this.emit('syncWorker', worker);
      this.updateLive();
      this.emit('workerUp', { slot: s.slot, pid: worker.process.pid ?? -1 });
    } else if (msg.t === MessageType.Pong) {
      s.lastHeard = Date.now();
    } else if (msg.t === MessageType.StartFailed) {
      debug('slot %d: worker failed to start: %s', s.slot, msg.reason);
      this.startup.reported(s.slot, msg);
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
    const failed = this.startup.exited(s.slot);
    if (failed) {
      this.emit('startupFailed', failed);
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

  checkIdle(): void {
    if (
      this.closing &&
      this.succession.idle() &&
      this.slots.every((s) => s.worker === undefined && s.incoming === undefined)
    ) {
      removeRelayDir(this.relayDir);
      this.emit('idle');
    }
  }
}
