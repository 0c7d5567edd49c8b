import { debug } from './debug.js';
import { InvalidOptionError } from './errors.js';

/** The levels a {@link Logger} may have, most severe first. */
export const LOG_LEVELS = ['error', 'warn', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

/**
 * A logger: `console`, pino, winston and bunyan all fit. Each method is called on the logger
 * object (so a logger that relies on `this` works) with one string, and never on a path that
 * runs per connection or per request. A level the logger lacks goes where it would without one.
 */
export interface Logger {
  /** Something failed and needs someone's attention: a worker crashed or failed to start. */
  error?(msg: string): unknown;
  /** Something went wrong and was handled: a worker killed as unresponsive, messages dropped. */
  warn?(msg: string): unknown;
  /** A lifecycle step: listening, a worker up, a respawn, a peer joined. */
  info?(msg: string): unknown;
  /** Detail of a lifecycle step: a worker that exited as asked. */
  debug?(msg: string): unknown;
}

/** The `logger` option of sticky() and of ReplicatedStore. */
export interface LoggerOption {
  /**
   * Where sticky-mesh logs: console, pino, winston, bunyan, anything with `error`, `warn`,
   * `info` or `debug` methods (a level it lacks goes to the debug channel). Called for
   * lifecycle steps and problems only, never per connection or per request; the README's
   * "Logging" section lists what each level carries. The multicast or Redis transport logs here
   * too unless its own options name a logger.
   * @default quiet: every level to the debug channel only (NODE_DEBUG=sticky-mesh)
   */
  logger?: Logger;
}

/** A {@link Logger} with every level present; a call never throws. */
export type ResolvedLogger = Readonly<Record<LogLevel, (msg: string) => void>>;

/**
 * The default: every level to the debug channel only (`NODE_DEBUG=sticky-mesh`), so nothing is
 * written unless someone asked for it.
 */
export const QUIET_LOGGER: ResolvedLogger = Object.freeze({
  error: (msg: string) => debug('error: %s', msg),
  warn: (msg: string) => debug('warn: %s', msg),
  info: (msg: string) => debug('info: %s', msg),
  debug: (msg: string) => debug('debug: %s', msg),
});

/**
 * Validates a `logger` option (`option` names it in errors); the levels it lacks go to the debug
 * channel. `undefined` is `absent` (the quiet default, or the logger of whoever runs the
 * transport). A logger that throws is caught: logging never breaks what it reports on.
 */
export function resolveLogger(
  value: unknown,
  option: string,
  absent: ResolvedLogger = QUIET_LOGGER,
): ResolvedLogger {
  if (value === undefined) return absent;
  const expected = 'an object with error, warn, info or debug methods (console, pino, ...)';
  if ((typeof value !== 'object' && typeof value !== 'function') || value === null) {
    throw new InvalidOptionError(option, expected, value);
  }
  const given = value as Partial<Record<LogLevel, unknown>>;
  let any = false;
  for (const level of LOG_LEVELS) {
    const fn = given[level];
    if (fn === undefined) continue;
    if (typeof fn !== 'function') {
      throw new InvalidOptionError(`${option}.${level}`, 'a function', fn);
    }
    any = true;
  }
  if (!any) throw new InvalidOptionError(option, expected, value);
  const level = (name: LogLevel) => {
    const fn = given[name];
    if (typeof fn !== 'function') return QUIET_LOGGER[name];
    return (msg: string) => {
      try {
        fn.call(value, msg);
      } catch (err) {
        debug('logger.%s threw: %s (message: %s)', name, (err as Error)?.message, msg);
      }
    };
  };
  return Object.freeze({
    error: level('error'),
    warn: level('warn'),
    info: level('info'),
    debug: level('debug'),
  });
}
