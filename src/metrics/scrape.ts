import type { Worker } from 'node:cluster';
import { debug } from '../debug.js';
import { sendToWorker } from '../protocol/ipc.js';
import {
  MessageType,
  type MetricsReportMessage,
  type MetricsRequestMessage,
  message,
} from '../protocol/messages.js';

/** One worker's answer to a scrape: its slot and what it reported. */
export interface WorkerReport {
  readonly slot: number;
  readonly pid: number;
  readonly metrics: readonly unknown[];
}

export interface Gathered {
  readonly reports: WorkerReport[];
  /** Slots of the workers asked that did not answer in time. */
  readonly missed: number[];
}

interface Round {
  /** The workers asked and not heard from yet, with their slots. */
  readonly waiting: Map<Worker, number>;
  readonly reports: WorkerReport[];
  readonly missed: number[];
  readonly timer: NodeJS.Timeout;
  readonly done: (gathered: Gathered) => void;
}

/**
 * Asks the workers for their metrics, in the primary. A round asks every worker that has been
 * ready and is still connected (during a rolling reload that is two workers in one slot for a
 * while: both are asked) and ends when each has answered or at its deadline, whichever is
 * first: a worker whose event loop is blocked costs a scrape at most the deadline and is
 * reported as missed. A worker that leaves (disconnects, exits) meanwhile is no longer waited
 * for and is not a miss: its metrics went with it. An answer after its round ended is dropped.
 */
export class WorkerScrapes {
  /** Forked workers and their slots; `ready` holds those that have reported ready. */
  private readonly forked = new Map<Worker, number>();
  private readonly ready = new Set<Worker>();
  private readonly rounds = new Map<number, Round>();
  private nextId = 1;

  /** A worker was forked into `slot`: asked from its first `ready` on, until it exits. */
  track(worker: Worker, slot: number): void {
    this.forked.set(worker, slot);
    worker.once('disconnect', () => this.forget(worker));
    worker.once('exit', () => this.forget(worker));
  }

  /** The worker with this pid reported ready. */
  up(pid: number): void {
    for (const worker of this.forked.keys()) {
      if (worker.process.pid === pid) this.ready.add(worker);
    }
  }

  /** Asks every ready worker; resolves once all answered or after `timeoutMs`. */
  gather(timeoutMs: number): Promise<Gathered> {
    const id = this.nextId++;
    return new Promise<Gathered>((resolve) => {
      const round: Round = {
        waiting: new Map(),
        reports: [],
        missed: [],
        timer: setTimeout(() => this.finish(id), timeoutMs),
        done: resolve,
      };
      round.timer.unref();
      this.rounds.set(id, round);
      const request = message<MetricsRequestMessage>(MessageType.MetricsRequest, { id });
      for (const worker of this.ready) {
        const slot = this.forked.get(worker) as number;
        if (sendToWorker(worker, request, `slot ${slot}: metrics request`)) {
          round.waiting.set(worker, slot);
        }
      }
      this.settle(id, round);
    });
  }

  /** A worker's MetricsReport (from any worker forked here, current or being replaced). */
  receive(worker: Worker, msg: MetricsReportMessage): void {
    const round = this.rounds.get(msg.id);
    const slot = round?.waiting.get(worker);
    if (!round || slot === undefined) return;
    round.waiting.delete(worker);
    if (msg.error) debug('slot %d: metrics report: %s', slot, msg.error);
    round.reports.push({ slot, pid: worker.process.pid ?? -1, metrics: msg.metrics });
    this.settle(msg.id, round);
  }

  /** Ends every round now with what it has (closing). */
  close(): void {
    for (const id of [...this.rounds.keys()]) this.finish(id);
  }

  private forget(worker: Worker): void {
    this.forked.delete(worker);
    this.ready.delete(worker);
    for (const [id, round] of this.rounds) {
      if (round.waiting.delete(worker)) this.settle(id, round);
    }
  }

  private settle(id: number, round: Round): void {
    if (round.waiting.size === 0) this.finish(id);
  }

  private finish(id: number): void {
    const round = this.rounds.get(id);
    if (!round) return;
    this.rounds.delete(id);
    clearTimeout(round.timer);
    round.missed.push(...round.waiting.values());
    round.waiting.clear();
    round.done({ reports: round.reports, missed: round.missed.sort((a, b) => a - b) });
  }
}
