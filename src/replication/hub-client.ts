import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import {
  MessageType,
  message,
  parseMessage,
  SLOT_ENV,
  type StoreChangeMessage,
  type StoreHelloMessage,
} from '../protocol/messages.js';
import type { Version } from './clock.js';
import { type Change, SessionTable } from './table.js';
import { parseChange } from './wire.js';

/** How long a store created after its worker started waits for the full state, in ms. */
const SYNC_TIMEOUT_MS = 10_000;

/**
 * The worker side of replication inside a sticky-mesh cluster: one replica per worker process
 * (every ReplicatedStore of the process reads it), fed by the hub in the primary. A write is
 * applied here at once and resolves once the hub has it; other workers' writes arrive in the
 * order the hub saw them.
 */
export class HubClient {
  readonly table: SessionTable;
  /** IPC store messages dropped as malformed. */
  dropped = 0;
  private nextId = 1;
  private readonly pending = new Map<number, { resolve(): void; reject(err: Error): void }>();
  private synced = false;
  private syncWaiters: (() => void)[] = [];
  private readonly observers = new Set<(version: Version) => void>();
  private readonly onMessage = (raw: unknown) => this.receive(raw);

  constructor(tombstoneTtl: number) {
    this.table = new SessionTable({ tombstoneTtl });
    process.on('message', this.onMessage);
  }

  /** Called with the version of every change received from elsewhere (clocks observe them). */
  observe(listener: (version: Version) => void): void {
    this.observers.add(listener);
  }

  /**
   * Resolves once this worker holds the full state. A worker normally gets it before it is
   * marked ready; a store created later asks for it and waits (bounded).
   */
  ready(): Promise<void> {
    if (this.synced) return Promise.resolve();
    return new Promise<void>((resolve) => {
      if (this.syncWaiters.length === 0) {
        send(message<StoreHelloMessage>(MessageType.StoreHello, {}));
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

  /** Applies a local write and resolves once the hub has it (read-your-writes everywhere). */
  submit(change: Change): Promise<void> {
    this.table.apply(change);
    const id = this.nextId++;
    return new Promise<void>((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      const ok = send(
        message<StoreChangeMessage>(MessageType.StoreChange, { change, id }),
        (err) => {
          if (!err) return;
          this.pending.delete(id);
          reject(
            new StickyMeshError(
              'ERR_STICKY_STORE_CLOSED',
              `sticky-mesh: write not replicated: ${err.message}`,
              {
                cause: err,
              },
            ),
          );
        },
      );
      if (!ok) {
        this.pending.delete(id);
        reject(new StickyMeshError('ERR_STICKY_STORE_CLOSED', 'sticky-mesh: the primary is gone'));
      }
    });
  }

  private receive(raw: unknown): void {
    const msg = parseMessage(raw);
    if (!msg) return;
    if (msg.t === MessageType.StoreChange) {
      this.applyRemote(msg.change);
    } else if (msg.t === MessageType.StoreAck) {
      const p = this.pending.get(msg.id);
      this.pending.delete(msg.id);
      p?.resolve();
    } else if (msg.t === MessageType.StoreState) {
      for (const change of msg.changes) this.applyRemote(change);
      if (msg.done) this.markSynced();
    }
  }

  private applyRemote(value: unknown): void {
    const change = parseChange(value);
    if (!change) {
      this.dropped++;
      debug('dropped a malformed session change from the primary');
      return;
    }
    this.table.apply(change);
    for (const observer of this.observers) observer(change.version);
  }

  private markSynced(): void {
    this.synced = true;
    const waiters = this.syncWaiters;
    this.syncWaiters = [];
    for (const resolve of waiters) resolve();
  }
}

let client: HubClient | undefined;

/** The process's hub client when it runs as a sticky-mesh worker; `undefined` elsewhere. */
export function hubClient(tombstoneTtl: number): HubClient | undefined {
  if (typeof process.send !== 'function' || process.env[SLOT_ENV] === undefined) return undefined;
  client ??= new HubClient(tombstoneTtl);
  return client;
}

function send(msg: object, callback?: (err: Error | null) => void): boolean {
  if (!process.connected || !process.send) return false;
  process.send(msg, undefined, {}, (err: Error | null) => {
    if (err) debug('store message to the primary failed: %s', err.message);
    callback?.(err);
  });
  return true;
}
