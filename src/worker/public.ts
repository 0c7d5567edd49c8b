import type { AddressInfo } from 'node:net';
import { ADDRESS_ENV } from '../protocol/messages.js';
import type { AnyServer } from './server.js';

/** What a worker's controller shows the app (worker.ts): its states, events and numbers. */

export type WorkerState = 'idle' | 'starting' | 'ready' | 'draining' | 'closed';

export interface WorkerEvents {
  /** The factory's server exists and the primary has been told; connections may arrive. */
  ready: [AnyServer];
  /** The primary asked this worker to stop: close long-lived connections (WebSockets) now. */
  shutdown: [];
  /** Every connection is closed; the worker is about to leave the cluster. */
  close: [];
}

/**
 * A worker's numbers. `handedBack` and `relayed` count since the worker started; `state` and
 * `connections` are as they are now.
 */
export interface WorkerStats {
  role: 'worker';
  /** This worker's fixed slot, `0 .. num-1`. */
  slot: number;
  state: WorkerState;
  /** Sockets this worker serves now (relay channels from siblings included). */
  connections: number;
  /**
   * Proxy connections it gave back to the primary because their next request belonged to another
   * slot and was not relayed (an upgrade).
   */
  handedBack: number;
  /** Later requests of its proxy connections it relayed to the sibling they belong to. */
  relayed: number;
}

/** The address the primary listens on, as it told this worker when it forked it. */
export function primaryAddress(): AddressInfo | null {
  try {
    const parsed: unknown = JSON.parse(process.env[ADDRESS_ENV] ?? 'null');
    return typeof parsed === 'object' && parsed !== null && 'port' in parsed
      ? (parsed as AddressInfo)
      : null;
  } catch {
    return null;
  }
}
