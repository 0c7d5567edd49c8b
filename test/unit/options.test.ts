import os from 'node:os';
import { describe, expect, it } from 'vitest';
import { InvalidOptionError, StickyMeshError } from '../../src/errors.js';
import { QUIET_LOGGER } from '../../src/logger.js';
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
      reloadSignal: 'SIGHUP',
      closeJitter: 2_000,
      shutdownTimeout: 10_000,
      respawnDelay: 100,
      maxRespawnDelay: 30_000,
      respawnResetAfter: 30_000,
      pendingTimeout: 5_000,
      maxPendingConnections: 1024,
      readyTimeout: 30_000,
      serialization: 'json',
      logger: QUIET_LOGGER,
      proxy: false,
      header: 'x-forwarded-for',
      trustedProxies: 1,
      ignoreMissingHeader: false,
      maxHeaderBytes: 16_384,
      headTimeout: 10_000,
      maxHeadReads: 4096,
      unresponsiveTimeout: 5_000,
      maxQueuedHandles: 1024,
      maxIpcBacklog: 16_777_216,
      metrics: false,
      proxyProtocol: false,
      sessionAffinity: false,
      sync: false,
      scope: 'all',
    });
    expect(resolveOptions({})).toEqual(resolveOptions(undefined));
    expect(resolveOptions(undefined).logger).toBe(QUIET_LOGGER);
    expect(DEFAULTS.logger).toBe(QUIET_LOGGER);
    expect(Object.isFrozen(DEFAULTS)).toBe(true);
  });

  it('keeps given values', () => {
    const given = {
      num: 3,
      seed: 7,
      handleSignals: false,
      reloadSignal: 'SIGUSR2' as const,
      closeJitter: 0,
      shutdownTimeout: 1,
      respawnDelay: 0,
      maxRespawnDelay: 0,
      respawnResetAfter: 5,
      pendingTimeout: 0,
      maxPendingConnections: 0,
      readyTimeout: 9,
      serialization: 'advanced' as const,
      proxy: true,
      header: 'x-real-ip',
      trustedProxies: 2,
      ignoreMissingHeader: true,
      maxHeaderBytes: 4096,
      headTimeout: 500,
      maxHeadReads: 10,
      unresponsiveTimeout: 2000,
      maxQueuedHandles: 16,
      maxIpcBacklog: 100_000,
      proxyProtocol: true,
    };
    expect(resolveOptions(given)).toEqual({
      ...given,
      metrics: false,
      logger: QUIET_LOGGER,
      sessionAffinity: false,
      sync: false,
      scope: 'all',
    });
    const session = { cookie: 'a.sid', query: 'eio' };
    expect(resolveOptions({ ...given, sessionAffinity: session }).sessionAffinity).toEqual(session);
  });

  it.each([
    ['num', 0],
    ['num', 1.5],
    ['num', '4'],
    ['num', 100_000],
    ['seed', -1],
    ['seed', 2 ** 32],
    ['handleSignals', 'yes'],
    ['reloadSignal', 'SIGNOPE'],
    ['reloadSignal', 'SIGKILL'],
    ['reloadSignal', 'SIGTERM'],
    ['reloadSignal', true],
    ['closeJitter', -1],
    ['shutdownTimeout', -1],
    ['shutdownTimeout', Number.NaN],
    ['shutdownTimeout', 2 ** 31],
    ['respawnDelay', '100'],
    ['pendingTimeout', Number.POSITIVE_INFINITY],
    ['readyTimeout', 0],
    ['serialization', 'v8'],
    ['proxy', 1],
    ['header', 'x forwarded for'],
    ['header', ''],
    ['header', 42],
    ['trustedProxies', -1],
    ['ignoreMissingHeader', 'no'],
    ['maxHeaderBytes', 10],
    ['headTimeout', 0],
    ['maxHeadReads', 0],
    ['unresponsiveTimeout', 99],
    ['maxQueuedHandles', 1.5],
    ['maxIpcBacklog', 1000],
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

  it('takes reloadSignal false (no signal reloads)', () => {
    expect(resolveOptions({ reloadSignal: false }).reloadSignal).toBe(false);
  });

  it('rejects unknown (misspelt) options', () => {
    const err = thrown(() => resolveOptions({ workers: 4 } as never));
    expect(err.option).toBe('workers');
    expect(err.message).toMatch(/misspelt/);
  });

  it('rejects a proxyProtocol that is not a boolean', () => {
    expect(thrown(() => resolveOptions({ proxyProtocol: 'v2' } as never)).option).toBe(
      'proxyProtocol',
    );
  });

  it('accepts sync with either spelling, and only where request bytes are read', () => {
    expect(resolveOptions({ proxy: true, sync: { isSynced: true, event: 'go' } }).sync).toEqual({
      event: 'go',
    });
    expect(resolveOptions({ proxy: true, sync: { isSyncable: true, event: 'go' } }).sync).toEqual({
      event: 'go',
    });
    expect(resolveOptions({ proxy: true, sync: { isSynced: false, event: 'go' } }).sync).toBe(
      false,
    );
    expect(thrown(() => resolveOptions({ sync: { isSynced: true, event: 'go' } })).message).toMatch(
      /proxy: true or sessionAffinity/,
    );
    expect(
      thrown(() => resolveOptions({ proxy: true, sync: { isSynced: true } } as never)).option,
    ).toBe('sync.event');
    expect(
      thrown(() => resolveOptions({ proxy: true, sync: { isSynched: true, event: 'x' } } as never))
        .option,
    ).toBe('sync.isSynched');
    expect(thrown(() => resolveOptions({ proxy: true, sync: true } as never)).option).toBe('sync');
  });

  it('resolves sessionAffinity to the places an id is looked for', () => {
    expect(resolveOptions({ sessionAffinity: true }).sessionAffinity).toEqual({
      cookie: 'connect.sid',
      query: 'sid',
    });
    expect(resolveOptions({ sessionAffinity: { cookie: 'app.sid' } }).sessionAffinity).toEqual({
      cookie: 'app.sid',
      query: 'sid',
    });
    expect(
      resolveOptions({ sessionAffinity: { cookie: false, query: false } }).sessionAffinity,
    ).toBe(false);
    expect(thrown(() => resolveOptions({ sessionAffinity: { cookie: 'a b' } })).option).toBe(
      'sessionAffinity.cookie',
    );
    expect(
      thrown(() => resolveOptions({ sessionAffinity: { coookie: 'x' } } as never)).option,
    ).toBe('sessionAffinity.coookie');
    expect(thrown(() => resolveOptions({ sessionAffinity: 'yes' } as never)).option).toBe(
      'sessionAffinity',
    );
  });

  it('matches the header name case-insensitively', () => {
    expect(resolveOptions({ header: 'X-Forwarded-For' }).header).toBe('x-forwarded-for');
  });
});
