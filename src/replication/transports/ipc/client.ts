import diagnostics_channel from 'node:diagnostics_channel';
import { debug } from '../../../debug.js';
import { StickyMeshError } from '../../../errors.js';
import { primaryChannel, sendToPrimary } from '../../../protocol/ipc.js';
import {
  MessageType,
  message,
  SLOT_ENV,
  type StoreHelloMessage,
  type StoreOptionsMessage,
  TRANSPORT_ENV,
} from '../../../protocol/messages.js';
import type { Clock } from '../../clock.js';
import { type Change, SessionTable } from '../../table.js';
import type { Transport } from '../../transport.js';
import { encodeChange } from '../multicast/codec.js';
import { FenceQueue } from './fence.js';
import { Frame, readAck, readChanges, readIds } from './frames.js';
import { WorkerLink } from './worker-link.js';

/** How long a store created after its worker started waits for the full state, in ms. */
const SYNC_TIMEOUT_MS = 10_000;
/**
 * The longest a read on miss waits for the primary's answer, in ms: the primary bounds the
 * wait itself (`readOnMissWait`); this only covers a primary that never answers.
 */
const QUERY_TIMEOUT_MS = 10_000;
/**
 * The longest a write waits for the primary's answer, in ms: the hub answers every write it
 * gets (applied or refused) at once; this only covers a primary that never answers.
 */
const WRITE_TIMEOUT_MS = 10_000;

/**
 * Gets each change the primary forwards live (another process's write, not the full state a
 * worker is synced with) once it is applied here: the metrics time a write's way to this worker.
 */
export type ChangeObserver = (change: Change) => void;

let observer: ChangeObserver | undefined;

/** Sets (or, with `undefined`, clears) the process's {@link ChangeObserver}. */
export function observeForwardedChanges(fn: ChangeObserver | undefined): void {
  observer = fn;
}

/**
 * `sticky-mesh:replicated`: each change another process made, once this worker applied it
 * (`{ change }`); published only while someone subscribes.
 */
const replicated = diagnostics_channel.channel('sticky-mesh:replicated');

/** A write sent to the primary, waiting for its answer. */
interface PendingWrite {
  resolve(): void;
  reject(err: Error): void;
  readonly timer: NodeJS.Timeout;
}

/** What a worker's `ipc` transport reports. */
export interface IpcStats {
  /** Store frames from the primary dropped as malformed. */
  dropped: number;
  /** Writes sent to the primary and not answered yet. */
  pending: number;
}

/**
 * The worker side of replication inside a sticky-mesh cluster: one replica per worker process
 * (every ReplicatedStore of the process reads it), fed by the hub in the primary over a data
 * channel of its own (see frames.ts). A write is applied here at once and resolves once the hub
 * has it; other workers' writes arrive in the order the hub saw them. Each store gets its own
 * {@link link} to it.
 */
export class HubClient {
  readonly table: SessionTable;
  /** Frames from the primary dropped as malformed. */
  dropped = 0;
  /** The number of the last write sent (the hub answers them by number, in order). */
  private sent = 0;
  private nextQuery = 1;
  private readonly pending = new Map<number, PendingWrite>();
  private synced = false;
  /** A state transfer is under way: connections wait for its end. */
  private receivingState = false;
  private syncWaiters: (() => void)[] = [];
  private readonly clocks = new Set<Clock>();
  /** Reads on miss waiting for the primary, by id. */
  private readonly queries = new Map<number, () => void>();
  /** The primary runs a transport to other machines, so a read on miss can ask it. */
  private readonly canQuery: boolean;
  private readonly channel = new WorkerLink(
    (kind, body) => this.onFrame(kind, body),
    () => this.fenced.release(),
    (why) => this.fail(why),
  );
  /** The data channel closed (or the primary is gone): nothing more comes or goes. */
  private closed = false;
  /** Connections handed over, waiting for the channel to reach their fence (in order). */
  private readonly fenced = new FenceQueue(
    (fence) =>
      this.closed || (this.synced && !this.receivingState && this.channel.consumed >= fence),
    SYNC_TIMEOUT_MS,
  );

  constructor(tombstoneTtl: number) {
    this.table = new SessionTable({ tombstoneTtl });
    this.canQuery = (process.env[TRANSPORT_ENV] ?? '') !== '';
    primaryChannel.on([MessageType.StoreLink], (msg) => {
      if (!this.closed) this.channel.connect(msg);
    });
    // The hub's replica keeps tombstones as long as the stores do; the hub opens the data
    // channel on this message.
    sendToPrimary(
      message<StoreOptionsMessage>(MessageType.StoreOptions, { tombstoneTtl }),
      'store options',
    );
    // And sends the full state on it: connections wait for it (afterFence).
    sendToPrimary(message<StoreHelloMessage>(MessageType.StoreHello, {}), 'store hello');
    // The primary is gone: no write sent to it will be answered.
    process.once('disconnect', () => this.fail('the primary is gone'));
  }

  /**
   * A store's transport over this process's replica: the store's clock observes every change
   * received from elsewhere. Closing it closes nothing: the process's link outlives any store.
   */
  link(clock: Clock): Transport<IpcStats> {
    this.clocks.add(clock);
    return {
      kind: 'ipc',
      start: () => Promise.resolve(),
      synced: () => this.ready(),
      publish: (change) => this.publish(change),
      ...(this.canQuery ? { fetch: (sid: string) => this.fetch(sid) } : {}),
      close: () => Promise.resolve(),
      stats: () => this.stats(),
    };
  }

  /** Stops reading the data channel for `ms` (see WorkerLink#holdReads). */
  holdReads(ms: number): void {
    this.channel.holdReads(ms);
  }

  /** Sends `bytes` on the data channel as they are (see WorkerLink#sendRaw). */
  sendRaw(bytes: Buffer): void {
    this.channel.sendRaw(bytes);
  }

  stats(): IpcStats {
    return { dropped: this.dropped, pending: this.pending.size };
  }

  /**
   * Runs `run` once this worker holds the full state (its first one, and any transfer under way)
   * and has applied its data channel up to `fence`: at once when it has. In order of the calls;
   * bounded by `SYNC_TIMEOUT_MS` (a primary that never sends the state holds nothing forever).
   */
  afterFence(fence: number, run: () => void): void {
    this.fenced.add(fence, run);
  }

  /** The channel is gone: every write and read waiting is settled, fenced connections go on. */
  private fail(why: string): void {
    if (this.closed) return;
    this.closed = true;
    for (const id of [...this.pending.keys()]) {
      this.settleWrite(id, why, 'ERR_STICKY_STORE_CLOSED');
    }
    for (const done of [...this.queries.values()]) done();
    this.markSynced();
    this.fenced.release();
  }

  /** Read on miss: the primary asks the other machines; resolves once it answered (bounded). */
  private fetch(sid: string): Promise<void> {
    const id = this.nextQuery++;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.queries.delete(id);
        resolve();
      };
      const timer = setTimeout(done, QUERY_TIMEOUT_MS);
      timer.unref();
      this.queries.set(id, done);
      if (this.closed) {
        done();
        return;
      }
      this.channel.query(id, sid);
    });
  }

  /**
   * Resolves once this worker holds the full state, which the primary sends as soon as the
   * process's first store exists (waits are bounded).
   */
  private ready(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (this.syncWaiters.length === 0) {
        setTimeout(() => {
          if (!this.synced) {
            debug(
              'no session state from the primary in %d ms; serving what arrived',
              SYNC_TIMEOUT_MS,
            );
            this.markSynced();
          }
        }, SYNC_TIMEOUT_MS).unref();
      }
      this.syncWaiters.push(resolve);
    });
  }

  /**
   * Sends a write already applied here; resolves once the hub has it (read-your-writes), rejects
   * if the hub refused it, the primary is gone, or it did not answer in `WRITE_TIMEOUT_MS`.
   * Every write leaves `pending` when it settles.
   */
  private publish(change: Change): Promise<void> {
    if (this.closed) {
      return Promise.reject(
        new StickyMeshError(
          'ERR_STICKY_STORE_CLOSED',
          'sticky-mesh: write not replicated (the data channel to the primary closed); it may be applied in this worker only',
        ),
      );
    }
    const n = ++this.sent;
    const encoded = encodeChange(change);
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.settleWrite(
            n,
            `the primary did not answer in ${WRITE_TIMEOUT_MS} ms`,
            'ERR_STICKY_WRITE_FAILED',
          ),
        WRITE_TIMEOUT_MS,
      );
      timer.unref();
      this.pending.set(n, { resolve, reject, timer });
      this.channel.write(encoded);
    });
  }

  /** Settles the write numbered `n`: resolves it, or with a reason rejects it. */
  private settleWrite(
    n: number,
    failure?: string,
    code:
      | 'ERR_STICKY_WRITE_FAILED'
      | 'ERR_STICKY_WRITE_REFUSED'
      | 'ERR_STICKY_STORE_CLOSED' = 'ERR_STICKY_WRITE_FAILED',
  ): void {
    const p = this.pending.get(n);
    if (!p) return;
    this.pending.delete(n);
    clearTimeout(p.timer);
    if (failure === undefined) {
      p.resolve();
      return;
    }
    const text =
      code === 'ERR_STICKY_WRITE_REFUSED'
        ? `sticky-mesh: write refused: ${failure}; this worker now holds the newer record`
        : `sticky-mesh: write not replicated (${failure}); it may be applied in this worker only`;
    p.reject(new StickyMeshError(code, text));
  }

  private onFrame(kind: number, body: Buffer): void {
    if (kind === Frame.Changes) {
      const { changes, complete } = readChanges(body);
      for (const { change } of changes) this.applyRemote(change, true);
      if (!complete) this.malformed();
    } else if (kind === Frame.Ack) {
      const ack = readAck(body);
      if (!ack) {
        this.malformed();
        return;
      }
      for (const r of ack.refusals) {
        this.settleWrite(
          r.n,
          r.reason,
          r.lost ? 'ERR_STICKY_WRITE_REFUSED' : 'ERR_STICKY_WRITE_FAILED',
        );
      }
      // Pending writes are numbered in order: every one up to `answered` is answered.
      for (const n of this.pending.keys()) {
        if (n > ack.answered) break;
        this.settleWrite(n);
      }
    } else if (kind === Frame.Found) {
      for (const id of readIds(body) ?? []) this.queries.get(id)?.();
    } else if (kind === Frame.State) {
      if (body.length < 1) {
        this.malformed();
        return;
      }
      const done = body[0] === 1;
      this.receivingState = !done;
      const { changes, complete } = readChanges(body, 1);
      for (const { change } of changes) this.applyRemote(change, false);
      if (!complete) this.malformed();
      if (done) this.markSynced();
    } else {
      this.malformed();
    }
  }

  private malformed(): void {
    this.dropped++;
    debug('dropped a malformed store frame from the primary');
  }

  /** Applies a change from the primary. */
  private applyRemote(change: Change, live: boolean): void {
    this.table.apply(change);
    for (const clock of this.clocks) clock.observe(change.version);
    if (!live) return;
    if (observer) observer(change);
    if (replicated.hasSubscribers) replicated.publish({ change });
  }

  private markSynced(): void {
    this.synced = true;
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const resolve of waiters) resolve();
    this.fenced.release();
  }
}

let client: HubClient | undefined;

/** The process's hub client if a store created it (for the metrics); never creates one. */
export function existingHubClient(): HubClient | undefined {
  return client;
}

/** The process's hub client when it runs as a sticky-mesh worker; `undefined` elsewhere. */
export function hubClient(tombstoneTtl: number): HubClient | undefined {
  if (typeof process.send !== 'function' || process.env[SLOT_ENV] === undefined) return undefined;
  client ??= new HubClient(tombstoneTtl);
  return client;
}

/**
 * Runs `run` once this worker's store has applied its data channel up to `fence` (a handed-over
 * connection's): at once without a store, or when it has.
 */
export function afterStoreFence(fence: number | undefined, run: () => void): void {
  if (client) client.afterFence(fence ?? 0, run);
  else run();
}
