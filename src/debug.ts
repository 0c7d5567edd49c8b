import diagnostics_channel from 'node:diagnostics_channel';
import { debuglog } from 'node:util';

/** `NODE_DEBUG=sticky-mesh` turns this on; it costs a boolean check when off. */
export const debug = debuglog('sticky-mesh');

/** A debug line of one kind, printf-style (`%s`, `%d`, `%j`, as util.format). */
export type Trace = (format: string, ...args: unknown[]) => void;

/** Most lines one kind of trace writes per second; the rest are counted, then summed up. */
export const TRACE_LINES_PER_SECOND = 20;

/**
 * A rate-limited debug line of one `kind`, for decisions taken per connection or per request:
 * at most `perSecond` lines a second (each starts with `kind: `), then, once that second is over,
 * one line saying how many were left out, so the log stays readable under load and its cost
 * bounded. The window's end is a timer, unref()ed: it never keeps the process alive.
 */
export function rateLimited(
  kind: string,
  write: (format: string, ...args: unknown[]) => void,
  perSecond = TRACE_LINES_PER_SECOND,
): Trace {
  let windowStart = 0;
  let written = 0;
  let left = 0;
  let timer: NodeJS.Timeout | undefined;
  const summary = () => {
    timer = undefined;
    if (left > 0) write('%s: %d more lines left out in the last second', kind, left);
    left = 0;
  };
  return (format, ...args) => {
    const now = Date.now();
    if (now - windowStart >= 1000) {
      if (timer) clearTimeout(timer);
      summary();
      windowStart = now;
      written = 0;
    }
    if (written < perSecond) {
      written++;
      write(`%s: ${format}`, kind, ...args);
      return;
    }
    left++;
    if (!timer) {
      timer = setTimeout(summary, windowStart + 1000 - now);
      timer.unref();
    }
  };
}

const traceOf = (kind: string): Trace | undefined =>
  debug.enabled ? rateLimited(kind, debug) : undefined;

/**
 * The `NODE_DEBUG=sticky-mesh` lines of routing decisions, by kind, each rate-limited on its own
 * ({@link rateLimited}). `undefined` when that is off: a call site writes `trace.route?.(...)`,
 * which evaluates no argument then.
 * - `route`: which slot a connection or request goes to, by what key, and why (primary);
 * - `handoff`: a connection sent to a worker, taken, refused or given back (primary);
 * - `lifecycle`: fork, ready, exit, respawn, shutdown, each reload step (primary);
 * - `request`: where a later request of a kept-open connection goes (worker).
 */
export const trace = {
  route: traceOf('route'),
  handoff: traceOf('handoff'),
  lifecycle: traceOf('lifecycle'),
  request: traceOf('request'),
} as const;

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
