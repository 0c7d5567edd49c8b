import type { Worker } from 'node:cluster';
import { debug } from '../debug.js';
import { isRawHandle, type RawHandle } from '../node-internals.js';
import {
  type HubMessage,
  type LeavingMessage,
  MessageType,
  type MetricsReportMessage,
  type PongMessage,
  parseMessage,
  type ReadyMessage,
  SOURCE,
  type StartFailedMessage,
} from '../protocol/messages.js';

/** A worker's messages about its own lifecycle (and its answers to liveness pings). */
export type LifecycleMessage = ReadyMessage | StartFailedMessage | LeavingMessage | PongMessage;

/** Who owns what a worker sends: each message goes to exactly one of them. */
export interface WorkerMessageOwners {
  /** Whether `worker` still serves `slot`: the messages of a replaced worker are dropped. */
  isCurrent(slot: number, worker: Worker): boolean;
  /** The worker pool: ready, failed to start, leaving. */
  lifecycle(slot: number, worker: Worker, msg: LifecycleMessage): void;
  /** The replication hub: a session write, a request for the full state, a read on miss. */
  store(worker: Worker, msg: HubMessage): void;
  /**
   * The balancer: a connection handed back because its next request (in `head`, with every byte
   * read after it) belongs elsewhere; `peer` is its address key. Taken from any worker, current
   * or not: the connection is the primary's to route whatever state its sender is in.
   */
  reroute(handle: RawHandle, head: Buffer, peer: string | undefined): void;
  /**
   * The metrics: a worker's answer to a scrape. Taken from any worker, current or not: a worker
   * being replaced still serves (and reports) until it exits.
   */
  metrics(worker: Worker, msg: MetricsReportMessage): void;
  /** The pool: engine.io sessions a worker draining for a reload still serves. */
  retained(worker: Worker, sids: readonly string[]): void;
  /** Any message that is not sticky-mesh's (another library's, say Socket.io's cluster adapter). */
  foreign(raw: unknown): void;
}

/**
 * The primary's side of the IPC channel: one listener per worker, which parses each message
 * once and routes it to its owner. What is ours by its tag but does not parse (another protocol
 * version, a wrong shape) is dropped and counted; a handle that came without a message of ours
 * is closed (nobody else would).
 */
export class WorkerChannels {
  /** Messages tagged as sticky-mesh's that did not parse. */
  malformed = 0;

  constructor(private readonly owners: WorkerMessageOwners) {}

  /** Routes the messages of `worker`, forked into `slot`. Call right after the fork. */
  attach(slot: number, worker: Worker): void {
    worker.on('message', (raw: unknown, handle: unknown) => this.route(slot, worker, raw, handle));
  }

  private route(slot: number, worker: Worker, raw: unknown, handle: unknown): void {
    const msg = parseMessage(raw);
    if (!msg && (raw as { src?: unknown } | null)?.src === SOURCE) {
      this.malformed++;
      debug('slot %d: dropped a malformed sticky-mesh message', slot);
    } else if (!msg) {
      this.owners.foreign(raw);
    }
    if (msg?.t === MessageType.Reroute && isRawHandle(handle)) {
      this.owners.reroute(handle, Buffer.from(msg.head, 'base64'), msg.peer);
      return;
    }
    if (msg?.t === MessageType.MetricsReport) {
      this.owners.metrics(worker, msg);
      return;
    }
    if (isRawHandle(handle)) {
      debug('slot %d: closing an unexpected handle from the worker', slot);
      handle.close();
    }
    if (!msg || !this.owners.isCurrent(slot, worker)) return;
    switch (msg.t) {
      case MessageType.StoreBatch:
      case MessageType.StoreChange:
      case MessageType.StoreHello:
      case MessageType.StoreOptions:
      case MessageType.StoreQuery:
        this.owners.store(worker, msg);
        return;
      case MessageType.Retained:
        this.owners.retained(worker, msg.sids);
        return;
      case MessageType.Ready:
      case MessageType.StartFailed:
      case MessageType.Leaving:
      case MessageType.Pong:
        this.owners.lifecycle(slot, worker, msg);
        return;
      default:
        // Messages only the primary sends (or a Reroute without its handle): nothing to do.
        return;
    }
  }
}
