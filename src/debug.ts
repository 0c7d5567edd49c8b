import diagnostics_channel from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

/** `NODE_DEBUG=sticky-mesh` turns this on; it costs a boolean check when off. */
export const debug = debuglog('sticky-mesh');

/**
 * Every `diagnostics_channel` the library publishes to. Publishing is skipped unless someone
 * subscribed, so an unobserved channel costs one property read. Names are stable.
 */
export const channels = {
  /** In the primary, per connection handed to a worker: `{ slot, key }`. */
  connection: diagnostics_channel.channel('sticky-mesh:connection'),
  /**
   * In the primary, per worker lifecycle step: `{ event: 'up', slot, pid }`,
   * `{ event: 'exit', slot, pid, code, signal, planned }`, `{ event: 'respawn', slot, attempt, delay }`,
   * `{ event: 'unresponsive', slot, pid, reason, silentFor }`.
   */
  worker: diagnostics_channel.channel('sticky-mesh:worker'),
} as const;
