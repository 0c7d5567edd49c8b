import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError, StickyMeshError } from '../../src/errors.js';
import { DEFAULTS, resolveOptions } from '../../src/options.js';

function thrown(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidOptionError) return err;
    throw err;
  }
  throw new Error('expected an InvalidOptionError');
}

describe('options', () => {
  it('applies every default', () => {
    expect(resolveOptions(undefined)).toEqual({
      num: os.availableParallelism(),
      seed: 0x5eed1e55,
      handleSignals: true,
      shutdownTimeout: 10_000,
      respawnDelay: 100,
      maxRespawnDelay: 30_000,
      respawnResetAfter: 30_000,
      pendingTimeout: 5_000,
      maxPendingConnections: 1024,
      readyTimeout: 30_000,
      serialization: 'json',
    });
    expect(resolveOptions({})).toEqual(resolveOptions(undefined));
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
  });

  it('keeps given values', () => {
    const given = {
      num: 3,
      seed: 7,
      handleSignals: false,
      shutdownTimeout: 1,
      respawnDelay: 0,
      maxRespawnDelay: 0,
      respawnResetAfter: 5,
      pendingTimeout: 0,
      maxPendingConnections: 0,
      readyTimeout: 9,
      serialization: 'advanced' as const,
    };
    expect(resolveOptions(given)).toEqual(given);
  });

  it.each([
    ['num', 0],
    ['num', 1.5],
    ['num', '4'],
    ['num', 100_000],
    ['seed', -1],
    ['seed', 2 ** 32],
    ['handleSignals', 'yes'],
    ['shutdownTimeout', -1],
    ['shutdownTimeout', Number.NaN],
    ['shutdownTimeout', 2 ** 31],
    ['respawnDelay', '100'],
    ['pendingTimeout', Number.POSITIVE_INFINITY],
    ['readyTimeout', 0],
    ['serialization', 'v8'],
  ])('rejects %s = %s with a coded error that names it', (name, value) => {
    const err = thrown(() => resolveOptions({ [name]: value } as never));
    expect(err).toBeInstanceOf(StickyMeshError);
    expect(err.code).toBe('ERR_STICKY_INVALID_OPTION');
    expect(err.option).toBe(name);
    expect(err.message).toContain(`"${name}"`);
  });

  it('rejects a maximum respawn delay below the base delay', () => {
    expect(thrown(() => resolveOptions({ respawnDelay: 500, maxRespawnDelay: 100 })).option).toBe(
      'maxRespawnDelay',
    );
  });

  it('rejects unknown (misspelt) options', () => {
    const err = thrown(() => resolveOptions({ workers: 4 } as never));
    expect(err.option).toBe('workers');
    expect(err.message).toMatch(/misspelt/);
  });

  it('says plainly that proxy mode is not available yet rather than ignoring it', () => {
    expect(thrown(() => resolveOptions({ proxy: true } as never)).message).toMatch(
      /proxy mode is not available/,
    );
    expect(resolveOptions({ proxy: false } as never).num).toBe(os.availableParallelism());
  });
});
