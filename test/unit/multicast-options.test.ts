import session from 'express-session';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { StickyMeshError } from '../../src/errors.js';
import { QUIET_LOGGER, resolveLogger } from '../../src/logger.js';
import { ReplicatedStore } from '../../src/replication/store.js';
import {
  type MulticastOptions,
  resolveMulticastOptions,
} from '../../src/replication/transports/multicast/options.js';
import { MESH_TIMINGS } from '../../src/replication/transports/multicast/peer.js';
import { multicastStore } from '../../src/replication/transports/multicast/store.js';

const SECRET = 'unit-test secret, 32 bytes long!';

/** The error `fn` throws (it must throw). */
function thrown(fn: () => unknown): Error & { code?: string; option?: string } {
  try {
    fn();
  } catch (err) {
    return err as Error & { code?: string; option?: string };
  }
  throw new Error('expected a throw');
}

function resolveBad(input: Record<string, unknown>) {
  return thrown(() => resolveMulticastOptions(input as MulticastOptions));
}

describe('resolveMulticastOptions', () => {
  it('asks for a secret, or insecure: true, naming both', () => {
    const err = resolveBad({});
    expect(err).toBeInstanceOf(StickyMeshError);
    expect(err.code).toBe('ERR_STICKY_INVALID_OPTION');
    expect(err.message).toMatch(/secret/);
    expect(err.message).toMatch(/insecure/);
    // With the prefix of where the options were given.
    const nested = thrown(() => resolveMulticastOptions({}, 'sticky.multicast'));
    expect(nested.message).toMatch(/sticky\.multicast\.secret/);
    expect(nested.message).toMatch(/sticky\.multicast\.insecure/);
  });

  it('refuses an object that is not one', () => {
    for (const bad of [null, 'secret', 5, []]) {
      const err = thrown(() => resolveMulticastOptions(bad as never));
      expect(err.code).toBe('ERR_STICKY_INVALID_OPTION');
    }
  });

  it.each<[string, Record<string, unknown>, string]>([
    ['an unknown key', { secret: SECRET, multicastPrt: 4000 }, 'multicast.multicastPrt'],
    ['an empty secret', { secret: '' }, 'multicast.secret'],
    ['an empty Buffer secret', { secret: Buffer.alloc(0) }, 'multicast.secret'],
    ['a number secret', { secret: 42 }, 'multicast.secret'],
    ['both a secret and insecure', { secret: SECRET, insecure: true }, 'multicast.insecure'],
    ['insecure that is not a boolean', { insecure: 'yes' }, 'multicast.insecure'],
    ['a unicast group', { secret: SECRET, multicast: '10.1.0.81' }, 'multicast.multicast'],
    ['a group that is no address', { secret: SECRET, multicast: 'group' }, 'multicast.multicast'],
    ['an IPv6 group with use v4', { secret: SECRET, multicast: 'ff02::1' }, 'multicast.multicast'],
    [
      'an IPv4 group with use v6',
      { secret: SECRET, use: 'v6', multicast: '228.0.0.5' },
      'multicast.multicast',
    ],
    [
      'an IPv6 unicast group',
      { secret: SECRET, use: 'v6', multicast: 'fe80::1' },
      'multicast.multicast',
    ],
    ['port 0', { secret: SECRET, multicastPort: 0 }, 'multicast.multicastPort'],
    ['port 65536', { secret: SECRET, multicastPort: 65536 }, 'multicast.multicastPort'],
    ['a fractional port', { secret: SECRET, multicastPort: 4000.5 }, 'multicast.multicastPort'],
    ['a port string', { secret: SECRET, multicastPort: '4000' }, 'multicast.multicastPort'],
    ['use v5', { secret: SECRET, use: 'v5' }, 'multicast.use'],
    ['use 4', { secret: SECRET, use: 4 }, 'multicast.use'],
    ['an IPv6 address as ipv4', { secret: SECRET, ipv4: '::1' }, 'multicast.ipv4'],
    ['a host name as ipv4', { secret: SECRET, ipv4: 'localhost' }, 'multicast.ipv4'],
    ['an IPv4 address as ipv6', { secret: SECRET, use: 'v6', ipv6: '127.0.0.1' }, 'multicast.ipv6'],
    ['an empty cluster name', { secret: SECRET, cluster: '' }, 'multicast.cluster'],
    [
      'a cluster name over 255 bytes',
      { secret: SECRET, cluster: 'é'.repeat(128) },
      'multicast.cluster',
    ],
    ['a logger that is a string', { secret: SECRET, logger: 'console' }, 'multicast.logger'],
    ['multicastTTL 256', { secret: SECRET, multicastTTL: 256 }, 'multicast.multicastTTL'],
    ['a negative syncPort', { secret: SECRET, syncPort: -1 }, 'multicast.syncPort'],
    [
      'heartbeatInterval 5',
      { secret: SECRET, heartbeatInterval: 5 },
      'multicast.heartbeatInterval',
    ],
    [
      'failureTimeout NaN',
      { secret: SECRET, failureTimeout: Number.NaN },
      'multicast.failureTimeout',
    ],
    ['joinTimeout -1', { secret: SECRET, joinTimeout: -1 }, 'multicast.joinTimeout'],
    [
      'syncTimeout Infinity',
      { secret: SECRET, syncTimeout: Number.POSITIVE_INFINITY },
      'multicast.syncTimeout',
    ],
    ['maxClockSkew 10', { secret: SECRET, maxClockSkew: 10 }, 'multicast.maxClockSkew'],
    [
      'maxSyncConnections 0',
      { secret: SECRET, maxSyncConnections: 0 },
      'multicast.maxSyncConnections',
    ],
    [
      'maxSyncConnections 1.5',
      { secret: SECRET, maxSyncConnections: 1.5 },
      'multicast.maxSyncConnections',
    ],
  ])('refuses %s, naming the option', (_, input, option) => {
    const err = resolveBad(input);
    expect(err.code).toBe('ERR_STICKY_INVALID_OPTION');
    expect(err.option).toBe(option);
    expect(err.message).toContain(`"${option}"`);
  });

  it("has express-session-multicast's defaults", () => {
    const o = resolveMulticastOptions({ secret: SECRET });
    expect(o).toMatchObject({
      group: '228.0.0.5',
      port: 4000,
      use: 'v4',
      ttl: 1,
      cluster: 'sticky-mesh',
      address: undefined,
      syncPort: 0,
      heartbeatInterval: MESH_TIMINGS.heartbeatInterval,
      failureTimeout: MESH_TIMINGS.failureTimeout,
      joinTimeout: MESH_TIMINGS.joinTimeout,
      syncTimeout: MESH_TIMINGS.syncTimeout,
      maxClockSkew: 60_000,
    });
    expect(o.secret?.equals(Buffer.from(SECRET))).toBe(true);
    const v6 = resolveMulticastOptions({ secret: SECRET, use: 'v6' });
    expect(v6.group).toBe('ffbe::043');
    expect(v6.port).toBe(4000);
    expect(v6.ttl).toBe(1);
  });

  it('takes what is given', () => {
    const o = resolveMulticastOptions({
      secret: Buffer.from('raw key bytes'),
      cluster: 'shop',
      multicast: '239.1.2.3',
      multicastPort: 46_000,
      ipv4: '127.0.0.1',
      multicastTTL: 0,
      syncPort: 47_000,
      heartbeatInterval: 100,
      failureTimeout: 600,
      joinTimeout: 200,
      syncTimeout: 5000,
      maxClockSkew: 5000,
      maxSyncConnections: 8,
    });
    expect(o).toMatchObject({
      cluster: 'shop',
      group: '239.1.2.3',
      port: 46_000,
      address: '127.0.0.1',
      ttl: 0,
      syncPort: 47_000,
      heartbeatInterval: 100,
      failureTimeout: 600,
      joinTimeout: 200,
      syncTimeout: 5000,
      maxClockSkew: 5000,
      maxSyncConnections: 8,
    });
    expect(o.secret?.toString()).toBe('raw key bytes');
    const v6 = resolveMulticastOptions({ insecure: true, use: 'v6', ipv6: 'fe80::1%lo' });
    expect(v6.secret).toBeUndefined();
    expect(v6.address).toBe('fe80::1%lo');
  });

  it('copies a Buffer secret (a later change to the caller’s buffer does not leak in)', () => {
    const key = Buffer.from('0123456789abcdef0123456789abcdef');
    const o = resolveMulticastOptions({ secret: key });
    key.fill(0);
    expect(o.secret?.toString()).toBe('0123456789abcdef0123456789abcdef');
  });

  it('routes log lines to the logger given, with its methods bound to it', () => {
    const lines: string[] = [];
    const logger = {
      prefix: 'L:',
      info(this: { prefix: string }, m: string) {
        lines.push(`${this.prefix}info ${m}`);
      },
      warn(this: { prefix: string }, m: string) {
        lines.push(`${this.prefix}warn ${m}`);
      },
    };
    const o = resolveMulticastOptions({ secret: SECRET, logger });
    o.logger.info('a');
    o.logger.warn('b');
    expect(lines).toEqual(['L:info a', 'L:warn b']);
    // Not given: the quiet default (the debug channel), never the console.
    expect(o.logger.error).toBe(QUIET_LOGGER.error);
  });

  it('logs to the logger of whoever runs it unless it names its own', () => {
    const runner = resolveLogger({ info: vi.fn() }, 'logger');
    expect(resolveMulticastOptions({ secret: SECRET }, 'multicast', runner).logger).toBe(runner);
    const own = resolveMulticastOptions(
      { secret: SECRET, logger: { info() {} } },
      'multicast',
      runner,
    );
    expect(own.logger).not.toBe(runner);
    expect(own.logger.warn).toBe(QUIET_LOGGER.warn);
  });
});

// ---- multicastStore(session): express-session-multicast's call form ------------------------------

const stores: ReplicatedStore[] = [];
let nextPort = 46_150;

/** express-session-multicast's README options, with a port of this test's own and a secret. */
function readmeOptions(extra: Record<string, unknown> = {}) {
  return {
    // multicast address to listen for at runtime
    multicast: '228.0.0.5',
    // port to receive multicasts on (each test its own)
    multicastPort: nextPort++,
    // tests only ever send on loopback
    ipv4: '127.0.0.1',
    use: 'v4' as const,
    useSessionTTL: true,
    sessionTTL: 1000,
    multicastTTL: 1,
    logger: { info: vi.fn(), warn: vi.fn(), error: vi.fn() },
    secret: SECRET,
    joinTimeout: 50,
    ...extra,
  };
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

describe('multicastStore(session)', () => {
  it('returns a store constructor', () => {
    const MulticastStore = multicastStore(session);
    expect(typeof MulticastStore).toBe('function');
    expect(MulticastStore.prototype).toBeInstanceOf(ReplicatedStore);
    // express-session-multicast took the module, or anything with a Store (connect).
    expect(typeof multicastStore()).toBe('function');
    expect(typeof multicastStore({ Store: session.Store })).toBe('function');
    expect(thrown(() => multicastStore(42)).code).toBe('ERR_STICKY_INVALID_OPTION');
  });

  it("makes a ReplicatedStore from the README's options plus a secret", async () => {
    const MulticastStore = multicastStore(session);
    const options = readmeOptions();
    const store = new MulticastStore(options);
    stores.push(store);
    expect(store).toBeInstanceOf(ReplicatedStore);
    expect(store).toBeInstanceOf(session.Store);
    await store.set('sid-1', { cookie: { expires: null }, user: 'ann' });
    expect(await store.get('sid-1')).toMatchObject({ user: 'ann' });
    const stats = store.multicastStats();
    expect(stats).toMatchObject({
      group: '228.0.0.5',
      port: options.multicastPort,
      address: '127.0.0.1',
      state: 'synced',
    });
    expect(options.logger.info).toHaveBeenCalled();
  });

  it('checks the options in the constructor, before any socket is opened', () => {
    const MulticastStore = multicastStore(session);
    expect(thrown(() => new MulticastStore({})).message).toMatch(/secret/);
  });

  it('maps sessionTTL to the lifetime of a session whose cookie has no expiry', async () => {
    vi.useFakeTimers({ toFake: ['Date'] });
    const MulticastStore = multicastStore(session);
    const withTtl = new MulticastStore(readmeOptions({ sessionTTL: 5000 }));
    const withoutTtl = new MulticastStore(
      readmeOptions({ sessionTTL: 5000, useSessionTTL: false }),
    );
    stores.push(withTtl, withoutTtl);
    for (const s of [withTtl, withoutTtl]) await s.set('a', { cookie: { expires: null }, n: 1 });
    vi.setSystemTime(Date.now() + 4000);
    expect(await withTtl.get('a')).toMatchObject({ n: 1 });
    vi.setSystemTime(Date.now() + 1001);
    expect(await withTtl.get('a')).toBeNull();
    // useSessionTTL: false keeps the store's ttl (one day).
    expect(await withoutTtl.get('a')).toMatchObject({ n: 1 });
    vi.setSystemTime(Date.now() + 86_400_000);
    expect(await withoutTtl.get('a')).toBeNull();
  });

  it('a cookie expiry still wins over sessionTTL', async () => {
    const MulticastStore = multicastStore(session);
    const store = new MulticastStore(readmeOptions({ sessionTTL: 1 }));
    stores.push(store);
    await store.set('a', { cookie: { expires: new Date(Date.now() + 60_000) }, n: 2 });
    await new Promise((r) => setTimeout(r, 20));
    expect(await store.get('a')).toMatchObject({ n: 2 });
  });

  it('sorts store options (maxSessionBytes) from multicast ones (cluster)', async () => {
    const MulticastStore = multicastStore(session);
    const store = new MulticastStore(readmeOptions({ maxSessionBytes: 100, cluster: 'shop' }));
    stores.push(store);
    await expect(store.set('big', { blob: 'x'.repeat(200) })).rejects.toMatchObject({
      code: 'ERR_STICKY_SESSION_TOO_LARGE',
    });
    await store.set('small', { n: 1 });
    expect(await store.get('small')).toMatchObject({ n: 1 });
  });

  it('refuses a bad option, naming it as the caller wrote it', () => {
    const MulticastStore = multicastStore(session);
    expect(thrown(() => new MulticastStore(readmeOptions({ multicastPrt: 1 }))).message).toMatch(
      /multicastPrt/,
    );
    expect(
      thrown(() => new MulticastStore(readmeOptions({ useSessionTTL: 'yes' }))).message,
    ).toMatch(/useSessionTTL/);
    expect(thrown(() => new MulticastStore(readmeOptions({ multicastPort: 0 }))).message).toMatch(
      /multicastPort/,
    );
    expect(thrown(() => new MulticastStore(readmeOptions({ secret: undefined }))).message).toMatch(
      /secret/,
    );
    // sessionTTL is checked as the store's ttl, but the message must name what was written.
    expect(thrown(() => new MulticastStore(readmeOptions({ sessionTTL: -1 }))).message).toMatch(
      /sessionTTL/,
    );
  });

  it('accepts gracefullShutdown, an option of express-session-multicast (its README names it)', () => {
    const MulticastStore = multicastStore(session);
    const make = () => {
      const s = new MulticastStore(readmeOptions({ gracefullShutdown: true }));
      stores.push(s);
      return s;
    };
    expect(make).not.toThrow();
  });
});
