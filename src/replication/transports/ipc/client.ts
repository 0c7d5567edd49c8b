import { debug } from '../../../debug.js';
import { StickyMeshError } from '../../../errors.js';
import { primaryChannel, sendToPrimary } from '../../../protocol/ipc.js';
import {
  MessageType,
  message,
  parseMessage,
  SLOT_ENV,
  type StoreAckMessage,
  type StoreBatchMessage,
  type StoreChangeMessage,
  type StoreFoundMessage,
  type StoreHelloMessage,
  type StoreOptionsMessage,
  type StoreQueryMessage,
  type StoreStateMessage,
  TRANSPORT_ENV,
} from '../../../protocol/messages.js';
import type { Clock } from '../../clock.js';
import { type Change, SessionTable } from '../../table.js';
import type { Transport } from '../../transport.js';
import { parseChange } from '../../wire.js';
import { Outbox } from './outbox.js';

/** The one peer of a worker's outbox. */
const PRIMARY = 'primary';

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

/** A write sent to the primary, waiting for its answer. */
interface PendingWrite {
  resolve(): void;
  reject(err: Error): void;
  readonly timer: NodeJS.Timeout;
}

/** What a worker's `ipc` transport reports. */
export interface IpcStats {
  /** IPC store messages from the primary dropped as malformed. */
  dropped: number;
  /** Writes sent to the primary and not answered yet. */
  pending: number;
}

/**
 * The worker side of replication inside a sticky-mesh cluster: one replica per worker process
 * (every ReplicatedStore of the process reads it), fed by the hub in the primary. A write is
 * applied here at once and resolves once the hub has it; other workers' writes arrive in the
 * order the hub saw them. Each store gets its own {@link link} to it.
 */
export class HubClient {
  readonly table: SessionTable;
  /** IPC store messages dropped as malformed. */
  dropped = 0;
  private nextId = 1;
  private readonly pending = new Map<number, PendingWrite>();
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private readonly clocks = new Set<Clock>();
  /** Reads on miss waiting for the primary, by id. */
  private readonly queries = new Map<number, () => void>();
  /** The primary runs a transport to other machines, so a read on miss can ask it. */
  private readonly canQuery: boolean;

  constructor(tombstoneTtl: number) {
    this.table = new SessionTable({ tombstoneTtl });
    this.canQuery = (process.env[TRANSPORT_ENV] ?? '') !== '';
    // The hub's replica keeps tombstones as long as the stores do.
    sendToPrimary(
      message<StoreOptionsMessage>(MessageType.StoreOptions, { tombstoneTtl }),
      'store options',
    );
    primaryChannel.on(
      [
        MessageType.StoreBatch,
        MessageType.StoreChange,
        MessageType.StoreAck,
        MessageType.StoreState,
        MessageType.StoreFound,
      ],
      (msg) => this.receive(msg),
    );
    // The primary is gone: no write sent to it will be answered.
    process.once('disconnect', () => {
      for (const id of [...this.pending.keys()]) {
        this.settleWrite(id, 'the primary is gone', 'ERR_STICKY_STORE_CLOSED');
      }
    });
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

  stats(): IpcStats {
    return { dropped: this.dropped, pending: this.pending.size };
  }

  /** Read on miss: the primary asks the other machines; resolves once it answered (bounded). */
  private fetch(sid: string): Promise<void> {
    const id = this.nextId++;
    return new Promise<void>((resolve) => {
      const done = () => {
        clearTimeout(timer);
        this.queries.delete(id);
        resolve();
      };
      const timer = setTimeout(done, QUERY_TIMEOUT_MS);
      timer.unref();
      this.queries.set(id, done);
      this.outbox.queue(PRIMARY, message<StoreQueryMessage>(MessageType.StoreQuery, { id, sid }));
    });
  }

  /**
   * Resolves once this worker holds the full state. A worker normally gets it before it is
   * marked ready; a store created later asks for it and waits (bounded).
   */
  private ready(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (this.syncWaiters.length === 0) {
        sendToPrimary(message<StoreHelloMessage>(MessageType.StoreHello, {}), 'store hello');
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
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      const timer = setTimeout(
        () =>
          this.settleWrite(
            id,
            `the primary did not answer in ${WRITE_TIMEOUT_MS} ms`,
            'ERR_STICKY_WRITE_FAILED',
          ),
        WRITE_TIMEOUT_MS,
      );
      timer.unref();
      this.pending.set(id, { resolve, reject, timer });
      this.outbox.queue(
        PRIMARY,
        message<StoreChangeMessage>(MessageType.StoreChange, { change, id }),
      );
    });
  }

  /**
   * The writes and reads on miss of one turn of the event loop go to the primary as one message
   * (in order); one that cannot be sent settles every write and read it holds.
   */
  private readonly outbox = new Outbox<typeof PRIMARY>((_peer, msg, msgs) => {
    const failed = (err: Error | undefined) => {
      for (const m of msgs) {
        if (m.t === MessageType.StoreChange && m.id !== undefined) {
          const why = err?.message ?? 'the primary is gone';
          this.settleWrite(m.id, why, 'ERR_STICKY_STORE_CLOSED', err);
        } else if (m.t === MessageType.StoreQuery) {
          this.queries.get(m.id)?.();
        }
      }
    };
    const sent = sendToPrimary(msg, 'store messages', (err) => {
      if (err) failed(err);
    });
    if (!sent) failed(undefined);
  });

  /** Settles the write numbered `id`: resolves it, or with a reason rejects it. */
  private settleWrite(
    id: number,
    failure?: string,
    code:
      | 'ERR_STICKY_WRITE_FAILED'
      | 'ERR_STICKY_WRITE_REFUSED'
      | 'ERR_STICKY_STORE_CLOSED' = 'ERR_STICKY_WRITE_FAILED',
    cause?: Error,
  ): void {
    const p = this.pending.get(id);
    if (!p) return;
    this.pending.delete(id);
    clearTimeout(p.timer);
    if (failure === undefined) {
      p.resolve();
      return;
    }
    const text =
      code === 'ERR_STICKY_WRITE_REFUSED'
        ? `sticky-mesh: write refused: ${failure}; this worker now holds the newer record`
        : `sticky-mesh: write not replicated (${failure}); it may be applied in this worker only`;
    p.reject(new StickyMeshError(code, text, cause ? { cause } : undefined));
  }

  private receive(
    msg:
      | StoreBatchMessage
      | StoreChangeMessage
      | StoreAckMessage
      | StoreStateMessage
      | StoreFoundMessage,
  ): void {
    if (msg.t === MessageType.StoreBatch) {
      for (const raw of msg.msgs) {
        const inner = parseMessage(raw);
        if (
          inner?.t === MessageType.StoreChange ||
          inner?.t === MessageType.StoreAck ||
          inner?.t === MessageType.StoreFound
        ) {
          this.receive(inner);
        } else {
          this.dropped++;
          debug('dropped a malformed store message of a batch from the primary');
        }
      }
    } else if (msg.t === MessageType.StoreFound) {
      this.queries.get(msg.id)?.();
    } else if (msg.t === MessageType.StoreChange) {
      const change = this.applyRemote(msg.change);
      if (change && observer) observer(change);
    } else if (msg.t === MessageType.StoreAck) {
      this.settleWrite(
        msg.id,
        msg.refused,
        msg.lost ? 'ERR_STICKY_WRITE_REFUSED' : 'ERR_STICKY_WRITE_FAILED',
      );
    } else {
      for (const change of msg.changes) this.applyRemote(change);
      if (msg.done) this.markSynced();
    }
  }

  /** Applies a change from the primary; returns it, or `undefined` if it was malformed. */
  private applyRemote(value: unknown): Change | undefined {
    const change = parseChange(value);
    if (!change) {
      this.dropped++;
      debug('dropped a malformed session change from the primary');
      return undefined;
    }
    this.table.apply(change);
    for (const clock of this.clocks) clock.observe(change.version);
    return change;
  }

  private markSynced(): void {
    this.synced = true;
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const resolve of waiters) resolve();
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
