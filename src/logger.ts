import { debug } from './debug.js';

/**
 * A logger: `console`, bunyan, winston and pino all fit. Only `info`, `warn` and `error` are
 * called, each with one string. Used by the transports between machines (multicast, Redis).
 */
export interface Logger {
  info?(msg: string): unknown;
  warn?(msg: string): unknown;
  error?(msg: string): unknown;
}

/** A {@link Logger} with every level present. */
export interface ResolvedLogger {
  info(msg: string): void;
  warn(msg: string): void;
  error(msg: string): void;
}

/**
 * A user's logger with defaults for the levels it lacks: warnings and errors to the console
 * (they need someone's attention), the rest to the debug channel (`NODE_DEBUG=sticky-mesh`).
 */
export function toLogger(l: Logger | undefined): ResolvedLogger {
  const call = (level: 'info' | 'warn' | 'error', fallback: (m: string) => void) => {
    const fn = l?.[level];
    return typeof fn === 'function' ? (m: string) => void fn.call(l, m) : fallback;
  };
  return {
    info: call('info', (m) => debug('%s', m)),
    warn: call('warn', (m) => console.warn(m)),
    error: call('error', (m) => console.error(m)),
  };
}
