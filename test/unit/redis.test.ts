// The Redis transport against ioredis-mock. ioredis-mock runs the Lua script (fengari) and shares
// data and pub/sub between instances with the same host and port, but it has no `status` and
// never drops a connection; so each "machine" talks to it through FakeRedis below: a client with
// the RedisClientLike shape around a mock instance, whose connection (status, ready/close events,
// failing commands, messages lost while away) a test controls through the machine's Link.
import { EventEmitter } from 'node:events';
import { setTimeout as delay } from 'node:timers/promises';
import session, { Store } from 'express-session';
import type { Redis } from 'ioredis';
import RedisMock from 'ioredis-mock';
import { afterEach, describe, expect, it, vi } from 'vitest';
import type { Version } from '../../src/replication/clock.js';
import { ReplicatedStore, type SessionData } from '../../src/replication/store.js';
import { type Change, SessionTable } from '../../src/replication/table.js';
import {
  type RedisClientLike,
  type RedisPipelineLike,
  type RedisTransportOptions,
  resolveRedisOptions,
} from '../../src/replication/transports/redis/options.js';
import {
  channelMessage,
  ownMessagePrefix,
  readChannelMessage,
} from '../../src/replication/transports/redis/script.js';
import { RedisTransport } from '../../src/replication/transports/redis/transport.js';

// ---- test doubles ------------------------------------------------------------------------------

/** Each test gets its own mock "server": instances on another port share nothing with it. */
let nextMockPort = 20_000;
function mockServer(): { port: number; inspect: Redis } {
  const port = nextMockPort++;
  return { port, inspect: new RedisMock({ host: 'mock', port }) };
}

interface Hooks {
  /** Runs before the subscription is made (its delay is the SUBSCRIBE's latency). */
  beforeSubscribe?: () => Promise<void>;
  /** Runs after SCAN read its keys, before its reply is returned. */
  afterScan?: () => Promise<void>;
}

/** One machine's network path to Redis: dropping it drops every connection of the machine. */
class Link {
  up = true;
  /** Commands fail although the status still says ready (a connection dying under a write). */
  failing = false;
  /**
   * Commands are swallowed although the status still says ready (a link that stopped carrying
   * anything): each waits here, unanswered, as in ioredis's command queue, until `release()`.
   */
  blackholed = false;
  readonly swallowed: (() => void)[] = [];
  hooks: Hooks = {};
  readonly clients: FakeRedis[] = [];
  /** Resolves once a client of this machine has its subscription in place. */
  readonly subscribed: Promise<void>;
  resolveSubscribed: () => void = () => {};

  constructor() {
    this.subscribed = new Promise((resolve) => {
      this.resolveSubscribed = resolve;
    });
  }

  drop(): void {
    this.up = false;
    for (const c of this.clients) c.lose();
  }

  restore(): void {
    this.up = true;
    for (const c of this.clients) c.reconnect();
  }

  /** The link carries again: every swallowed command runs and is answered, in order. */
  release(): void {
    this.blackholed = false;
    for (const run of this.swallowed.splice(0)) run();
  }
}

/** An ioredis-like client around an ioredis-mock instance, with a connection a test controls. */
class FakeRedis extends EventEmitter implements RedisClientLike {
  status = 'connecting';
  readonly options = {};
  [command: string]: unknown;

  constructor(
    readonly mock: Redis,
    readonly link: Link,
  ) {
    super();
    link.clients.push(this);
    // Pub/sub messages reach a client only while it is connected (Redis keeps none for later).
    mock.on('message', (channel: string, message: string) => {
      if (this.status === 'ready') this.emit('message', channel, message);
    });
    this.reconnect();
  }

  duplicate(): FakeRedis {
    return new FakeRedis(this.mock.duplicate(), this.link);
  }

  /** Commands added with defineCommand (a pipeline offers them too). */
  readonly defined: string[] = [];
  /** Pipelines sent (exec called). */
  pipelines = 0;

  defineCommand(name: string, def: { numberOfKeys: number; lua: string }): void {
    this.defined.push(name);
    this.mock.defineCommand(name, def);
    const command = (this.mock as unknown as Record<string, (...a: unknown[]) => Promise<number>>)[
      name
    ] as (...a: unknown[]) => Promise<number>;
    this[name] = (...args: unknown[]) => this.guard(() => command.apply(this.mock, args));
  }

  subscribe(channel: string): Promise<unknown> {
    return this.guard(async () => {
      await this.link.hooks.beforeSubscribe?.();
      const reply = await this.mock.subscribe(channel);
      this.link.resolveSubscribed();
      return reply;
    });
  }

  scan(cursor: string, ...args: (string | number)[]): Promise<[string, string[]]> {
    return this.guard(async () => {
      const reply = await (this.mock.scan as (...a: unknown[]) => Promise<[string, string[]]>)(
        cursor,
        ...args,
      );
      await this.link.hooks.afterScan?.();
      return reply;
    });
  }

  hgetall(key: string): Promise<Record<string, string>> {
    return this.guard(() => this.mock.hgetall(key));
  }

  pipeline(): RedisPipelineLike {
    // The queued commands run on the mock's own pipeline at exec, through the connection this
    // test controls: HGETALL, and the commands defined with defineCommand (the Lua write).
    const queued: [string, unknown[]][] = [];
    const pipe: RedisPipelineLike & Record<string, unknown> = {
      hgetall: (key: string) => queued.push(['hgetall', [key]]),
      exec: () =>
        this.guard(() => {
          this.pipelines++;
          const p = this.mock.pipeline() as unknown as Record<string, (...a: unknown[]) => void> & {
            exec(): Promise<[Error | null, unknown][] | null>;
          };
          for (const [name, args] of queued) (p[name] as (...a: unknown[]) => void)(...args);
          return p.exec();
        }, queued.length),
    };
    for (const name of this.defined) pipe[name] = (...args: unknown[]) => queued.push([name, args]);
    return pipe;
  }

  async quit(): Promise<unknown> {
    this.status = 'end';
    return 'OK';
  }

  disconnect(): void {
    this.status = 'end';
  }

  lose(): void {
    if (this.status === 'end') return;
    this.status = 'reconnecting';
    this.emit('close');
    this.emit('reconnecting');
  }

  reconnect(): void {
    setImmediate(() => {
      if (!this.link.up || this.status === 'end' || this.status === 'ready') return;
      this.status = 'ready';
      this.emit('connect');
      this.emit('ready');
    });
  }

  /** `commands`: how many commands `work` sends (a pipeline's), each held as ioredis would. */
  private guard<T>(work: () => Promise<T>, commands = 1): Promise<T> {
    if (this.status !== 'ready' || this.link.failing) {
      return Promise.reject(new Error('Connection is closed.'));
    }
    if (this.link.blackholed) {
      return new Promise<T>((resolve, reject) => {
        for (let i = 1; i < commands; i++) this.link.swallowed.push(() => {});
        this.link.swallowed.push(() => void work().then(resolve, reject));
      });
    }
    return work();
  }
}

// ---- machines ----------------------------------------------------------------------------------

const transports: RedisTransport[] = [];
const stores: ReplicatedStore[] = [];

afterEach(async () => {
  await Promise.all(transports.splice(0).map((t) => t.close()));
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

interface Logged {
  info: string[];
  warn: string[];
  error: string[];
}

/** A logger that records what the transport logs. */
function logger(): { logs: Logged; sink: Record<keyof Logged, (m: string) => void> } {
  const logs: Logged = { info: [], warn: [], error: [] };
  return {
    logs,
    sink: {
      info: (m) => void logs.info.push(m),
      warn: (m) => void logs.warn.push(m),
      error: (m) => void logs.error.push(m),
    },
  };
}

/** A client of the mock server on its own link (a machine's connection). */
async function client(port: number, link = new Link()): Promise<FakeRedis> {
  const c = new FakeRedis(new RedisMock({ host: 'mock', port }), link);
  if (link.up) await new Promise((resolve) => c.once('ready', resolve));
  return c;
}

interface Machine {
  table: SessionTable;
  transport: RedisTransport;
  link: Link;
  client: FakeRedis;
  logs: Logged;
  /** A local write, as the store makes it: applied to the replica, then published. */
  write(change: Change): void;
}

/** A machine (its replica and transport) on the mock server `port`; not started. */
async function machine(
  port: number,
  options: Partial<RedisTransportOptions> = {},
  link = new Link(),
): Promise<Machine> {
  const c = await client(port, link);
  const table = new SessionTable({ tombstoneTtl: 600_000 });
  const { logs, sink } = logger();
  const transport = new RedisTransport(
    resolveRedisOptions({ client: c, syncTimeout: 300, logger: sink, ...options }),
    {
      table,
      applyRemote: (changes) => {
        for (const change of changes) table.apply(change);
      },
    },
  );
  transports.push(transport);
  return {
    table,
    transport,
    link,
    client: c,
    logs,
    write(change) {
      table.apply(change);
      transport.publish(change);
    },
  };
}

async function started(
  port: number,
  options: Partial<RedisTransportOptions> = {},
): Promise<Machine> {
  const m = await machine(port, options);
  await m.transport.start();
  expect(m.transport.stats().state).toBe('synced');
  return m;
}

// ---- changes -----------------------------------------------------------------------------------

const NODE = 'aaaa';
function v(t: number, c = 0, n = NODE): Version {
  return { t, c, n };
}
const LATER = Date.now() + 3_600_000;
function set(sid: string, version: Version, data: string, expiresAt = LATER): Change {
  return { op: 'set', sid, data: JSON.stringify({ user: data }), expiresAt, version };
}
function destroy(sid: string, version: Version): Change {
  return { op: 'destroy', sid, version };
}
function touch(sid: string, version: Version, expiresAt: number): Change {
  return { op: 'touch', sid, expiresAt, version };
}

const key = (sid: string, cluster = 'sticky-mesh', prefix = 'sticky-mesh:') =>
  `${prefix}${cluster}:s:${sid}`;

/** A session's hash in Redis, every field as a string (as Redis answers; the mock keeps numbers). */
async function stored(
  inspect: Redis,
  sid: string,
  cluster?: string,
): Promise<Record<string, string>> {
  const h = await inspect.hgetall(key(sid, cluster));
  return Object.fromEntries(Object.entries(h).map(([f, value]) => [f, String(value)]));
}

/** Waits until the transport has had `n` writes answered by Redis (applied or stale). */
async function answered(m: Machine, n: number): Promise<void> {
  await vi.waitFor(() => expect(m.transport.stats().written).toBe(n), {
    timeout: 1000,
    interval: 2,
  });
}

function user(table: SessionTable, sid: string): string | undefined {
  const json = table.get(sid);
  return json === undefined ? undefined : (JSON.parse(json) as { user: string }).user;
}

// ---- tests -------------------------------------------------------------------------------------

describe('ioredis-mock as the test double', () => {
  it('instances with the same host and port share data and pub/sub (duplicates too); other ports share nothing', async () => {
    const { port, inspect } = mockServer();
    const a = new RedisMock({ host: 'mock', port });
    const other = new RedisMock({ host: 'mock', port: port + 100_000 });
    await a.set('k', 'v');
    expect(await inspect.get('k')).toBe('v');
    expect(await a.duplicate().get('k')).toBe('v');
    expect(await other.get('k')).toBeNull();
    const sub = inspect.duplicate();
    const got: string[] = [];
    sub.on('message', (_channel: string, message: string) => got.push(message));
    await sub.subscribe('ch');
    await a.publish('ch', 'one');
    // PUBLISH from Lua, as the transport's script does.
    await a.eval("redis.call('PUBLISH', 'ch', 'two') return 1", 0);
    await vi.waitFor(() => expect(got).toEqual(['one', 'two']), { timeout: 500, interval: 2 });
  });
});

describe('the Lua script: versions decide, atomically, in Redis', () => {
  it('a newer set replaces the record whole; an older or equal one is refused (t, then c, then node id)', async () => {
    const { port, inspect } = mockServer();
    const m = await started(port);
    m.write(set('s', v(100), 'first'));
    m.write(set('s', v(99, 9, 'zzzz'), 'older t'));
    m.write(set('s', v(100), 'same version'));
    m.write(set('s', v(100, 1), 'newer c'));
    m.write(set('s', v(100, 1, 'zzzz'), 'newer node id'));
    m.write(set('s', v(100, 1, 'bbbb'), 'older node id'));
    await answered(m, 6);
    expect(m.transport.stats()).toMatchObject({ written: 6, stale: 3 });
    const h = await stored(inspect, 's');
    expect(h).toEqual({
      t: '100',
      c: '1',
      n: 'zzzz',
      e: String(LATER),
      d: JSON.stringify({ user: 'newer node id' }),
    });
    // It expires tombstoneTtl after the session does.
    const pttl = await inspect.pttl(key('s'));
    expect(Math.abs(pttl - (LATER + 600_000 - Date.now()))).toBeLessThan(2000);
  });

  it('a destroy leaves a tombstone that blocks a late older set; only a newer set comes after it', async () => {
    const { port, inspect } = mockServer();
    const m = await started(port, { tombstoneTtl: 120_000 });
    m.write(set('s', v(10), 'ann'));
    m.write(destroy('s', v(30)));
    m.write(set('s', v(20), 'late save'));
    await answered(m, 3);
    expect(m.transport.stats().stale).toBe(1);
    const h = await stored(inspect, 's');
    expect(h.d).toBeUndefined();
    expect({ t: h.t, c: h.c, n: h.n }).toEqual({ t: '30', c: '0', n: NODE });
    const pttl = await inspect.pttl(key('s'));
    expect(pttl).toBeGreaterThan(110_000);
    expect(pttl).toBeLessThanOrEqual(120_000);
    // A destroy older than the tombstone changes nothing either.
    m.write(destroy('s', v(25)));
    m.write(set('s', v(40), 'new login'));
    await answered(m, 5);
    expect(m.transport.stats().stale).toBe(2);
    expect((await stored(inspect, 's')).d).toBe(JSON.stringify({ user: 'new login' }));
  });

  it('a touch only raises the expiry of a live record it is newer than, and never resurrects', async () => {
    const { port, inspect } = mockServer();
    const m = await started(port);
    // Missing: nothing is created.
    m.write(touch('missing', v(5), LATER));
    await answered(m, 1);
    expect(await inspect.exists(key('missing'))).toBe(0);

    m.write(set('s', v(10), 'ann', LATER));
    m.write(touch('s', v(11), LATER + 10_000));
    await answered(m, 3);
    let h = await stored(inspect, 's');
    // The expiry moved; the version and the data did not.
    expect(h).toMatchObject({ t: '10', c: '0', n: NODE, e: String(LATER + 10_000) });
    expect(h.d).toBe(JSON.stringify({ user: 'ann' }));
    const pttl = await inspect.pttl(key('s'));
    expect(Math.abs(pttl - (LATER + 10_000 + 600_000 - Date.now()))).toBeLessThan(2000);

    m.write(touch('s', v(12), LATER + 5_000)); // earlier expiry: refused
    m.write(touch('s', v(9), LATER + 20_000)); // older than the record: refused
    await answered(m, 5);
    expect((await stored(inspect, 's')).e).toBe(String(LATER + 10_000));

    m.write(destroy('s', v(20)));
    m.write(touch('s', v(21), LATER + 30_000)); // newer than the tombstone: still refused
    await answered(m, 7);
    h = await stored(inspect, 's');
    expect(h.d).toBeUndefined();
    expect(h.t).toBe('20');
    expect(h.e).not.toBe(String(LATER + 30_000));
    expect(m.transport.stats().stale).toBe(4);
  });

  it('a set whose expiry has passed is refused (and not published)', async () => {
    const { port, inspect } = mockServer();
    const m = await started(port);
    const other = await started(port);
    m.write(set('gone', v(10), 'ann', Date.now() - 1000));
    await answered(m, 1);
    expect(m.transport.stats().stale).toBe(1);
    expect(await inspect.exists(key('gone'))).toBe(0);
    // Over an existing live record too: it stays as it was.
    m.write(set('s', v(10), 'ann'));
    m.write(set('s', v(11), 'expired', Date.now() - 1));
    await answered(m, 3);
    expect((await stored(inspect, 's')).d).toBe(JSON.stringify({ user: 'ann' }));
    await delay(20);
    expect(other.transport.stats().received).toBe(1);
    expect(user(other.table, 's')).toBe('ann');
  });

  it('writes made in one turn go out in one pipeline, in order, each answered on its own (applied or stale); a lone write goes alone', async () => {
    const { port, inspect } = mockServer();
    const m = await started(port);
    const other = await started(port);
    const before = m.client.pipelines;
    for (let i = 0; i < 10; i++) m.write(set(`p${i}`, v(100 + i), `u${i}`));
    // Within the same turn: an older version of p9 (stale in Redis once p9's lands), then a
    // newer one (applied after both, as it was made).
    m.write(set('p9', v(50), 'older'));
    m.write(set('p9', v(200), 'newest'));
    await answered(m, 12);
    expect(m.client.pipelines - before).toBe(1);
    expect(m.transport.stats()).toMatchObject({ written: 12, stale: 1, errors: 0 });
    expect((await stored(inspect, 'p0')).d).toBe(JSON.stringify({ user: 'u0' }));
    expect((await stored(inspect, 'p9')).d).toBe(JSON.stringify({ user: 'newest' }));
    await vi.waitFor(() => expect(user(other.table, 'p9')).toBe('newest'), {
      timeout: 1000,
      interval: 2,
    });
    expect(user(other.table, 'p3')).toBe('u3');
    // One write in a turn is a plain command, no pipeline.
    m.write(set('alone', v(300), 'x'));
    await answered(m, 13);
    expect(m.client.pipelines - before).toBe(1);
  });

  it("a machine's own messages are known by their start, without parsing them", () => {
    const id = 'abcdef0123456789';
    const own = ownMessagePrefix(id);
    const change = set('s', v(5), 'ann');
    expect(readChannelMessage(channelMessage(id, change), id, own)).toBe('own');
    // Known by the prefix alone: the rest is not even parsed.
    expect(readChannelMessage(`${own}not json`, id, own)).toBe('own');
    // Without the prefix given, or from another machine, the message is parsed as before.
    expect(readChannelMessage(channelMessage(id, change), id)).toBe('own');
    expect(readChannelMessage(channelMessage('0123456789abcdef', change), id, own)).toEqual(change);
    expect(readChannelMessage(`{"m":"0123456789abcdef",`, id, own)).toBeUndefined();
  });

  it('publishes only what it applied, with the writer machine id; a machine ignores its own messages and counts malformed ones', async () => {
    const { port, inspect } = mockServer();
    const m = await started(port);
    const listener = inspect.duplicate();
    const messages: string[] = [];
    listener.on('message', (_c: string, message: string) => messages.push(message));
    await listener.subscribe('sticky-mesh:sticky-mesh:changes');
    const change = set('s', v(50), 'ann');
    m.write(change);
    m.write(set('s', v(40), 'stale'));
    m.write(touch('nobody', v(60), LATER));
    await answered(m, 3);
    await delay(10);
    expect(messages.map((s) => JSON.parse(s))).toEqual([{ m: m.transport.machineId, c: change }]);
    expect(m.transport.stats().received).toBe(0);

    const channel = 'sticky-mesh:sticky-mesh:changes';
    // A message carrying this machine's id is its own: ignored even if it says something new.
    await inspect.publish(
      channel,
      JSON.stringify({ m: m.transport.machineId, c: set('echo', v(70), 'x') }),
    );
    await inspect.publish(channel, JSON.stringify({ m: 'elsewhere', c: set('t', v(70), 'bob') }));
    await inspect.publish(channel, 'not json');
    await inspect.publish(channel, JSON.stringify({ m: 'elsewhere', c: { op: 'bogus' } }));
    await inspect.publish('sticky-mesh:another:changes', JSON.stringify({ m: 'x', c: change }));
    await vi.waitFor(() => expect(m.transport.stats().malformed).toBe(2), {
      timeout: 500,
      interval: 2,
    });
    expect(m.table.record('echo')).toBeUndefined();
    expect(user(m.table, 't')).toBe('bob');
    expect(m.transport.stats().received).toBe(1);
  });
});

describe('replication between machines through Redis', () => {
  it("a change on one machine reaches the other's table, both ways", async () => {
    const { port } = mockServer();
    const a = await started(port);
    const b = await started(port);
    a.write(set('s', v(10), 'ann'));
    await vi.waitFor(() => expect(user(b.table, 's')).toBe('ann'), { timeout: 500, interval: 2 });
    b.write(set('s', v(20), 'ann again'));
    b.write(set('t', v(21), 'bob'));
    await vi.waitFor(() => expect(user(a.table, 't')).toBe('bob'), { timeout: 500, interval: 2 });
    expect(user(a.table, 's')).toBe('ann again');
    a.write(destroy('s', v(30)));
    await vi.waitFor(() => expect(b.table.record('s')?.data).toBeNull(), {
      timeout: 500,
      interval: 2,
    });
    expect(b.table.record('s')?.version).toEqual(v(30));
    expect(a.table.digest).toBe(b.table.digest);
    expect(a.transport.stats()).toMatchObject({ received: 2, written: 2, stale: 0 });
    expect(b.transport.stats()).toMatchObject({ received: 2, written: 2, stale: 0 });
  });

  it('a machine started later rebuilds its table by scanning the records, tombstones and touches included', async () => {
    const { port } = mockServer();
    const a = await started(port);
    for (let i = 0; i < 20; i++) a.write(set(`s${i}`, v(100 + i), `user${i}`));
    a.write(destroy('s7', v(200)));
    a.write(touch('s8', v(201), LATER + 60_000));
    await answered(a, 22);
    const late = await machine(port);
    const start = late.transport.start();
    expect(late.transport.stats().state).toBe('syncing');
    await start;
    expect(late.transport.stats()).toMatchObject({ state: 'synced', rebuilds: 1, connected: true });
    expect(user(late.table, 's0')).toBe('user0');
    expect(user(late.table, 's19')).toBe('user19');
    expect(late.table.get('s7')).toBeUndefined();
    expect(late.table.record('s7')).toMatchObject({ data: null, version: v(200) });
    expect(late.table.record('s8')?.expiresAt).toBe(LATER + 60_000);
    expect([...late.table.live()]).toHaveLength(19);
    // Nothing was newer here than in Redis: nothing written back.
    expect(late.transport.stats().reconciled).toBe(0);
    expect(late.logs.info.join('\n')).toMatch(/rebuilt from Redis \(20 records\)/);
  });

  it('changes published while a joining machine scans are held and applied after the scan', async () => {
    const { port } = mockServer();
    const a = await started(port);
    a.write(set('old', v(10), 'ann'));
    await answered(a, 1);
    const late = await machine(port);
    let during = 0;
    late.link.hooks.afterScan = async () => {
      // (Here SUBSCRIBE was quick: it is in place before the scan's reply is read. The next
      // test is about a slow one.)
      await late.link.subscribed;
      // The scan has read its keys: what happens now reaches the joiner only by pub/sub.
      a.write(set('during', v(20), 'bob'));
      a.write(destroy('old', v(21)));
      during += 2;
      await answered(a, 1 + during);
    };
    await late.transport.start();
    expect(user(late.table, 'during')).toBe('bob');
    expect(late.table.record('old')).toMatchObject({ data: null, version: v(21) });
    expect(late.table.digest).toBe(a.table.digest);
  });

  it('a joining machine writes nothing back of what it received from Redis, held messages included', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port);
    a.write(set('old', v(10), 'ann'));
    await answered(a, 1);
    const late = await machine(port);
    late.link.hooks.afterScan = async () => {
      await late.link.subscribed;
      for (let i = 0; i < 5; i++) a.write(set(`during${i}`, v(20 + i), `u${i}`));
      await answered(a, 6);
    };
    await late.transport.start();
    expect(user(late.table, 'during4')).toBe('u4');
    // It wrote nothing itself: Redis already holds all it has (each of these would be a stale
    // round trip, and a joiner busy writing back the stream of others' changes under load
    // never finishes its rebuild).
    expect(late.transport.stats()).toMatchObject({ reconciled: 0, written: 0, stale: 0 });
    expect((await stored(inspect, 'during4')).n).toBe(NODE);
  });

  it('a joining machine scans only once its subscription is in place (a slow SUBSCRIBE loses nothing)', async () => {
    const { port } = mockServer();
    const a = await started(port);
    const late = await machine(port);
    // SUBSCRIBE goes on the other connection; its reply takes a while (latency, a busy Redis).
    late.link.hooks.beforeSubscribe = () => delay(50);
    let fired = false;
    late.link.hooks.afterScan = async () => {
      if (fired) return;
      fired = true;
      a.write(set('during', v(20), 'bob'));
      await answered(a, 1);
    };
    await late.transport.start();
    // "Subscribe first, then scan": a change made after the scan read its keys must arrive.
    await vi.waitFor(() => expect(user(late.table, 'during')).toBe('bob'), {
      timeout: 300,
      interval: 5,
    });
  });

  it('prefix and cluster keep tenants of one Redis apart', async () => {
    const { port, inspect } = mockServer();
    const one = await started(port, { cluster: 'one' });
    const two = await started(port, { cluster: 'two' });
    const otherPrefix = await started(port, { cluster: 'one', prefix: 'other:' });
    one.write(set('a', v(10), 'from one'));
    two.write(set('b', v(10), 'from two'));
    otherPrefix.write(set('c', v(10), 'from other prefix'));
    await Promise.all([answered(one, 1), answered(two, 1), answered(otherPrefix, 1)]);
    await delay(20);
    for (const m of [one, two, otherPrefix]) {
      expect(m.transport.stats().received).toBe(0);
      expect(m.table.size).toBe(1);
    }
    expect((await inspect.keys('*')).sort()).toEqual([
      'other:one:s:c',
      'sticky-mesh:one:s:a',
      'sticky-mesh:two:s:b',
    ]);
    // Joiners rebuild their own tenant only.
    const lateOne = await started(port, { cluster: 'one' });
    const lateTwo = await started(port, { cluster: 'two' });
    const lateOther = await started(port, { cluster: 'one', prefix: 'other:' });
    expect([...lateOne.table.live()].map(([sid]) => sid)).toEqual(['a']);
    expect([...lateTwo.table.live()].map(([sid]) => sid)).toEqual(['b']);
    expect([...lateOther.table.live()].map(([sid]) => sid)).toEqual(['c']);
  });

  it('a cluster whose name extends another\'s ("app" and "app:s:x") sees none of its records', async () => {
    const { port } = mockServer();
    let other: Machine;
    try {
      other = await started(port, { cluster: 'app:s:x' });
    } catch (err) {
      // Refusing a cluster name that can extend another's is a fix too.
      expect(err).toMatchObject({ code: 'ERR_STICKY_INVALID_OPTION', option: 'redis.cluster' });
      return;
    }
    other.write(set('secret', v(10), 'theirs'));
    await answered(other, 1);
    const app = await started(port, { cluster: 'app' });
    // "clusters sharing a Redis with different names never see each other's sessions"
    expect([...app.table.changes()]).toEqual([]);
  });
});

describe('while Redis is unreachable', () => {
  it('own writes are queued and reach Redis and the other machines on reconnect; what others wrote meanwhile arrives too', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port);
    const b = await started(port);
    a.link.drop();
    expect(a.transport.stats().connected).toBe(false);
    expect(a.logs.warn.join('\n')).toMatch(/connection lost/);
    a.write(set('s1', v(10), 'ann'));
    a.write(set('s2', v(11), 'bob'));
    a.write(destroy('s2', v(12)));
    b.write(set('from-b', v(13), 'carl')); // published while a is away: a misses the message
    await answered(b, 1);
    await delay(20);
    expect(a.transport.stats()).toMatchObject({ queued: 3, dropped: 0, written: 0 });
    expect(await inspect.exists(key('s1'))).toBe(0);
    expect(b.table.record('s1')).toBeUndefined();
    expect(a.table.record('from-b')).toBeUndefined();
    // Reads are served from the replica meanwhile.
    expect(user(a.table, 's1')).toBe('ann');

    a.link.restore();
    await vi.waitFor(
      () => expect(a.transport.stats()).toMatchObject({ state: 'synced', queued: 0 }),
      {
        timeout: 1000,
        interval: 5,
      },
    );
    expect(a.transport.stats().rebuilds).toBe(2);
    expect((await stored(inspect, 's1')).d).toBe(JSON.stringify({ user: 'ann' }));
    expect((await stored(inspect, 's2')).t).toBe('12');
    expect((await stored(inspect, 's2')).d).toBeUndefined();
    await vi.waitFor(() => expect(b.table.digest).toBe(a.table.digest), {
      timeout: 500,
      interval: 5,
    });
    expect(user(b.table, 's1')).toBe('ann');
    expect(user(a.table, 'from-b')).toBe('carl');
    expect(b.table.record('s2')?.data).toBeNull();
  });

  it('a full queue drops the oldest writes (counted), and they still reach Redis and the others by the write-back', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port, { maxQueue: 2 });
    const b = await started(port);
    a.link.drop();
    for (let i = 0; i < 5; i++) a.write(set(`s${i}`, v(10 + i), `user${i}`));
    a.write(destroy('s0', v(20)));
    expect(a.transport.stats()).toMatchObject({ queued: 2, dropped: 4 });
    a.link.restore();
    await vi.waitFor(
      () => expect(a.transport.stats()).toMatchObject({ state: 'synced', queued: 0 }),
      {
        timeout: 1000,
        interval: 5,
      },
    );
    for (let i = 1; i < 5; i++) {
      expect((await stored(inspect, `s${i}`)).d).toBe(JSON.stringify({ user: `user${i}` }));
    }
    expect((await stored(inspect, 's0')).d).toBeUndefined();
    expect((await stored(inspect, 's0')).t).toBe('20');
    // s1..s3 were dropped (s0 is superseded by its queued destroy): written back.
    expect(a.transport.stats().reconciled).toBe(3);
    expect(a.transport.stats().dropped).toBe(4);
    await vi.waitFor(() => expect(b.table.digest).toBe(a.table.digest), {
      timeout: 500,
      interval: 5,
    });
  });

  it('with maxQueue 0 nothing is queued, and everything is written back on reconnect', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port, { maxQueue: 0 });
    a.link.drop();
    a.write(set('s', v(10), 'ann'));
    expect(a.transport.stats()).toMatchObject({ queued: 0, dropped: 1 });
    a.link.restore();
    await vi.waitFor(
      async () => expect((await stored(inspect, 's')).d).toBe(JSON.stringify({ user: 'ann' })),
      { timeout: 1000, interval: 5 },
    );
  });

  it('a write that fails in flight is queued and sent after the reconnect', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port);
    a.link.failing = true;
    a.write(set('s', v(10), 'ann'));
    await vi.waitFor(() => expect(a.transport.stats().queued).toBe(1), {
      timeout: 500,
      interval: 2,
    });
    a.link.failing = false;
    a.link.drop();
    a.link.restore();
    await vi.waitFor(
      async () => expect((await stored(inspect, 's')).d).toBe(JSON.stringify({ user: 'ann' })),
      { timeout: 1000, interval: 5 },
    );
    expect(a.transport.stats().queued).toBe(0);
  });

  it("a Redis that came back empty (or older) is repopulated with every record the machines hold, their own and the others'", async () => {
    const { port, inspect } = mockServer();
    const a = await started(port);
    const b = await started(port);
    a.write(set('from-a', v(10), 'ann'));
    b.write(set('from-b', v(11), 'bob'));
    b.write(set('gone', v(12), 'carl'));
    b.write(destroy('gone', v(13)));
    a.write(set('newer-here', v(14), 'dora v2'));
    await Promise.all([answered(a, 2), answered(b, 3)]);
    await vi.waitFor(() => expect(a.table.digest).toBe(b.table.digest), {
      timeout: 500,
      interval: 2,
    });
    a.link.drop();
    b.link.drop();
    await inspect.flushall();
    // Redis holds an older version of one record (restored from an old snapshot, say).
    await inspect.hset(key('newer-here'), {
      t: '5',
      c: '0',
      n: NODE,
      e: String(LATER),
      d: JSON.stringify({ user: 'dora v1' }),
    });
    a.link.restore();
    b.link.restore();
    for (const m of [a, b]) {
      await vi.waitFor(
        () => expect(m.transport.stats()).toMatchObject({ state: 'synced', rebuilds: 2 }),
        {
          timeout: 1000,
          interval: 5,
        },
      );
    }
    expect((await stored(inspect, 'from-a')).d).toBe(JSON.stringify({ user: 'ann' }));
    expect((await stored(inspect, 'from-b')).d).toBe(JSON.stringify({ user: 'bob' }));
    expect((await stored(inspect, 'gone')).t).toBe('13');
    expect((await stored(inspect, 'gone')).d).toBeUndefined();
    expect((await stored(inspect, 'newer-here')).d).toBe(JSON.stringify({ user: 'dora v2' }));
    expect(user(a.table, 'newer-here')).toBe('dora v2');
    expect(a.transport.stats().reconciled + b.transport.stats().reconciled).toBeGreaterThanOrEqual(
      4,
    );
    expect(a.table.digest).toBe(b.table.digest);
  });

  it('start() gives up waiting after syncTimeout (logged) and the rebuild follows once Redis is reachable', async () => {
    const { port } = mockServer();
    const a = await started(port);
    a.write(set('s', v(10), 'ann'));
    await answered(a, 1);
    const link = new Link();
    link.up = false;
    const late = await machine(port, { syncTimeout: 100 }, link);
    const t0 = Date.now();
    await late.transport.start();
    expect(Date.now() - t0).toBeGreaterThanOrEqual(90);
    expect(late.transport.stats()).toMatchObject({ state: 'syncing', connected: false });
    expect(late.logs.warn.join('\n')).toMatch(/no session state from Redis in 100 ms/);
    late.write(set('meanwhile', v(20), 'bob'));
    link.restore();
    await vi.waitFor(() => expect(late.transport.stats().state).toBe('synced'), {
      timeout: 1000,
      interval: 5,
    });
    expect(user(late.table, 's')).toBe('ann');
    await vi.waitFor(() => expect(user(a.table, 'meanwhile')).toBe('bob'), {
      timeout: 500,
      interval: 5,
    });
  });

  it("the write-back after Redis came back empty restores each session's touched expiry, not its last save's", async () => {
    const { port, inspect } = mockServer();
    const a = await started(port);
    const soon = Date.now() + 80;
    // Saved once with a short lifetime and kept alive by touches since (express-session touches
    // the session on every request that does not change it).
    a.write(set('kept-alive', v(10), 'ann', soon));
    a.write(touch('kept-alive', v(11), LATER));
    a.write(set('long', v(12), 'bob', Date.now() + 60_000));
    a.write(touch('long', v(13), LATER));
    await answered(a, 4);
    expect((await stored(inspect, 'kept-alive')).e).toBe(String(LATER));
    await delay(Math.max(0, soon - Date.now()) + 20); // its last save's expiry has passed
    expect(user(a.table, 'kept-alive')).toBe('ann'); // alive here: the touch moved it
    a.link.drop();
    await inspect.flushall(); // Redis restarted, empty
    a.link.restore();
    await vi.waitFor(
      () => expect(a.transport.stats()).toMatchObject({ state: 'synced', rebuilds: 2 }),
      {
        timeout: 1000,
        interval: 5,
      },
    );
    expect({
      'kept-alive': await stored(inspect, 'kept-alive'),
      long: await stored(inspect, 'long'),
    }).toMatchObject({
      'kept-alive': { t: '10', e: String(LATER), d: JSON.stringify({ user: 'ann' }) },
      long: { t: '12', e: String(LATER) },
    });
    // A machine joining now holds what this one holds.
    const late = await started(port);
    expect(user(late.table, 'kept-alive')).toBe('ann');
    expect(late.table.record('long')?.expiresAt).toBe(LATER);
  });

  it('a touch dropped from a full queue still reaches Redis', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port, { maxQueue: 1 });
    a.write(set('s', v(10), 'ann', Date.now() + 60_000));
    await answered(a, 1);
    a.link.drop();
    a.write(touch('s', v(11), LATER));
    a.write(set('other', v(12), 'bob'));
    expect(a.transport.stats()).toMatchObject({ queued: 1, dropped: 1 });
    a.link.restore();
    await vi.waitFor(
      () => expect(a.transport.stats()).toMatchObject({ state: 'synced', queued: 0 }),
      {
        timeout: 1000,
        interval: 5,
      },
    );
    expect((await stored(inspect, 'other')).d).toBe(JSON.stringify({ user: 'bob' }));
    // "writes dropped from a full queue still arrive"
    expect((await stored(inspect, 's')).e).toBe(String(LATER));
  });

  it('close() during a rebuild: the transport stays closed', async () => {
    const { port } = mockServer();
    const a = await started(port);
    a.write(set('s', v(10), 'ann'));
    await answered(a, 1);
    const late = await machine(port);
    let release: (() => void) | undefined;
    late.link.hooks.afterScan = () =>
      new Promise<void>((resolve) => {
        release = resolve;
      });
    const available: boolean[] = [];
    late.transport.onAvailability = (now) => available.push(now);
    const start = late.transport.start();
    await vi.waitFor(() => expect(release).toBeTypeOf('function'), { timeout: 500, interval: 2 });
    await late.transport.close();
    expect(late.transport.stats().state).toBe('closed');
    await start; // close() resolves start()
    release?.();
    await delay(20);
    expect(late.transport.stats().state).toBe('closed');
    // (a standalone store would otherwise emit 'connect' after close())
    expect(available).toEqual([]);
  });
});

describe('the write queue is bounded in writes and bytes, in flight included (issue 15 item 7)', () => {
  /** A session of about `kib` KiB. */
  const big = (sid: string, t: number, kib: number) =>
    set(sid, v(t), `${sid}:${'x'.repeat(kib * 1024)}`);

  it('maxQueueBytes bounds what waits while Redis is away: the oldest are dropped (counted), and every write still reaches Redis after the reconnect', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port, { maxQueueBytes: 40 * 1024 });
    a.link.drop();
    for (let i = 0; i < 20; i++) {
      a.write(big(`s${i}`, 10 + i, 10));
      expect(a.transport.stats().queuedBytes).toBeLessThanOrEqual(40 * 1024);
    }
    const { queued, dropped, queuedBytes } = a.transport.stats();
    expect(queued).toBe(3); // three of about 10.3 KiB fit in 40 KiB
    expect(queuedBytes).toBeGreaterThan(30 * 1024);
    expect(dropped).toBe(17);
    a.link.restore();
    await vi.waitFor(
      () => expect(a.transport.stats()).toMatchObject({ state: 'synced', queued: 0 }),
      { timeout: 2000, interval: 5 },
    );
    for (let i = 0; i < 20; i++) {
      expect(JSON.parse((await stored(inspect, `s${i}`)).d ?? 'null').user).toMatch(`s${i}:`);
    }
    expect(a.transport.stats().queuedBytes).toBe(0);
  });

  it('a link that swallows commands while ioredis still says ready: at most 64 writes go out, the rest wait in the bounded queue; once it carries again every write reaches Redis', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port, { maxQueue: 100 });
    const b = await started(port);
    a.link.blackholed = true;
    for (let i = 0; i < 1000; i++) {
      a.write(set(`k${i}`, v(10 + i), `u${i}`));
      expect(a.link.swallowed.length).toBeLessThanOrEqual(64);
    }
    await delay(20);
    // What ioredis would hold is the transport's window, not every write made.
    expect(a.link.swallowed.length).toBe(64);
    expect(a.transport.stats()).toMatchObject({ connected: true, queued: 100, dropped: 900 });
    a.link.release();
    // The writes held are answered, and the ones dropped are written back by the rebuild that
    // follows the drained queue: Redis, and the other machine, hold all 1000.
    await vi.waitFor(
      async () => {
        expect(a.transport.stats()).toMatchObject({ state: 'synced', queued: 0 });
        expect((await inspect.keys(key('k*'))).length).toBe(1000);
      },
      { timeout: 3000, interval: 10 },
    );
    for (const i of [0, 1, 450, 899, 900, 999]) {
      expect((await stored(inspect, `k${i}`)).d).toBe(JSON.stringify({ user: `u${i}` }));
    }
    await vi.waitFor(() => expect(b.table.digest).toBe(a.table.digest), {
      timeout: 2000,
      interval: 10,
    });
    expect(a.transport.stats().dropped).toBe(900);
  });

  it('a write Redis answered with an error is tried again on the same connection, and the writes after it follow', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port);
    a.link.failing = true; // error replies; the connection stays up
    a.write(set('first', v(10), 'ann'));
    await vi.waitFor(() => expect(a.transport.stats().queued).toBe(1), {
      timeout: 500,
      interval: 2,
    });
    a.link.failing = false;
    a.write(set('second', v(11), 'bob'));
    await vi.waitFor(
      async () => {
        expect((await stored(inspect, 'first')).d).toBe(JSON.stringify({ user: 'ann' }));
        expect((await stored(inspect, 'second')).d).toBe(JSON.stringify({ user: 'bob' }));
      },
      { timeout: 3000, interval: 10 },
    );
    expect(a.transport.stats()).toMatchObject({ queued: 0, dropped: 0, rebuilds: 1 });
  });

  it('a write alone is sent while Redis is reachable, however large: a session over maxQueueBytes is still written', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port, { maxQueueBytes: 1024 });
    a.write(big('huge', 10, 8));
    await answered(a, 1);
    expect((await stored(inspect, 'huge')).d).toMatch(/huge:x{8192}/);
    expect(a.transport.stats()).toMatchObject({ dropped: 0, queued: 0, queuedBytes: 0 });
  });
});

describe('resolveRedisOptions', () => {
  const mock = () => new FakeRedis(new RedisMock({ host: 'mock', port: 1 }), new Link());

  it('takes a URL, a client, ioredis options or the full form, with defaults', () => {
    const c = mock();
    expect(resolveRedisOptions('redis://h:6379')).toMatchObject({
      url: 'redis://h:6379',
      client: undefined,
      prefix: 'sticky-mesh:',
      cluster: 'sticky-mesh',
      maxQueue: 10_000,
      syncTimeout: 10_000,
      tombstoneTtl: 600_000,
    });
    expect(resolveRedisOptions('rediss://h').url).toBe('rediss://h');
    expect(resolveRedisOptions(c).client).toBe(c);
    expect(resolveRedisOptions({ host: 'h', port: 7000 }).connection).toEqual({
      host: 'h',
      port: 7000,
    });
    expect(
      resolveRedisOptions({ client: c, prefix: 'p:', cluster: 'c', maxQueue: 0 }),
    ).toMatchObject({ client: c, prefix: 'p:', cluster: 'c', maxQueue: 0 });
  });

  it.each([
    [
      'both url and client',
      () => ({ url: 'redis://h', client: mock() }),
      /exactly one of client, url or connection/,
      'redis',
    ],
    ['neither', () => ({ prefix: 'p:' }), /exactly one of client, url or connection/, 'redis'],
    [
      'a URL that is not redis://',
      () => ({ url: 'http://h:6379' }),
      /redis:\/\/ or rediss:\/\//,
      'redis.url',
    ],
    ['a bare host:port string', () => 'h:6379', /redis:\/\/ or rediss:\/\//, 'redis.url'],
    [
      'an unknown key next to known ones',
      () => ({ url: 'redis://h', clustr: 'x' }),
      /misspelt/,
      'redis.clustr',
    ],
    [
      'a prefix with *',
      () => ({ url: 'redis://h', prefix: 'a*' }),
      /without \* \?/,
      'redis.prefix',
    ],
    [
      'a cluster with ?',
      () => ({ url: 'redis://h', cluster: 'a?' }),
      /without \* \?/,
      'redis.cluster',
    ],
    ['an empty cluster', () => ({ url: 'redis://h', cluster: '' }), /non-empty/, 'redis.cluster'],
    ['a client that is not one', () => ({ client: {} }), /an ioredis client/, 'redis.client'],
    [
      'a negative maxQueue',
      () => ({ url: 'redis://h', maxQueue: -1 }),
      /maxQueue/,
      'redis.maxQueue',
    ],
    [
      'a negative maxQueueBytes',
      () => ({ url: 'redis://h', maxQueueBytes: -1 }),
      /maxQueueBytes/,
      'redis.maxQueueBytes',
    ],
    [
      'a fractional maxQueueBytes',
      () => ({ url: 'redis://h', maxQueueBytes: 1.5 }),
      /maxQueueBytes/,
      'redis.maxQueueBytes',
    ],
    [
      'a syncTimeout of 0',
      () => ({ url: 'redis://h', syncTimeout: 0 }),
      /syncTimeout/,
      'redis.syncTimeout',
    ],
    ['a number', () => 6379, /an ioredis client, a redis:\/\/ URL/, 'redis'],
    ['null', () => null, /an ioredis client, a redis:\/\/ URL/, 'redis'],
    ['an array', () => ['redis://h'], /an ioredis client, a redis:\/\/ URL/, 'redis'],
  ])('refuses %s', (_what, value, message, option) => {
    let caught: unknown;
    try {
      resolveRedisOptions(value());
    } catch (err) {
      caught = err;
    }
    expect(caught).toMatchObject({ code: 'ERR_STICKY_INVALID_OPTION', option });
    expect((caught as Error).message).toMatch(message);
  });

  it('a store refuses bad redis options at construction, and redis with multicast', () => {
    expect(() => new ReplicatedStore({ redis: 'http://h' })).toThrow(/redis\.url/);
    expect(
      () => new ReplicatedStore({ redis: 'redis://h', multicast: { insecure: true } as never }),
    ).toThrow(/either "multicast" or "redis"/);
  });
});

// ---- the standalone store ----------------------------------------------------------------------

function sess(extra: Record<string, unknown>, expiresInMs = 3_600_000): SessionData {
  return {
    cookie: { originalMaxAge: expiresInMs, expires: new Date(Date.now() + expiresInMs) },
    ...extra,
  };
}

async function redisStore(
  port: number,
  link = new Link(),
  options: Partial<RedisTransportOptions> = {},
): Promise<{ store: ReplicatedStore; link: Link; events: string[] }> {
  const c = await client(port, link);
  const store = new ReplicatedStore({
    redis: { client: c, syncTimeout: 150, logger: logger().sink, ...options },
  });
  stores.push(store);
  const events: string[] = [];
  store.on('disconnect', () => events.push('disconnect'));
  store.on('connect', () => events.push('connect'));
  return { store, link, events };
}

describe('a standalone ReplicatedStore with redis', () => {
  it('works through the express-session Store API and replicates to another store', async () => {
    const { port, inspect } = mockServer();
    const { store: s1, events: e1 } = await redisStore(port);
    const { store: s2, events: e2 } = await redisStore(port);
    expect(s1).toBeInstanceOf(Store);
    await new Promise<void>((resolve, reject) =>
      s1.set('a', sess({ user: 'ann' }), (err) => (err ? reject(err) : resolve())),
    );
    await s1.set('b', sess({ user: 'bob' }));
    await vi.waitFor(async () => expect(await s2.get('a')).toMatchObject({ user: 'ann' }), {
      timeout: 500,
      interval: 5,
    });
    expect(await s2.length()).toBe(2);
    expect((await s2.ids())?.sort()).toEqual(['a', 'b']);
    expect(Object.keys((await s2.all()) ?? {}).sort()).toEqual(['a', 'b']);
    // express-session's own helpers (inherited from its Store) work on it.
    const loaded = await new Promise<unknown>((resolve, reject) =>
      s2.load('a', (err, value) => (err ? reject(err) : resolve(value))),
    );
    expect(loaded).toMatchObject({ user: 'ann' });
    expect(loaded).toBeInstanceOf(session.Session);
    // Redis holds it.
    const h = await stored(inspect, 'a');
    expect(JSON.parse(h.d ?? '{}')).toMatchObject({ user: 'ann' });
    // A touch replicates the expiry; a destroy anywhere is honoured everywhere.
    const later = sess({ user: 'ann' }, 7_200_000);
    await s2.touch('a', later);
    await vi.waitFor(
      async () =>
        expect(Number((await stored(inspect, 'a')).e)).toBeGreaterThan(Date.now() + 7_000_000),
      { timeout: 500, interval: 5 },
    );
    await s2.destroy('a');
    await vi.waitFor(async () => expect(await s1.get('a')).toBeNull(), {
      timeout: 500,
      interval: 5,
    });
    expect((await stored(inspect, 'a')).d).toBeUndefined();
    await s1.clear();
    await vi.waitFor(async () => expect(await s2.length()).toBe(0), { timeout: 500, interval: 5 });
    expect(s1.redisStats()).toMatchObject({ state: 'synced', connected: true, dropped: 0 });
    expect(s1.multicastStats()).toBeUndefined();
    expect(e1).toEqual([]);
    expect(e2).toEqual([]);
  });

  it("emits 'disconnect' only when it has nothing to serve, and 'connect' once it has", async () => {
    const { port } = mockServer();
    const { store: writer } = await redisStore(port);
    await writer.set('a', sess({ user: 'ann' }));
    const link = new Link();
    link.up = false;
    const { store, events } = await redisStore(port, link, { syncTimeout: 100 });
    // No Redis and nothing rebuilt: after syncTimeout it says it cannot serve...
    await vi.waitFor(() => expect(events).toEqual(['disconnect']), {
      timeout: 1000,
      interval: 5,
    });
    expect(await store.get('a')).toBeNull();
    // ...and that it can once Redis is there and the rebuild is done.
    link.restore();
    await vi.waitFor(() => expect(events).toEqual(['disconnect', 'connect']), {
      timeout: 1000,
      interval: 5,
    });
    expect(await store.get('a')).toMatchObject({ user: 'ann' });
    // Once it holds the sessions, losing Redis is not a reason to stop serving: no event.
    link.drop();
    await delay(150);
    expect(await store.get('a')).toMatchObject({ user: 'ann' });
    await store.set('b', sess({ user: 'bob' }));
    expect(store.redisStats()).toMatchObject({ connected: false, queued: 1 });
    link.restore();
    await vi.waitFor(async () => expect(await writer.get('b')).toMatchObject({ user: 'bob' }), {
      timeout: 1000,
      interval: 5,
    });
    expect(events).toEqual(['disconnect', 'connect']);
  });

  it('a store whose Redis is there from the start emits neither', async () => {
    const { port } = mockServer();
    const { store, events } = await redisStore(port, new Link(), { syncTimeout: 50 });
    await store.set('a', sess({ user: 'ann' }));
    await delay(100);
    expect(events).toEqual([]);
  });
});

describe('read on miss through Redis', () => {
  it('a session Redis holds but this machine has not heard of is read from Redis; an unknown id is remembered', async () => {
    const { port, inspect } = mockServer();
    const { store } = await redisStore(port);
    await store.length();
    // Written to Redis without the publish that would have brought it here (a machine that
    // moved the client here right after its login, before the change arrived).
    const expires = Date.now() + 3_600_000;
    await inspect.hset('sticky-mesh:sticky-mesh:s:not-heard-of-1', {
      t: 10,
      c: 0,
      n: 'bbbb',
      e: expires,
      d: JSON.stringify(sess({ user: 'carol' })),
    });
    expect(await store.get('not-heard-of-1')).toMatchObject({ user: 'carol' });
    expect(store.redisStats()?.readOnMiss).toEqual({ asked: 1, found: 1, unknown: 0, cached: 0 });
    // An id Redis does not hold: answered null, remembered, not asked again.
    expect(await store.get('nobody-has-this')).toBeNull();
    expect(await store.get('nobody-has-this')).toBeNull();
    expect(store.redisStats()?.readOnMiss).toEqual({ asked: 2, found: 1, unknown: 1, cached: 1 });
    // Ids that do not look like session ids are not asked for at all.
    expect(await store.get('x')).toBeNull();
    expect(store.redisStats()?.readOnMiss.asked).toBe(2);
  });

  it('a link that swallows commands: at most 64 reads on miss go out, the others answer at once (nothing piles up in ioredis)', async () => {
    const { port } = mockServer();
    const a = await started(port, { readOnMissWait: 200 });
    a.link.blackholed = true;
    const reads = Array.from({ length: 200 }, (_, i) => a.transport.fetch(`missing-id-${i}`));
    expect(a.link.swallowed.length).toBe(64);
    a.link.release();
    await Promise.all(reads); // every read settles
    expect(a.transport.stats().readOnMiss.asked).toBe(64);
    // Once answered, reads on miss are asked again.
    await a.transport.fetch('missing-id-after');
    expect(a.transport.stats().readOnMiss.asked).toBe(65);
  });

  it('readOnMissWait: 0 turns it off', async () => {
    const { port, inspect } = mockServer();
    const { store } = await redisStore(port, new Link(), { readOnMissWait: 0 });
    await store.length();
    await inspect.hset('sticky-mesh:sticky-mesh:s:not-heard-of-2', {
      t: 10,
      c: 0,
      n: 'bbbb',
      e: Date.now() + 3_600_000,
      d: JSON.stringify(sess({ user: 'dan' })),
    });
    expect(await store.get('not-heard-of-2')).toBeNull();
    expect(store.redisStats()?.readOnMiss.asked).toBe(0);
  });
});

describe('an outage longer than tombstoneTtl (issue 15, item 2)', () => {
  // Before, the write-back after the reconnect wrote every record Redis lacked, also sessions
  // ended elsewhere meanwhile whose tombstones had expired: a logout came undone everywhere.
  it('writes back only what was written here while away; what Redis no longer holds is dropped here', async () => {
    const { port, inspect } = mockServer();
    const ttl = 200;
    const a = await started(port, { tombstoneTtl: ttl });
    const b = await started(port, { tombstoneTtl: ttl });
    const now = Date.now();
    a.write(set('ended', v(now), 'ann'));
    a.write(set('kept', v(now + 1), 'bob'));
    await vi.waitFor(() => expect(user(b.table, 'kept')).toBe('bob'), { timeout: 1000 });
    b.link.drop();
    // Ended on a while b is away; its tombstone expires in Redis before b is back.
    a.write(destroy('ended', v(now + 2)));
    b.write(set('new-on-b', v(now + 3), 'carl'));
    await delay(ttl * 2);
    expect(await inspect.exists(key('ended'))).toBe(0);
    expect(user(b.table, 'ended')).toBe('ann');
    b.link.restore();
    await vi.waitFor(
      () => expect(b.transport.stats()).toMatchObject({ state: 'synced', forgotten: 1 }),
      { timeout: 2000, interval: 5 },
    );
    expect(b.table.record('ended')).toBeUndefined();
    expect(await inspect.exists(key('ended'))).toBe(0);
    expect(user(a.table, 'ended')).toBeUndefined();
    // What b wrote while away, and what both still hold, are there.
    expect((await stored(inspect, 'new-on-b')).d).toBe(JSON.stringify({ user: 'carl' }));
    expect(user(b.table, 'kept')).toBe('bob');
    await vi.waitFor(() => expect(user(a.table, 'new-on-b')).toBe('carl'), { timeout: 1000 });
    expect(b.logs.warn.join('\n')).toMatch(/longer than tombstoneTtl/);
  });

  it('after a shorter outage a Redis that lost records still gets every one written back', async () => {
    const { port, inspect } = mockServer();
    const a = await started(port, { tombstoneTtl: 60_000 });
    a.write(set('s', v(Date.now()), 'ann'));
    await answered(a, 1);
    a.link.drop();
    await inspect.flushall();
    a.link.restore();
    await vi.waitFor(() => expect(a.transport.stats()).toMatchObject({ state: 'synced' }), {
      timeout: 2000,
      interval: 5,
    });
    await vi.waitFor(async () => expect((await stored(inspect, 's')).d).toBeDefined(), {
      timeout: 1000,
    });
    expect(a.transport.stats().forgotten).toBe(0);
  });
});
