import type { Worker } from 'node:cluster';
import { debug } from '../../../debug.js';
import { type HubMessage, MessageType } from '../../../protocol/messages.js';
import { compareVersions, isFarAhead } from '../../clock.js';
import { type Change, SessionTable } from '../../table.js';
import type { ReplicaHost, Transport } from '../../transport.js';
import { isSessionIdLike, limitProblem } from '../../wire.js';
import { encodeChange } from '../multicast/codec.js';
import { setFence } from './fence.js';
import { changesFrame, changesFrames, Frame, frame, readChanges, readQuery } from './frames.js';
import { Link, type LinkEnd, type LinkMaker } from './link.js';
import { LinkServer, socketLink } from './link-server.js';

export type { LinkEnd, LinkMaker } from './link.js';

/** How often the channels of workers that fell behind are looked at, in ms. */
const DRAIN_CHECK_MS = 50;

export interface HubCounters {
  /** Writes received from workers and applied. */
  writes: number;
  /** Of `writes`, the touches (an expiry moved later, no data). */
  touches: number;
  /** Store messages and frames dropped as malformed (a worker's write among them is answered `refused`). */
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
  /** Makes each worker's data channel (default: a Unix socket the worker connects to). */
  link?: LinkMaker;
}

/**
 * The replication hub in the primary, the far end of every worker's `ipc` transport: holds its
 * own replica of every session, takes each worker's writes, and passes them on to every other
 * worker and to the machine's transport to other machines (whose changes it passes to every
 * worker in turn).
 *
 * Writes travel on a data channel per worker (a Unix socket, binary frames), not on the IPC
 * channel that carries connections: a worker sends the writes of one turn of its event loop as
 * one frame, and the hub passes that frame's bytes on, as they are, to every other worker.
 *
 * Ordering is what makes read-your-writes hold. A write is forwarded to every worker before it
 * is acknowledged to its writer: at the end of each turn the hub writes every channel's
 * forwarded changes first, then the answers. A connection handed to a worker carries how far the
 * hub had written that worker's channel (its fence); the worker serves it once it has applied
 * that far, so it has every write acknowledged before the handoff. A worker gets the full state
 * before it is marked ready, and serves connections only once it has all of it.
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
  private readonly links = new Map<Worker, Link>();
  private readonly sweeper: NodeJS.Timeout;
  private drainCheck: NodeJS.Timeout | undefined;
  private readonly maxBacklog: number;
  private readonly makeLink: LinkMaker;
  private server: LinkServer | undefined;
  /** A worker's store said how long it keeps tombstones (until then: the store default). */
  private ttlAnnounced = false;
  /** Changes for every worker this turn that no worker wrote (other machines, forget). */
  private broadcast: Buffer[] = [];
  private flushScheduled = false;
  private closed = false;

  constructor(options: HubOptions<T> = {}) {
    this.maxBacklog = options.maxBacklog ?? 16 * 1024 * 1024;
    this.table = new SessionTable({ tombstoneTtl: options.tombstoneTtl ?? 600_000 });
    this.sweeper = setInterval(() => this.table.sweep(), options.sweepInterval ?? 60_000);
    this.sweeper.unref();
    this.makeLink = options.link ?? ((w, onFrame, onClose) => this.socketLink(w, onFrame, onClose));
    this.transport = options.transport?.(this);
  }

  /**
   * A worker's store message over IPC: its settings (its first message: the hub opens its data
   * channel), or its request for the full state. Writes and reads come on the data channel;
   * the IPC store messages of earlier versions are dropped and counted.
   */
  receive(from: Worker, msg: HubMessage): void {
    if (msg.t === MessageType.StoreOptions) {
      this.adopt(msg.tombstoneTtl);
      this.link(from);
    } else if (msg.t === MessageType.StoreHello) {
      this.sync(from);
    } else {
      this.counters.dropped++;
      debug('hub: dropped a store message of type %d from pid %d', msg.t, from.process.pid);
    }
  }

  /** How far the hub has written `worker`'s data channel (0 without one). */
  position(worker: Worker): number {
    return this.links.get(worker)?.written ?? 0;
  }

  /** Sends what is queued for the workers now (tests; the event loop does it on its own). */
  flush(): void {
    this.flushScheduled = false;
    if (this.broadcast.length > 0) {
      const frames = changesFrames(this.broadcast);
      this.broadcast = [];
      for (const link of this.links.values()) {
        if (link.fed) for (const shared of frames) this.queueOut(link, shared);
      }
    }
    // First every channel's changes, then every answer: no answer goes out before every
    // channel holds what it answers for.
    for (const link of this.links.values()) link.flushOut();
    for (const link of this.links.values()) link.flushAnswers();
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

  /** The data channel of `worker`, opened on its store's first message. */
  private link(worker: Worker): Link {
    const known = this.links.get(worker);
    if (known) return known;
    const link = new Link(worker, (self) =>
      this.makeLink(
        worker,
        (kind, body) => this.onFrame(self, kind, body),
        () => this.drop(self),
      ),
    );
    this.links.set(worker, link);
    setFence(worker, () => link.written);
    worker.once('exit', () => this.drop(link));
    return link;
  }

  private drop(link: Link): void {
    if (this.links.get(link.worker) !== link) return;
    this.links.delete(link.worker);
    setFence(link.worker, undefined);
    link.end.close();
  }

  /** The default data channel: a Unix socket the worker connects to, told where over IPC. */
  private socketLink(
    worker: Worker,
    onFrame: (kind: number, body: Buffer) => void,
    onClose: () => void,
  ): LinkEnd {
    this.server ??= new LinkServer();
    return socketLink(this.server, worker, onFrame, onClose, () => this.counters.dropped++);
  }

  /**
   * Sessions the cluster no longer knows of (see ReplicaHost#forget): dropped from the hub's
   * replica, and ended in every worker's with a tombstone of their own.
   */
  forget(sids: readonly string[]): void {
    for (const sid of sids) {
      const v = this.table.versionOf(sid);
      if (!v || !this.table.forget(sid)) continue;
      this.toEveryone({ op: 'destroy', sid, version: { t: v.t, c: v.c + 1, n: v.n } });
    }
  }

  /**
   * A worker is about to become ready: it gets the full state unless it has it (its store asked
   * for it when it was created) or has no store (no channel).
   */
  syncOnce(worker: Worker): void {
    if (this.links.get(worker)?.synced === false) this.sync(worker);
  }

  /** Sends the full state to a worker; from then on it gets every write. */
  sync(worker: Worker): void {
    // A worker without a store has no channel (its store's first message opens one).
    const link = this.links.get(worker);
    if (!link) return;
    // What was queued for it goes first; the state holds it anyway.
    link.flushOut();
    link.flushAnswers();
    link.behind = false;
    link.synced = true;
    link.sendState(this.table.changes(), () => this.links.get(worker) === link);
  }

  /** Changes from other machines: applied here and passed to every worker. */
  applyRemote(changes: readonly Change[]): void {
    const now = Date.now();
    for (const change of changes) {
      if (isFarAhead(change.version, now)) this.counters.versionsAhead++;
      if (this.table.apply(change)) this.toEveryone(change);
    }
  }

  close(): void {
    this.flush();
    this.closed = true;
    clearInterval(this.sweeper);
    clearInterval(this.drainCheck);
    for (const link of [...this.links.values()]) this.drop(link);
    this.server?.close();
  }

  private toEveryone(change: Change): void {
    this.broadcast.push(encodeChange(change));
    this.scheduleFlush();
  }

  private scheduleFlush(): void {
    if (this.flushScheduled || this.closed) return;
    this.flushScheduled = true;
    setImmediate(() => {
      if (this.flushScheduled) this.flush();
    });
  }

  private onFrame(link: Link, kind: number, body: Buffer): void {
    if (this.links.get(link.worker) !== link) return;
    if (kind === Frame.Changes) this.onChanges(link, body);
    else if (kind === Frame.Query) {
      const q = readQuery(body);
      if (q) this.onQuery(link, q.id, q.sid);
      else this.malformed(link, 'a malformed read');
    } else this.malformed(link, `a frame of unknown kind ${kind}`);
  }

  private malformed(link: Link, what: string): void {
    this.counters.dropped++;
    debug('hub: dropped %s from pid %d', what, link.worker.process.pid);
  }

  /**
   * A worker's writes of one turn: each applied, then passed on to every other worker (the
   * same bytes, when all of them applied), then answered. A write the hub refuses is answered
   * too (its writer's promise rejects and nothing waits for it).
   */
  private onChanges(link: Link, body: Buffer): void {
    const { changes, count, complete } = readChanges(body, 0, false);
    const applied: Buffer[] = [];
    let all = complete;
    for (const { change, start, end } of changes) {
      const n = ++link.received;
      // The codec checked its shape; the limits it was decoded past are checked here.
      const problem = limitProblem(change);
      if (problem !== undefined) {
        this.counters.dropped++;
        link.refusals.push({ n, lost: false, reason: `the primary refused the write: ${problem}` });
        all = false;
        continue;
      }
      this.counters.writes++;
      if (change.op === 'touch') this.counters.touches++;
      if (this.table.apply(change)) {
        const encoded = body.subarray(start, end);
        applied.push(encoded);
        // A copy: the transport may keep it (multicast's repair ring) past this read's buffer.
        this.transport?.publish(change, Buffer.from(encoded));
      } else {
        all = false;
        if (this.lost(change)) {
          // The writer applied it: it gets the record that won instead, before the answer.
          for (const c of this.table.changesOf(change.sid)) link.winners.push(encodeChange(c));
          const reason = this.refusal(change);
          if (reason !== undefined) link.refusals.push({ n, lost: true, reason });
        }
      }
    }
    if (!complete) {
      this.malformed(link, 'a malformed change');
      for (let i = changes.length; i < count; i++) {
        const n = ++link.received;
        link.refusals.push({ n, lost: false, reason: 'the primary refused the write: malformed' });
      }
    }
    if (applied.length > 0) {
      const shared = all ? frame(Frame.Changes, [body]) : changesFrame(applied);
      for (const other of this.links.values()) {
        if (other !== link && other.fed) this.queueOut(other, shared);
      }
    }
    this.scheduleFlush();
  }

  /**
   * A read missed a session in a worker: unless the hub holds it (then the worker has it too, or
   * has it on its way: the channel is in order), the machine's transport asks the other
   * machines. A record that arrives is forwarded to every worker before the answer goes out.
   */
  private onQuery(link: Link, id: number, sid: string): void {
    // An id no store would ask for (over the limits, cookie junk) is not asked of the cluster.
    const known = this.table.record(sid) !== undefined || !isSessionIdLike(sid);
    const wait = known || !this.transport?.fetch ? undefined : this.transport.fetch(sid);
    const answer = () => {
      link.found.push(id);
      this.scheduleFlush();
    };
    if (wait) void wait.then(answer);
    else answer();
  }

  private queueOut(link: Link, bytes: Buffer): void {
    link.out.push(bytes);
    if (link.end.writableLength + bytes.length > this.maxBacklog) this.fallBehind(link);
  }

  /**
   * Whether a worker's write that changed nothing here lost to a newer record (not merely the
   * same version again, or a touch that extends nothing). A worker versions each write above the
   * record it holds, so this means a newer write made elsewhere had not reached it yet.
   */
  private lost(change: Change): boolean {
    const current = this.table.versionOf(change.sid);
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

  /** A worker does not read its channel: stop queueing into it, resync it once it drained. */
  private fallBehind(link: Link): void {
    if (link.behind) return;
    debug(
      'hub: %d bytes queued to pid %d; resync once drained',
      link.end.writableLength,
      link.worker.process.pid,
    );
    link.behind = true;
    link.stopTransfer();
    // What is queued goes now; the resync holds what it misses from here.
    link.flushOut();
    this.drainCheck ??= setInterval(() => this.resyncDrained(), DRAIN_CHECK_MS);
    this.drainCheck.unref();
  }

  private resyncDrained(): void {
    let behind = 0;
    for (const link of this.links.values()) {
      if (!link.behind) continue;
      if (link.end.writableLength === 0) {
        this.counters.resyncs++;
        this.sync(link.worker);
      } else behind++;
    }
    if (behind === 0) {
      clearInterval(this.drainCheck);
      this.drainCheck = undefined;
    }
  }
}
