// Every option set beside sticky's own (test/unit/options.test.ts): its exported defaults are
// the ones that apply, and every refusal is an InvalidOptionError that names the option.
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import * as api from '../../src/index.js';
import { QUIET_LOGGER } from '../../src/logger.js';
import { ReplicatedStore } from '../../src/replication/store.js';
import { resolveStoreOptions, STORE_DEFAULTS } from '../../src/replication/store-options.js';
import { resolveTransport } from '../../src/replication/transports/choose.js';
import {
  MULTICAST_DEFAULTS,
  resolveMulticastOptions,
} from '../../src/replication/transports/multicast/options.js';
import { MESH_TIMINGS } from '../../src/replication/transports/multicast/peer.js';
import {
  REDIS_DEFAULTS,
  resolveRedisOptions,
} from '../../src/replication/transports/redis/options.js';

/** The InvalidOptionError `fn` throws (anything else fails the test). */
function refusal(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(InvalidOptionError);
    return err as InvalidOptionError;
  }
  throw new Error('expected an InvalidOptionError');
}

describe('ReplicatedStore options', () => {
  it('has these defaults, exported and frozen', () => {
    expect(STORE_DEFAULTS).toEqual({
      ttl: 86_400_000,
      disableTouch: false,
      touchAfter: 10_000,
      maxSessionBytes: 65_536,
      tombstoneTtl: 600_000,
      sweepInterval: 60_000,
      multicast: undefined,
      redis: undefined,
      logger: QUIET_LOGGER,
    });
    expect(STORE_DEFAULTS.logger).toBe(QUIET_LOGGER);
    expect(Object.isFrozen(STORE_DEFAULTS)).toBe(true);
    expect(api.STORE_DEFAULTS).toBe(STORE_DEFAULTS);
  });

  it('applies them when nothing (or undefined) is given', () => {
    expect(resolveStoreOptions({})).toEqual(STORE_DEFAULTS);
    expect(resolveStoreOptions({ ttl: undefined, touchAfter: undefined } as never)).toEqual(
      STORE_DEFAULTS,
    );
  });

  it('keeps given values', () => {
    const given = {
      ttl: 5,
      disableTouch: true,
      touchAfter: 0,
      maxSessionBytes: 10,
      tombstoneTtl: 7,
      sweepInterval: 9,
    };
    expect(resolveStoreOptions(given)).toEqual({
      ...given,
      multicast: undefined,
      redis: undefined,
      logger: QUIET_LOGGER,
    });
  });

  it.each([
    ['ttl', { ttl: 0 }],
    ['touchAfter', { touchAfter: -1 }],
    ['maxSessionBytes', { maxSessionBytes: 1.5 }],
    ['tombstoneTtl', { tombstoneTtl: '1' }],
    ['sweepInterval', { sweepInterval: 0 }],
    ['disableTouch', { disableTouch: 'yes' }],
    ['tll', { tll: 5 }],
    ['logger', { logger: 'console' }],
    ['logger.warn', { logger: { warn: true } }],
  ])('names %s when it is refused', (option, given) => {
    expect(refusal(() => new ReplicatedStore(given as never)).option).toBe(option);
  });
});

describe('multicast options', () => {
  it('has these defaults, exported and frozen, and the mesh timings agree', () => {
    expect(MULTICAST_DEFAULTS).toEqual({
      insecure: false,
      cluster: 'sticky-mesh',
      multicast: { v4: '228.0.0.5', v6: 'ffbe::043' },
      multicastPort: 4000,
      use: 'v4',
      multicastTTL: 1,
      syncPort: 0,
      heartbeatInterval: 500,
      failureTimeout: 3000,
      joinTimeout: 1000,
      syncTimeout: 10_000,
      maxClockSkew: 60_000,
      readOnMissWait: 500,
      maxSyncConnections: 32,
    });
    expect(Object.isFrozen(MULTICAST_DEFAULTS)).toBe(true);
    expect(Object.isFrozen(MULTICAST_DEFAULTS.multicast)).toBe(true);
    expect(MESH_TIMINGS).toMatchObject({
      heartbeatInterval: MULTICAST_DEFAULTS.heartbeatInterval,
      failureTimeout: MULTICAST_DEFAULTS.failureTimeout,
      joinTimeout: MULTICAST_DEFAULTS.joinTimeout,
      syncTimeout: MULTICAST_DEFAULTS.syncTimeout,
    });
    expect(api.MULTICAST_DEFAULTS).toBe(MULTICAST_DEFAULTS);
  });

  it('applies them', () => {
    const r = resolveMulticastOptions({ insecure: true });
    expect(r).toMatchObject({
      secret: undefined,
      cluster: 'sticky-mesh',
      group: '228.0.0.5',
      port: 4000,
      use: 'v4',
      address: undefined,
      ttl: 1,
      syncPort: 0,
      heartbeatInterval: 500,
      failureTimeout: 3000,
      joinTimeout: 1000,
      syncTimeout: 10_000,
      maxClockSkew: 60_000,
      readOnMissWait: 500,
      maxSyncConnections: 32,
    });
    expect(resolveMulticastOptions({ insecure: true, use: 'v6' }).group).toBe('ffbe::043');
  });

  it('a missing secret is refused naming multicast.secret, and says what to give instead', () => {
    const err = refusal(() => resolveMulticastOptions({}));
    expect(err.option).toBe('multicast.secret');
    expect(err.message).toMatch(/multicast\.insecure: true/);
  });
});

describe('Redis options', () => {
  it('has these defaults, exported and frozen', () => {
    expect(REDIS_DEFAULTS).toEqual({
      prefix: 'sticky-mesh:',
      cluster: 'sticky-mesh',
      maxQueue: 10_000,
      maxQueueBytes: 16 * 1024 * 1024,
      syncTimeout: 10_000,
      tombstoneTtl: 600_000,
      readOnMissWait: 500,
    });
    expect(Object.isFrozen(REDIS_DEFAULTS)).toBe(true);
    expect(api.REDIS_DEFAULTS).toBe(REDIS_DEFAULTS);
  });

  it('applies them', () => {
    expect(resolveRedisOptions('redis://127.0.0.1:6379')).toMatchObject({
      url: 'redis://127.0.0.1:6379',
      ...REDIS_DEFAULTS,
    });
  });

  it('an unknown key is refused by its full name', () => {
    const err = refusal(() => resolveRedisOptions({ url: 'redis://h', prefx: 'a:' }));
    expect(err.option).toBe('redis.prefx');
    expect(err.message).toMatch(/misspelt/);
  });
});

describe('transport choice', () => {
  it('both multicast and redis are refused as an InvalidOptionError naming redis', () => {
    const err = refusal(() =>
      resolveTransport({ multicast: { insecure: true }, redis: 'redis://h' }),
    );
    expect(err.option).toBe('redis');
    expect(err.message).toMatch(/either "multicast" or "redis"/);
  });
});

describe('nested and compatibility option sets', () => {
  it('sessionAffinity: true looks where SESSION_AFFINITY_DEFAULTS says', () => {
    expect(api.SESSION_AFFINITY_DEFAULTS).toEqual({ cookie: 'connect.sid', query: 'sid' });
    expect(Object.isFrozen(api.SESSION_AFFINITY_DEFAULTS)).toBe(true);
    expect(api.DEFAULTS.sessionAffinity).toBe(false);
  });

  it("multicastStore's own option defaults: useSessionTTL on", () => {
    expect(api.MULTICAST_STORE_DEFAULTS).toEqual({ useSessionTTL: true });
    expect(Object.isFrozen(api.MULTICAST_STORE_DEFAULTS)).toBe(true);
    const Store = api.multicastStore();
    expect(refusal(() => new Store({ insecure: true, useSessionTTL: 'no' as never })).option).toBe(
      'useSessionTTL',
    );
  });
});
