// The `metrics` option: its defaults, what it keeps, and a coded error naming the field for each
// bad value.
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import * as api from '../../src/index.js';
import { METRICS_DEFAULTS, resolveMetricsOptions } from '../../src/metrics/options.js';
import { resolveOptions } from '../../src/options.js';

function refusal(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return err as InvalidOptionError;
  }
  throw new Error('expected an InvalidOptionError');
}

describe('metrics option', () => {
  it('is off unless given, and has these defaults, exported and frozen', () => {
    expect(resolveOptions({}).metrics).toBe(false);
    expect(resolveOptions({ metrics: false }).metrics).toBe(false);
    expect(METRICS_DEFAULTS).toEqual({
      port: 9464,
      host: '127.0.0.1',
      path: '/metrics',
      timeout: 1000,
    });
    expect(Object.isFrozen(METRICS_DEFAULTS)).toBe(true);
    expect(api.METRICS_DEFAULTS).toBe(METRICS_DEFAULTS);
    expect(resolveOptions({ metrics: true }).metrics).toEqual(METRICS_DEFAULTS);
    expect(resolveOptions({ metrics: {} }).metrics).toEqual(METRICS_DEFAULTS);
    expect(resolveMetricsOptions({ port: undefined })).toEqual(METRICS_DEFAULTS);
  });

  it('keeps given values', () => {
    const given = { port: 0, host: '::', path: '/-/prom_1', timeout: 250 };
    expect(resolveOptions({ metrics: given }).metrics).toEqual(given);
  });

  it.each([
    ['metrics', 'yes'],
    ['metrics', 9464],
    ['metrics', null],
    ['metrics', []],
    ['metrics.port', -1],
    ['metrics.port', 65536],
    ['metrics.port', '9464'],
    ['metrics.port', 1.5],
    ['metrics.host', ''],
    ['metrics.host', 'local host'],
    ['metrics.host', 127],
    ['metrics.path', 'metrics'],
    ['metrics.path', '/metrics?x=1'],
    ['metrics.path', '/a b'],
    ['metrics.path', ''],
    ['metrics.timeout', 0],
    ['metrics.timeout', 2 ** 31],
    ['metrics.timeout', '1s'],
    ['metrics.prefix', 'x'],
  ])('refuses %s = %j with a coded error that names it', (name, value) => {
    const metrics = name === 'metrics' ? value : { [name.slice('metrics.'.length)]: value };
    const err = refusal(() => resolveOptions({ metrics } as never));
    expect(err.code).toBe('ERR_STICKY_INVALID_OPTION');
    expect(err.option).toBe(name);
    expect(err.message).toContain(`"${name}"`);
  });
});
