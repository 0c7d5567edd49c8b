import { type EventEmitter, errorMonitor } from 'node:events';
import type { AddressInfo } from 'node:net';
import type { ResolvedLogger } from '../logger.js';
import type { HubCounters } from '../replication/transports/ipc/hub.js';
import type { MulticastStats } from '../replication/transports/multicast/transport.js';
import type { RedisStats } from '../replication/transports/redis/transport.js';
import type { PoolEvents, WorkerExitInfo } from './pool.js';
import type { ReloadStep } from './reload.js';

/**
 * The primary's side of the `logger` option: one line per lifecycle step, from the events the
 * primary emits anyway, and a periodic count of what was dropped. Nothing here runs per
 * connection or per message: dropped messages are counted where they are dropped, and their
 * counters are read here every {@link DROP_REPORT_MS}.
 *
 * Levels: `error` a worker crashed or never became ready, the primary failed (bind, transport);
 * `warn` a worker was killed as unresponsive, messages were dropped; `info` listening, a worker
 * up, every worker ready, a respawn, each step of a rolling reload, closed; `debug` a worker
 * that exited as asked. A reload that fails is an `error`.
 */

/** How often the counters of dropped messages are read, and at most one line per kind, in ms. */
export const DROP_REPORT_MS = 10_000;

/** The primary's events that are logged (primary.ts emits them). */
export interface LoggedEvents
  extends Pick<PoolEvents, 'workerUp' | 'workerExit' | 'workerRespawn' | 'workerUnresponsive'> {
  listening: [AddressInfo];
  ready: [];
  close: [];
  reload: [ReloadStep];
}

/** The parts of the primary's `stats()` read here. */
export interface LoggedStats {
  slots: readonly unknown[];
  malformedMessages: number;
  sessions: Pick<HubCounters, 'dropped'>;
  multicast?: Pick<MulticastStats, 'malformed' | 'rejected'>;
  redis?: Pick<RedisStats, 'malformed' | 'dropped'>;
}

/** What the logging needs of the primary: its events ({@link LoggedEvents}) and counters. */
export interface LoggedPrimary extends EventEmitter {
  stats(): LoggedStats;
}

/** Subscribes `logger` to `primary`'s events. The primary's own behaviour does not change. */
export function logPrimaryEvents(primary: LoggedPrimary, logger: ResolvedLogger): void {
  const on: On = (event, fn) => primary.on(event, fn as (...args: unknown[]) => void);
  const workers = () => primary.stats().slots.length;
  const drops = new DropReport();
  const reportDrops = () => {
    for (const line of drops.lines(dropCounts(primary.stats()))) logger.warn(line);
  };
  let timer: NodeJS.Timeout | undefined;
  on('listening', (address) => {
    logger.info(`sticky-mesh: listening on ${hostPort(address)}; starting ${workers()} workers`);
    timer = setInterval(reportDrops, DROP_REPORT_MS);
    timer.unref();
  });
  on('ready', () => logger.info(`sticky-mesh: all ${workers()} workers are ready`));
  logWorkerEvents(on, logger);
  on('reload', (step) => logReloadStep(step, logger));
  // errorMonitor sees every 'error' without handling it: an application that does not listen
  // for 'error' still gets the exception it would get without a logger.
  primary.on(errorMonitor, (err: Error) => logger.error(err.message));
  on('close', () => {
    clearInterval(timer);
    reportDrops();
    logger.info('sticky-mesh: closed; every worker has exited');
  });
}

type On = <K extends keyof LoggedEvents>(
  event: K,
  listener: (...args: LoggedEvents[K]) => void,
) => unknown;

function logWorkerEvents(on: On, logger: ResolvedLogger): void {
  /** Workers that became ready, and those killed as unresponsive, until they exit. */
  const up = new Set<number>();
  const killed = new Set<number>();
  on('workerUp', ({ slot, pid }) => {
    up.add(pid);
    logger.info(`sticky-mesh: slot ${slot}: worker pid ${pid} is up`);
  });
  on('workerUnresponsive', ({ slot, pid, reason, silentFor }) => {
    killed.add(pid);
    const why =
      reason === 'ping'
        ? `answered no ping for ${silentFor} ms`
        : 'took none of its queued connections (maxQueuedHandles)';
    logger.warn(`sticky-mesh: slot ${slot}: worker pid ${pid} ${why}; killing it`);
  });
  on('workerExit', (info) => {
    const wasUp = up.delete(info.pid);
    const wasKilled = killed.delete(info.pid);
    const line = `sticky-mesh: slot ${info.slot}: worker pid ${info.pid}`;
    const status = exitStatus(info);
    if (info.planned) logger.debug(`${line} exited as asked (${status})`);
    else if (wasKilled) logger.debug(`${line}, killed as unresponsive, is gone (${status})`);
    else if (wasUp) logger.error(`${line} crashed (${status})`);
    else {
      logger.error(
        `${line} exited before it was ready (${status}): its factory failed, it exited, or it ` +
          'was not ready within readyTimeout',
      );
    }
  });
  on('workerRespawn', ({ slot, attempt, delay }) => {
    logger.info(
      attempt === 0
        ? `sticky-mesh: slot ${slot}: forking a replacement for the worker that left`
        : `sticky-mesh: slot ${slot}: respawning in ${delay} ms (unplanned exit ${attempt} in a row)`,
    );
  });
}

function logReloadStep(step: ReloadStep, logger: ResolvedLogger): void {
  switch (step.step) {
    case 'start':
      logger.info(`sticky-mesh: reload: replacing ${step.slots} workers, one slot at a time`);
      return;
    case 'fork':
      logger.info(`sticky-mesh: reload: slot ${step.slot}: starting its new worker`);
      return;
    case 'switch':
      logger.info(
        `sticky-mesh: reload: slot ${step.slot}: worker pid ${step.pid} (generation ` +
          `${step.generation}) has the slot; pid ${step.previousPid} drains`,
      );
      return;
    case 'drained':
      logger.info(`sticky-mesh: reload: slot ${step.slot}: pid ${step.previousPid} has drained`);
      return;
    case 'failed':
      logger.error(
        step.pid > 0
          ? `sticky-mesh: reload stopped at slot ${step.slot}: its new worker (pid ${step.pid}) ` +
              `${step.reason}; the slot keeps its worker`
          : `sticky-mesh: reload stopped at slot ${step.slot}: ${step.reason}`,
      );
      return;
    case 'done':
      logger.info(
        `sticky-mesh: reload done in ${step.report.finishedAt - step.report.startedAt} ms`,
      );
      return;
  }
}

function hostPort(address: { address: string; port: number; family: string }): string {
  return address.family === 'IPv6'
    ? `[${address.address}]:${address.port}`
    : `${address.address}:${address.port}`;
}

function exitStatus(info: WorkerExitInfo): string {
  return info.signal === null ? `exit code ${info.code}` : `signal ${info.signal}`;
}

/** What is dropped, by kind, with the words of its log line. */
export const DROP_KINDS = {
  ipc: 'malformed IPC messages from workers dropped',
  hub: 'malformed session messages from workers dropped',
  multicastMalformed: 'malformed multicast datagrams or changes dropped',
  multicastAuth: 'multicast datagrams that failed authentication dropped (wrong secret, forged)',
  multicastReplay: 'replayed or stale multicast datagrams dropped (or clocks apart)',
  redisMalformed: 'malformed messages on the Redis channel dropped',
  redisQueue: 'session writes dropped from the full Redis queue (maxQueue, maxQueueBytes)',
} as const;
export type DropKind = keyof typeof DROP_KINDS;

/**
 * The primary's counters of dropped messages, by kind (each only grows). Messages of another
 * product or cluster (`foreign`) are not counted here: those are dropped quietly.
 */
export function dropCounts(stats: LoggedStats): Record<DropKind, number> {
  const m = stats.multicast;
  const r = m?.rejected;
  return {
    ipc: stats.malformedMessages,
    hub: stats.sessions.dropped,
    multicastMalformed: m && r ? m.malformed + r.malformed + r.oversize + r.truncated : 0,
    multicastAuth: r?.auth ?? 0,
    multicastReplay: r ? r.replay + r.stale : 0,
    redisMalformed: stats.redis?.malformed ?? 0,
    redisQueue: stats.redis?.dropped ?? 0,
  };
}

/**
 * Turns samples of the drop counters into one line per kind that grew since the last sample:
 * sampled every {@link DROP_REPORT_MS}, a flood of bad messages is one line per kind.
 */
export class DropReport {
  private readonly last = new Map<DropKind, number>();

  lines(counts: Record<DropKind, number>): string[] {
    const out: string[] = [];
    for (const kind of Object.keys(DROP_KINDS) as DropKind[]) {
      const total = counts[kind];
      const grew = total - (this.last.get(kind) ?? 0);
      this.last.set(kind, total);
      if (grew > 0) {
        out.push(`sticky-mesh: ${grew} ${DROP_KINDS[kind]} (${total} since start)`);
      }
    }
    return out;
  }
}
