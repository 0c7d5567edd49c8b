import type { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { trace } from '../debug.js';
import type { RouteKey } from '../routing/key.js';
import type { PoolEvents } from './pool.js';
import type { ReloadStep } from './reload.js';

/**
 * The primary's `NODE_DEBUG=sticky-mesh` lifecycle lines, from the events the pool and the
 * primary emit anyway (as log-events.ts does for the logger), and the handoffs the pool gives
 * back. Nothing is subscribed when NODE_DEBUG does not name sticky-mesh.
 */

/** The primary's events traced here (primary.ts emits them). */
export interface TracedPrimaryEvents {
  listening: [AddressInfo];
  ready: [];
  close: [];
  reload: [ReloadStep];
}

/** Subscribes the lifecycle and handoff traces to `pool` and `primary` ({@link TracedPrimaryEvents}). */
export function tracePrimary(primary: EventEmitter, pool: EventEmitter<PoolEvents>): void {
  const on = <K extends keyof TracedPrimaryEvents>(
    event: K,
    listener: (...args: TracedPrimaryEvents[K]) => void,
  ) => primary.on(event, listener as (...args: unknown[]) => void);
  const life = trace.lifecycle;
  if (life) {
    on('listening', (a) => life('listening on %s:%d; forking the workers', a.address, a.port));
    pool.on('forked', (w, slot) => life('slot %d: forked pid %d', slot, w.process.pid));
    pool.on('workerUp', ({ slot, pid }) => life('slot %d: pid %d ready, routed to', slot, pid));
    on('ready', () => life('every worker is ready'));
    pool.on('workerUnresponsive', ({ slot, pid, reason, silentFor }) =>
      life(
        'slot %d: pid %d unresponsive (%s, silent %d ms): out of routing, killed',
        slot,
        pid,
        reason,
        silentFor,
      ),
    );
    pool.on('workerExit', ({ slot, pid, code, signal, planned }) =>
      life(
        'slot %d: pid %d exited (%s)%s',
        slot,
        pid,
        signal ?? `code ${code}`,
        planned ? ', as asked' : '',
      ),
    );
    pool.on('workerRespawn', ({ slot, attempt, delay }) =>
      life('slot %d: respawn in %d ms (unplanned exit %d in a row)', slot, delay, attempt),
    );
    pool.on('idle', () => life('shutdown: every worker has exited'));
    on('reload', (step) => life('reload: %s', describeStep(step)));
    on('close', () => life('closed'));
  }
  const handoff = trace.handoff;
  if (handoff) {
    pool.on('returned', (_, slot) =>
      handoff('slot %d could not take a connection: routing it again', slot),
    );
    pool.on('orphans', (handles) =>
      handoff('%d connections a gone worker never took: routing them again', handles.length),
    );
  }
}

function describeStep(step: ReloadStep): string {
  switch (step.step) {
    case 'start':
      return `start, ${step.slots} slots one at a time`;
    case 'fork':
      return `slot ${step.slot}: forking its successor`;
    case 'switch':
      return `slot ${step.slot}: pid ${step.pid} (generation ${step.generation}) takes over; pid ${step.previousPid} drains`;
    case 'drained':
      return `slot ${step.slot}: pid ${step.previousPid} drained and exited`;
    case 'failed':
      return `slot ${step.slot}: failed, pid ${step.pid}: ${step.reason}; the slot keeps its worker`;
    case 'done':
      return 'done';
  }
}

/** Why `route` went to `slot` (`tried`: the slots a returned connection already failed on). */
export function routeReason(route: RouteKey, slot: number, tried: unknown): string {
  const retry = tried ? ', a retry' : '';
  if (route.owner === slot) return `its session id names slot ${slot}${retry}`;
  const owner = route.owner === undefined ? '' : `session owner ${route.owner} not ready; `;
  return `${owner}address key, rendezvous hash${retry}`;
}
