import type { Worker } from 'node:cluster';
import { debug } from '../../../debug.js';
import { sendToWorker } from '../../../protocol/ipc.js';
import {
  type HubMessage,
  type Message,
  MessageType,
  message,
  parseMessage,
  type StoreAckMessage,
  type StoreChangeMessage,
  type StoreFoundMessage,
  type StoreQueryMessage,
  type StoreStateMessage,
} from '../../../protocol/messages.js';
import { compareVersions, isFarAhead } from '../../clock.js';
import { type Change, SessionTable } from '../../table.js';
import type { ReplicaHost, Transport } from '../../transport.js';
import { checkChange, isSessionIdLike } from '../../wire.js';
import { Outbox } from './outbox.js';

/** Changes per state-transfer message: keeps each IPC message small whatever the total. */
const STATE_CHUNK = 500;
/** How often the channels of workers that fell behind are looked at, in ms. */
const DRAIN_CHECK_MS = 50;
/** Bytes a change's message takes beside its session data (envelope, id, version), roughly. */
const CHANGE_OVERHEAD = 160;

export interface HubCounters {
  /** Writes received from workers and applied. */
  writes: number;
  /** Of `writes`, the touches (an expiry moved later, no data). */
  touches: number;
  /** IPC store messages dropped as malformed (a worker's write among them is answered `refused`). */
  dropped: number;
  /** Times a worker's channel backed up past `maxIpcBacklog` and it was resynced once drained. */
  resyncs: number;
  /**
   * Writes from workers refused because the hub already held a newer version of the session
   * (written elsewhere before the worker had received it); the writer's call failed with
   * `ERR_STICKY_WRITE_REFUSED`.
   */
  refused: number;
  /** Changes from other machines stamped further ahead of this clock than `MAX_DRIFT_MS`. */
  versionsAhead: number;
}

export interface HubOptions<T extends Transport> {
  /** Builds the machine's transport to other machines (multicast, Redis), fed by this hub. */
  transport?: ((host: ReplicaHost) => T) | undefined;
  /** How long the hub's replica remembers a destroyed session, in ms. */
  tombstoneTtl?: number;
  /** How often it sweeps expired records, in ms. */
  sweepInterval?: number;
  /** Bytes queued to a worker's channel past which it is resynced instead (`maxIpcBacklog`). */
  maxBacklog?: number;
}

/**
 * The replication hub in the primary, the far end of every worker's `ipc` transport: holds its
 * own replica of every session, takes each worker's writes, and passes them on to every other
 * worker and to the machine's transport to other machines (whose changes it passes to every
 * worker in turn).
 *
 * Ordering is what makes read-your-writes hold. A write is forwarded to every worker the moment
 * it arrives, before it is acknowledged to its writer and before any later connection is handed
 * to anyone; a worker's IPC channel delivers in order, so when a worker is handed a connection
 * it has already applied every write acknowledged before that handoff. A worker gets the full
 * state (in chunks) just before it is marked ready, so its first request sees every session.
 */
export class Hub<T extends Transport = Transport> implements ReplicaHost {
  readonly counters: HubCounters = {
    writes: 0,
    touches: 0,
    dropped: 0,
    resyncs: 0,
    refused: 0,
    versionsAhead: 0,
  };
  readonly table: SessionTable;
  /** The transport to other machines, if any: gets every change a worker makes. */
  readonly transport: T | undefined;
  /** Workers that have the full state, and so get every write from now on. */
  private readonly synced = new Set<Worker>();
  private readonly sweeper: NodeJS.Timeout;
  /**
   * Bytes of changes sent to each worker whose write has not completed yet (a worker that does
   * not read its channel leaves them queued in this process). Counted with the send callbacks:
   * no Node internal is needed.
   */
  private readonly backlog = new Map<Worker, number>();
  /**
   * Workers whose backlog passed `maxBacklog`: fed nothing until it has drained, then given the
   * full state again (which holds every change they missed).
   */
  private readonly behind = new Set<Worker>();
  private drainCheck: NodeJS.Timeout | undefined;
  private readonly maxBacklog: number;
  /** A worker's store said how long it keeps tombstones (until then: the store default). */
  private ttlAnnounced = false;
  /**
   * What goes to the workers in this turn of the event loop, sent once at its end, in two
   * passes: first every worker's forwarded writes (`forwards`), then the answers to writers and
   * to reads on miss (`answers`), so no answer is written before every channel holds the writes
   * it answers for. Nothing else can overtake them: the full state is sent after flushing them,
   * and no connection can depend on a write before its answer.
   */
  private readonly forwards = new Outbox<Worker>(
    (worker, msg, _msgs, bytes) => this.sendQueued(worker, msg, bytes),
    () => this.scheduleFlush(),
  );
  private readonly answers = new Outbox<Worker>(
    (worker, msg, _msgs, bytes) => this.sendQueued(worker, msg, bytes),
    () => this.scheduleFlush(),
  );
  private flushScheduled = false;

  constructor(options: HubOptions<T> = {}) {
    this.maxBacklog = options.maxBacklog ?? 16 * 1024 * 1024;
    this.table = new SessionTable({ tombstoneTtl: options.tombstoneTtl ?? 600_000 });
    this.sweeper = setInterval(() => this.table.sweep(), options.sweepInterval ?? 60_000);
    this.sweeper.unref();
    this.transport = options.transport?.(this);
  }

  /**
   * A worker's store message: a write, its request for the full state, a read on miss, or its
   * settings.
   */
  receive(from: Worker, msg: HubMessage): void {
    if (msg.t === MessageType.StoreBatch) this.receiveBatch(from, msg.msgs);
    else if (msg.t === MessageType.StoreHello) this.sync(from);
    else if (msg.t === MessageType.StoreQuery) this.onQuery(from, msg);
    else if (msg.t === MessageType.StoreOptions) this.adopt(msg.tombstoneTtl);
    else this.onChange(from, msg);
  }

  /** A worker's store messages of one turn, in order; anything else in it is dropped. */
  private receiveBatch(from: Worker, msgs: readonly unknown[]): void {
    for (const raw of msgs) {
      const msg = parseMessage(raw);
      if (
        msg?.t === MessageType.StoreChange ||
        msg?.t === MessageType.StoreQuery ||
        msg?.t === MessageType.StoreHello ||
        msg?.t === MessageType.StoreOptions
      ) {
        this.receive(from, msg);
      } else {
        this.counters.dropped++;
        debug('hub: dropped a malformed message of a batch from pid %d', from.process.pid);
      }
    }
  }

  /** Sends what is queued for the workers now (tests; the event loop does it on its own). */
  flush(): void {
    this.flushScheduled = false;
    this.forwards.flush();
    this.answers.flush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled) return;
    this.flushScheduled = true;
    setImmediate(() => {
      if (this.flushScheduled) this.flush();
    });
  }

  /**
   * The workers' stores keep tombstones `tombstoneTtl`; the hub's replica (which new workers and
   * other machines merge from) keeps them as long as the longest of them.
   */
  private adopt(tombstoneTtl: number): void {
    if (!this.ttlAnnounced || tombstoneTtl > this.table.tombstoneTtl) {
      this.table.tombstoneTtl = tombstoneTtl;
    }
    this.ttlAnnounced = true;
  }

  /**
   * Sessions the cluster no longer knows of (see ReplicaHost#forget): dropped from the hub's
   * replica, and ended in every worker's with a tombstone of their own.
   */
  forget(sids: readonly string[]): void {
    for (const sid of sids) {
      const v = this.table.record(sid)?.version;
      if (!v || !this.table.forget(sid)) continue;
      this.forward({ op: 'destroy', sid, version: { t: v.t, c: v.c + 1, n: v.n } }, undefined);
    }
  }

  /**
   * A read missed a session in a worker: unless the hub holds it (then the worker has it too, or
   * has it on its way: the channel is in order), the machine's transport asks the other
   * machines. A record that arrives is forwarded to every worker before the answer goes out.
   */
  private onQuery(from: Worker, msg: StoreQueryMessage): void {
    // An id no store would ask for (over the limits, cookie junk) is not asked of the cluster.
    const known = this.table.record(msg.sid) !== undefined || !isSessionIdLike(msg.sid);
    const wait = known || !this.transport?.fetch ? undefined : this.transport.fetch(msg.sid);
    const answer = () =>
      this.answers.queue(from, message<StoreFoundMessage>(MessageType.StoreFound, { id: msg.id }));
    if (wait) void wait.then(answer);
    else answer();
  }

  /** Sends the full state to a worker about to become ready; from then on it gets every write. */
  sync(worker: Worker): void {
    // What was queued for it goes first; the state holds it anyway, and comes before anything
    // sent to this worker after this call (a connection).
    this.forwards.flush(worker);
    this.answers.flush(worker);
    const changes = [...this.table.changes()];
    for (let i = 0; i < changes.length || i === 0; i += STATE_CHUNK) {
      const part = changes.slice(i, i + STATE_CHUNK);
      const done = i + STATE_CHUNK >= changes.length;
      send(worker, message<StoreStateMessage>(MessageType.StoreState, { changes: part, done }));
    }
    this.behind.delete(worker);
    if (!this.synced.has(worker)) {
      this.synced.add(worker);
      worker.once('exit', () => {
        this.synced.delete(worker);
        this.behind.delete(worker);
        this.backlog.delete(worker);
        this.forwards.drop(worker);
        this.answers.drop(worker);
      });
    }
  }

  /** Changes from other machines: applied here and passed to every worker. */
  applyRemote(changes: readonly Change[]): void {
    const now = Date.now();
    for (const change of changes) {
      if (isFarAhead(change.version, now)) this.counters.versionsAhead++;
      if (this.table.apply(change)) this.forward(change, undefined);
    }
  }

  close(): void {
    this.flush();
    clearInterval(this.sweeper);
    clearInterval(this.drainCheck);
    this.synced.clear();
    this.behind.clear();
    this.backlog.clear();
  }

  /**
   * A worker's write: apply, pass on to every other worker, then acknowledge. A write the hub
   * refuses is answered too (its writer's promise rejects and nothing waits for it).
   */
  private onChange(from: Worker, msg: StoreChangeMessage): void {
    const change = checkChange(msg.change);
    if (typeof change === 'string') {
      this.counters.dropped++;
      debug('hub: dropped a change from pid %d: %s', from.process.pid, change);
      if (msg.id !== undefined) {
        const refused = `the primary refused the write: ${change}`;
        this.answers.queue(
          from,
          message<StoreAckMessage>(MessageType.StoreAck, { id: msg.id, refused }),
        );
      }
      return;
    }
    this.counters.writes++;
    if (change.op === 'touch') this.counters.touches++;
    let refused: string | undefined;
    if (this.table.apply(change)) {
      this.forward(change, from);
      this.transport?.publish(change);
    } else if (this.lost(change)) {
      // The writer applied it: it gets the record that won instead, before the answer.
      for (const c of this.table.changesOf(change.sid)) {
        this.answers.queue(
          from,
          message<StoreChangeMessage>(MessageType.StoreChange, { change: c }),
        );
      }
      refused = this.refusal(change);
    }
    if (msg.id !== undefined) {
      const ack = refused === undefined ? { id: msg.id } : { id: msg.id, refused, lost: true };
      // In the same flush as the forwards to the other workers: no one can have the answer
      // before every worker's channel holds the write.
      this.answers.queue(from, message<StoreAckMessage>(MessageType.StoreAck, ack));
    }
  }

  /**
   * Whether a worker's write that changed nothing here lost to a newer record (not merely the
   * same version again, or a touch that extends nothing). A worker versions each write above the
   * record it holds, so this means a newer write made elsewhere had not reached it yet.
   */
  private lost(change: Change): boolean {
    const current = this.table.record(change.sid)?.version;
    return (
      change.op !== 'touch' && current !== undefined && compareVersions(change.version, current) < 0
    );
  }

  /**
   * Why a lost write did not take effect, for its writer; `undefined` when the outcome is what it
   * asked for anyway (a destroy of a session already ended by a newer destroy).
   */
  private refusal(change: Change): string | undefined {
    const current = this.table.record(change.sid);
    if (!current || (change.op === 'destroy' && current.data === null)) return undefined;
    this.counters.refused++;
    const v = current.version;
    return `a newer write of the session (version ${v.t}.${v.c}.${v.n}) reached the primary first`;
  }

  private forward(change: Change, from: Worker | undefined): void {
    if (this.synced.size === 0) return;
    const msg = message<StoreChangeMessage>(MessageType.StoreChange, { change });
    const bytes = change.op === 'set' ? change.data.length + CHANGE_OVERHEAD : CHANGE_OVERHEAD;
    for (const worker of this.synced) {
      if (worker === from || this.behind.has(worker) || !worker.isConnected()) continue;
      const queued = (this.backlog.get(worker) ?? 0) + bytes;
      this.backlog.set(worker, queued);
      this.forwards.queue(worker, msg, bytes);
      if (queued > this.maxBacklog) this.fallBehind(worker, queued);
    }
  }

  /** Sends a worker its messages of this turn; `bytes` of them count in its backlog. */
  private sendQueued(worker: Worker, msg: Message, bytes: number): void {
    const sent = sendToWorker(worker, msg, 'hub: store messages', () => {
      if (bytes === 0) return;
      const left = (this.backlog.get(worker) ?? bytes) - bytes;
      if (left > 0) this.backlog.set(worker, left);
      else this.backlog.delete(worker);
    });
    if (!sent) this.backlog.delete(worker);
  }

  /** A worker does not read its channel: stop queueing into it, resync it once it drained. */
  private fallBehind(worker: Worker, queued: number): void {
    debug('hub: %d bytes queued to pid %d; resync once drained', queued, worker.process.pid);
    this.behind.add(worker);
    // Sent now, so that its backlog counts what its channel holds (and drains).
    this.forwards.flush(worker);
    this.drainCheck ??= setInterval(() => this.resyncDrained(), DRAIN_CHECK_MS);
    this.drainCheck.unref();
  }

  private resyncDrained(): void {
    for (const worker of this.behind) {
      if (!worker.isConnected()) {
        this.behind.delete(worker);
      } else if (!this.backlog.has(worker)) {
        this.counters.resyncs++;
        this.sync(worker);
      }
    }
    if (this.behind.size === 0) {
      clearInterval(this.drainCheck);
      this.drainCheck = undefined;
    }
  }
}

function send(worker: Worker, msg: StoreStateMessage) {
  sendToWorker(worker, msg, 'hub: store message');
}
