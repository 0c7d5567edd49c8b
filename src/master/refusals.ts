import type { HeadReadResult } from '../routing/head-reader.js';

/**
 * Refusals the balancer's counters do not tell apart (read by the metrics): `pendingCap` (`503`,
 * `maxPendingConnections` already waiting; the rest of `rejected` found no worker ready in time,
 * or came while closing), `badRequest` (`400`: no usable `header`), `timeout` (`408`),
 * `tooLarge` (`431`), `badProxy` (a bad PROXY protocol header: closed). The last four are also
 * in `dropped`, whose other connections are clients that left before a worker had them.
 */
export interface Refusals {
  pendingCap: number;
  badRequest: number;
  timeout: number;
  tooLarge: number;
  badProxy: number;
}

export function newRefusals(): Refusals {
  return { pendingCap: 0, badRequest: 0, timeout: 0, tooLarge: 0, badProxy: 0 };
}

/** Gets how a head read ended (its `HeadReadResult` status) and how long it took, in seconds. */
export type HeadReadTimer = (outcome: HeadReadResult['status'], seconds: number) => void;
