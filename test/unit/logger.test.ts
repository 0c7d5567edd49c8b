// The `logger` option: what is accepted and refused (sticky's, the store's, the transports'),
// that each level reaches the logger as a method call on it, and that the default writes nothing.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import { LOG_LEVELS, type Logger, QUIET_LOGGER, resolveLogger } from '../../src/logger.js';
import { resolveOptions } from '../../src/options.js';
import { ReplicatedStore } from '../../src/replication/store.js';
import { resolveTransport } from '../../src/replication/transports/choose.js';

/** The InvalidOptionError `fn` throws (anything else fails the test). */
function refusal(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    expect((err as InvalidOptionError).code).toBe('ERR_STICKY_INVALID_OPTION');
    return err as InvalidOptionError;
  }
  throw new Error('expected an InvalidOptionError');
}

/** A logger in the shape of pino's and bunyan's: methods on a prototype that use `this`. */
class RecordingLogger {
  readonly lines: string[] = [];
  constructor(private readonly name: string) {}
  error(msg: string) {
    this.lines.push(`${this.name} error ${msg}`);
  }
  warn(msg: string) {
    this.lines.push(`${this.name} warn ${msg}`);
  }
  info(msg: string) {
    this.lines.push(`${this.name} info ${msg}`);
  }
  debug(msg: string) {
    this.lines.push(`${this.name} debug ${msg}`);
  }
}

describe('resolveLogger', () => {
  it('is the quiet default when no logger is given', () => {
    expect(resolveLogger(undefined, 'logger')).toBe(QUIET_LOGGER);
    expect(Object.isFrozen(QUIET_LOGGER)).toBe(true);
    expect(Object.keys(QUIET_LOGGER).sort()).toEqual([...LOG_LEVELS].sort());
  });

  it('calls each level as a method of the logger, with the message alone', () => {
    const given = new RecordingLogger('app');
    const logger = resolveLogger(given, 'logger');
    for (const level of LOG_LEVELS) logger[level](`a ${level} line`);
    expect(given.lines).toEqual([
      'app error a error line',
      'app warn a warn line',
      'app info a info line',
      'app debug a debug line',
    ]);
  });

  it('accepts console as it is', () => {
    const spies = LOG_LEVELS.map((level) => vi.spyOn(console, level).mockImplementation(() => {}));
    try {
      const logger = resolveLogger(console, 'logger');
      for (const level of LOG_LEVELS) logger[level](level);
      for (const [i, level] of LOG_LEVELS.entries()) {
        expect(spies[i]).toHaveBeenCalledExactlyOnceWith(level);
      }
    } finally {
      for (const spy of spies) spy.mockRestore();
    }
  });

  it('sends the levels a logger lacks to the quiet default', () => {
    const error = vi.fn();
    const logger = resolveLogger({ error }, 'logger');
    expect(logger.warn).toBe(QUIET_LOGGER.warn);
    expect(logger.info).toBe(QUIET_LOGGER.info);
    expect(logger.debug).toBe(QUIET_LOGGER.debug);
    logger.error('boom');
    expect(error).toHaveBeenCalledExactlyOnceWith('boom');
  });

  it('never lets a throwing logger throw into the caller', () => {
    const logger = resolveLogger(
      {
        warn() {
          throw new Error('log sink is down');
        },
      },
      'logger',
    );
    expect(() => logger.warn('a')).not.toThrow();
  });

  it.each([
    ['a string', 'console', 'logger'],
    ['a number', 42, 'logger'],
    ['null', null, 'logger'],
    ['true', true, 'logger'],
    ['an object without any of the four methods', { log() {} }, 'logger'],
    ['an array', [], 'logger'],
    ['a level that is not a function', { info() {}, warn: 'yes' }, 'logger.warn'],
    ['a level that is null', { error: null }, 'logger.error'],
  ])('refuses %s, naming %s', (_what, value, option) => {
    const err = refusal(() => resolveLogger(value, 'logger'));
    expect(err.option).toBe(option);
    expect(err.message).toContain(`"${option}"`);
  });
});

describe('the logger option where it is given', () => {
  it('sticky(): resolved into the options, refused by name', () => {
    const given = new RecordingLogger('sticky');
    resolveOptions({ logger: given }).logger.info('hello');
    expect(given.lines).toEqual(['sticky info hello']);
    expect(refusal(() => resolveOptions({ logger: 'pino' as never })).option).toBe('logger');
    expect(refusal(() => resolveOptions({ logger: {} as Logger })).option).toBe('logger');
  });

  it('ReplicatedStore: refused by name before anything starts', () => {
    expect(refusal(() => new ReplicatedStore({ logger: 1 as never })).option).toBe('logger');
    expect(refusal(() => new ReplicatedStore({ logger: { debug: 1 } as never })).option).toBe(
      'logger.debug',
    );
  });

  it("a transport's own logger is checked by its full name", () => {
    const bad = { info: 'no' } as never;
    expect(
      refusal(() => resolveTransport({ multicast: { insecure: true, logger: bad } })).option,
    ).toBe('multicast.logger.info');
    expect(
      refusal(() => resolveTransport({ redis: { url: 'redis://h', logger: bad } })).option,
    ).toBe('redis.logger.info');
  });
});

describe('quiet by default', () => {
  const writes: string[] = [];
  beforeEach(() => {
    writes.length = 0;
    const record = (chunk: unknown) => {
      writes.push(String(chunk));
      return true;
    };
    vi.spyOn(process.stdout, 'write').mockImplementation(record);
    vi.spyOn(process.stderr, 'write').mockImplementation(record);
    for (const method of ['log', 'error', 'warn', 'info', 'debug', 'trace'] as const) {
      vi.spyOn(console, method).mockImplementation((...args) => writes.push(args.join(' ')));
    }
  });
  afterEach(() => vi.restoreAllMocks());

  it('writes nothing to stdout, stderr or the console at any level', () => {
    // Only NODE_DEBUG=sticky-mesh turns the debug channel on; this run must not have it.
    expect(process.env.NODE_DEBUG ?? '').not.toMatch(/sticky-mesh/i);
    for (const logger of [
      QUIET_LOGGER,
      resolveOptions(undefined).logger,
      resolveLogger({ info() {} }, 'logger'),
    ]) {
      for (const level of LOG_LEVELS) logger[level](`sticky-mesh: a ${level} line`);
    }
    expect(writes).toEqual([]);
  });
});
