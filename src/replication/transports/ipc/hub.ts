import type { Worker } from 'node:cluster';
import { debug } from '../../../debug.js';
import { sendToWorker } from '../../../protocol/ipc.js';
import {
  MessageType,
  message,
  type StoreAckMessage,
  type StoreChangeMessage,
  type StoreFoundMessage,
  type StoreHelloMessage,
  type StoreQueryMessage,
  type StoreStateMessage,
} from '../../../protocol/messages.js';
import { type Change, SessionTable } from '../../table.js';
import type { ReplicaHost, Transport } from '../../transport.js';
import { parseChange } from '../../wire.js';

/** Changes per state-transfer message: keeps each IPC message small whatever the total. */
const STATE_CHUNK = 500;

export interface HubCounters {
  /** Writes received from workers and applied. */
  writes: number;
  /** IPC store messages dropped as malformed. */
  dropped: number;
}

export interface HubOptions<T extends Transport> {
  /** Builds the machine's transport to other machines (multicast, Redis), fed by this hub. */
  transport?: ((host: ReplicaHost) => T) | undefined;
  /** How long the hub's replica remembers a destroyed session, in ms. */
  tombstoneTtl?: number;
  /** How often it sweeps expired records, in ms. */
  sweepInterval?: number;
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
  readonly counters: HubCounters = { writes: 0, dropped: 0 };
  readonly table: SessionTable;
  /** The transport to other machines, if any: gets every change a worker makes. */
  readonly transport: T | undefined;
  /** Workers that have the full state, and so get every write from now on. */
  private readonly synced = new Set<Worker>();
  private readonly sweeper: NodeJS.Timeout;

  constructor(options: HubOptions<T> = {}) {
    this.table = new SessionTable({ tombstoneTtl: options.tombstoneTtl ?? 600_000 });
    this.sweeper = setInterval(() => this.table.sweep(), options.sweepInterval ?? 60_000);
    this.sweeper.unref();
    this.transport = options.transport?.(this);
  }

  /** A worker's store message: a write, its request for the full state, or a read on miss. */
  receive(from: Worker, msg: StoreChangeMessage | StoreHelloMessage | StoreQueryMessage): void {
    if (msg.t === MessageType.StoreHello) this.sync(from);
    else if (msg.t === MessageType.StoreQuery) this.onQuery(from, msg);
    else this.onChange(from, msg);
  }

  /**
   * A read missed a session in a worker: unless the hub holds it (then the worker has it too, or
   * has it on its way: the channel is in order), the machine's transport asks the other
   * machines. A record that arrives is forwarded to every worker before the answer goes out.
   */
  private onQuery(from: Worker, msg: StoreQueryMessage): void {
    const known = this.table.record(msg.sid) !== undefined;
    const wait = known || !this.transport?.fetch ? undefined : this.transport.fetch(msg.sid);
    const answer = () =>
      send(from, message<StoreFoundMessage>(MessageType.StoreFound, { id: msg.id }));
    if (wait) void wait.then(answer);
    else answer();
  }

  /** Sends the full state to a worker about to become ready; from then on it gets every write. */
  sync(worker: Worker): void {
    const changes = [...this.table.changes()];
    for (let i = 0; i < changes.length || i === 0; i += STATE_CHUNK) {
      const part = changes.slice(i, i + STATE_CHUNK);
      const done = i + STATE_CHUNK >= changes.length;
      send(worker, message<StoreStateMessage>(MessageType.StoreState, { changes: part, done }));
    }
    if (!this.synced.has(worker)) {
      this.synced.add(worker);
      worker.once('exit', () => this.synced.delete(worker));
    }
  }

  /** Changes from other machines: applied here and passed to every worker. */
  applyRemote(changes: readonly Change[]): void {
    for (const change of changes) {
      if (this.table.apply(change)) this.forward(change, undefined);
    }
  }

  close(): void {
    clearInterval(this.sweeper);
    this.synced.clear();
  }

  /** A worker's write: apply, pass on to every other worker, then acknowledge. */
  private onChange(from: Worker, msg: StoreChangeMessage): void {
    const change = parseChange(msg.change);
    if (!change) {
      this.counters.dropped++;
      debug('hub: dropped a malformed change from pid %d', from.process.pid);
      return;
    }
    this.counters.writes++;
    if (this.table.apply(change)) {
      this.forward(change, from);
      this.transport?.publish(change);
    }
    if (msg.id !== undefined) {
      send(from, message<StoreAckMessage>(MessageType.StoreAck, { id: msg.id }));
    }
  }

  private forward(change: Change, from: Worker | undefined): void {
    if (this.synced.size === 0) return;
    const msg = message<StoreChangeMessage>(MessageType.StoreChange, { change });
    for (const worker of this.synced) if (worker !== from) send(worker, msg);
  }
}

function send(
  worker: Worker,
  msg: StoreStateMessage | StoreAckMessage | StoreChangeMessage | StoreFoundMessage,
) {
  sendToWorker(worker, msg, 'hub: store message');
}
