import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { debug } from '../debug.js';
import { InvalidOptionError, StickyMeshError } from '../errors.js';
import { boolean, integer, MAX_MS } from '../options.js';
import { TRANSPORT_ENV } from '../protocol/messages.js';

import { Clock, newNodeId } from './clock.js';
import { type HubClient, hubClient } from './hub-client.js';
import type { MulticastOptions, MulticastStats } from './multicast.js';
import { type RedisOption, type RedisStats, RedisTransport } from './redis.js';
import { type Change, SessionTable } from './table.js';
import { resolveTransport, type Transport } from './transport.js';

/** Options of {@link ReplicatedStore}. Every time is in milliseconds. */
export interface ReplicatedStoreOptions {
  /**
   * Lifetime of a session whose cookie has no `expires` (a browser-session cookie), in ms.
   * Otherwise the lifetime is the cookie's: `expires - now`; zero or less deletes the session.
   * @default 86400000 (one day)
   */
  ttl?: number;
  /**
   * Ignore express-session's `touch()` (the expiry then moves only when a session is saved).
   * @default false
   */
  disableTouch?: boolean;
  /**
   * A touch that would move a session's expiry later by less than this many ms (and less than a
   * tenth of the session's remaining lifetime) is skipped: it would replicate to every process
   * for almost nothing. A busy session then expires at most that much early.
   * @default 10000
   */
  touchAfter?: number;
  /**
   * Largest session accepted by `set()`, in bytes of its JSON form; a larger one fails with
   * `ERR_STICKY_SESSION_TOO_LARGE` and nothing is written.
   * @default 65536
   */
  maxSessionBytes?: number;
  /**
   * How long a destroyed or expired session is remembered, in ms, so that a write still in
   * flight from another replica cannot bring it back. Longer than any replication delay.
   * @default 600000
   */
  tombstoneTtl?: number;
  /**
   * How often expired sessions and old tombstones are swept from memory, in ms (an unref'd
   * timer: it never keeps the process alive). Expired sessions are never served meanwhile.
   * @default 60000
   */
  sweepInterval?: number;
  /**
   * Replicate to the other machines of the cluster over authenticated UDP multicast (see
   * {@link MulticastOptions}; `secret` or `insecure: true` is required). Standalone, the store
   * opens the machine's socket itself. In a sticky-mesh worker give these options to `sticky()`
   * instead: the primary owns the machine's one socket and the store is fed over IPC.
   * @default undefined (sessions stay in this process, or this cluster)
   */
  multicast?: MulticastOptions;
  /**
   * Replicate to the other machines through Redis (where multicast is not carried): an ioredis
   * client, a `redis://` URL, ioredis options, or `{ client | url | connection, prefix,
   * cluster, ... }`. Reads stay local; Redis holds the authoritative copy. Standalone, the store
   * connects itself; in a sticky-mesh worker give it to `sticky()` instead. Needs ioredis.
   * @default undefined
   */
  redis?: RedisOption;
}

type Resolved = Required<Omit<ReplicatedStoreOptions, 'multicast' | 'redis'>> & {
  multicast: MulticastOptions | undefined;
  redis: RedisOption | undefined;
};

const DEFAULTS: Readonly<Resolved> = Object.freeze({
  ttl: 86_400_000,
  disableTouch: false,
  touchAfter: 10_000,
  maxSessionBytes: 64 * 1024,
  tombstoneTtl: 600_000,
  sweepInterval: 60_000,
  multicast: undefined,
  redis: undefined,
});

/** What express-session stores: any JSON-serialisable object with a `cookie`. */
export interface SessionData {
  cookie?: { expires?: Date | string | null; originalMaxAge?: number | null } | undefined;
  [key: string]: unknown;
}

/**
 * A store callback. Typed loosely on purpose: express-session's own types declare the session
 * argument with its `Cookie` class, and this package's types must not depend on them.
 */
// biome-ignore lint/suspicious/noExplicitAny: see above
type Callback<_T> = (err: any, value?: any) => void;

/**
 * express-session's `Store` when express-session is installed (so `instanceof Store` holds and
 * its `regenerate` / `load` / `createSession` helpers are inherited), a plain EventEmitter
 * otherwise (the store is then usable on its own, without the middleware).
 */
const Base: typeof EventEmitter = (() => {
  try {
    const loaded = createRequire(import.meta.url)('express-session') as { Store?: unknown };
    if (typeof loaded.Store === 'function') return loaded.Store as typeof EventEmitter;
  } catch {
    // express-session is an optional peer dependency.
  }
  return EventEmitter;
})();

/**
 * An express-session store in which every process keeps a full replica of the sessions.
 * Reads are local and never wait; every write is versioned (hybrid logical clock + node id),
 * so replicas that receive the same writes in any order agree, a logout cannot be undone by a
 * late save, and a `touch` never rewrites data. Standalone (as here) it is a correct in-process
 * store; replication across workers and machines plugs in through its change stream.
 *
 * Every method takes an express-session style callback, or returns a promise without one.
 * Sessions are stored as JSON: what `get` returns is a fresh copy every time.
 */
export class ReplicatedStore extends Base {
  // Inherited from express-session's Store when it is installed (what the middleware calls to
  // regenerate and reload sessions). Typed loosely so that this package's types do not depend
  // on @types/express-session.
  // biome-ignore lint/suspicious/noExplicitAny: see above
  declare regenerate: (req: any, callback: (err?: any) => any) => void;
  // biome-ignore lint/suspicious/noExplicitAny: see above
  declare load: (sid: string, callback: (err: any, session?: any) => any) => void;
  // biome-ignore lint/suspicious/noExplicitAny: see above
  declare createSession: (req: any, session: any) => any;
  readonly nodeId: string;
  private readonly options: Resolved;
  private readonly clock: Clock;
  private readonly table: SessionTable;
  /** In a sticky-mesh worker: the process's link to the hub (and its shared replica). */
  private readonly hub: HubClient | undefined;
  /** Standalone with `multicast` or `redis`: this store's own link to the other machines. */
  private readonly transport: Transport | undefined;
  /** Settles once the transport holds the cluster's sessions (rejects if it cannot start). */
  private readonly transportReady: Promise<void> | undefined;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(options: ReplicatedStoreOptions = {}) {
    super();
    this.options = resolve(options);
    this.nodeId = newNodeId();
    this.clock = new Clock(this.nodeId);
    this.hub = hubClient(this.options.tombstoneTtl);
    this.hub?.observe((version) => this.clock.observe(version));
    this.table = this.hub?.table ?? new SessionTable({ tombstoneTtl: this.options.tombstoneTtl });
    const kind =
      this.options.multicast !== undefined
        ? 'multicast'
        : this.options.redis !== undefined
          ? 'redis'
          : undefined;
    const build = resolveTransport(this.options);
    if (kind && this.hub) {
      if (process.env[TRANSPORT_ENV] !== kind) {
        throw new StickyMeshError(
          'ERR_STICKY_INVALID_OPTION',
          `sticky-mesh: in a sticky-mesh worker the ${kind} options belong in ` +
            `sticky({ ${kind}: ... }): the primary holds the machine's one link to the other ` +
            'machines and feeds every worker',
        );
      }
      // The primary replicates this machine: the store's copy of the options is not needed.
    } else if (build) {
      const table = this.table;
      const transport = build({
        table,
        applyRemote: (changes) => {
          for (const change of changes) {
            if (table.apply(change)) this.clock.observe(change.version);
          }
        },
      });
      this.transport = transport;
      if (transport instanceof RedisTransport) {
        // Only when it cannot serve at all (nothing rebuilt yet and no Redis) does the store
        // say so: express-session then runs without sessions instead of failing requests.
        let available = true;
        transport.onAvailability = (now) => {
          if (now === available) return;
          available = now;
          this.emit(now ? 'connect' : 'disconnect');
        };
      }
      this.transportReady = transport.start();
      this.transportReady.catch((err: Error) => console.error(err.message));
    }
    this.sweeper = setInterval(() => this.table.sweep(), this.options.sweepInterval);
    this.sweeper.unref();
  }

  get(sid: string, cb?: Callback<SessionData | null>): Promise<SessionData | null> | undefined {
    return settle(cb, async () => {
      await this.ready();
      const json = this.table.get(sid);
      return json === undefined ? null : (JSON.parse(json) as SessionData);
    });
  }

  set(sid: string, session: object, cb?: Callback<void>): Promise<void> | undefined {
    return settle(cb, async () => {
      this.assertOpen();
      await this.transportReady;
      const expiresAt = this.expiresAt(session);
      if (expiresAt <= Date.now()) {
        await this.commit({ op: 'destroy', sid, version: this.clock.tick() });
        return;
      }
      const data = JSON.stringify(session);
      const bytes = Buffer.byteLength(data);
      if (bytes > this.options.maxSessionBytes) {
        throw new StickyMeshError(
          'ERR_STICKY_SESSION_TOO_LARGE',
          `sticky-mesh: session ${sid} is ${bytes} bytes as JSON, over maxSessionBytes ` +
            `(${this.options.maxSessionBytes}); nothing was written`,
        );
      }
      await this.commit({ op: 'set', sid, data, expiresAt, version: this.clock.tick() });
    });
  }

  destroy(sid: string, cb?: Callback<void>): Promise<void> | undefined {
    return settle(cb, async () => {
      this.assertOpen();
      await this.transportReady;
      await this.commit({ op: 'destroy', sid, version: this.clock.tick() });
    });
  }

  touch(sid: string, session: object, cb?: Callback<void>): Promise<void> | undefined {
    return settle(cb, async () => {
      if (this.options.disableTouch) return;
      this.assertOpen();
      await this.ready();
      // A touch of a session this replica does not hold (expired, destroyed) changes nothing.
      const current = this.table.get(sid) === undefined ? undefined : this.table.record(sid);
      if (!current) return;
      const expiresAt = this.expiresAt(session);
      const gain = expiresAt - current.expiresAt;
      if (gain < Math.min(this.options.touchAfter, (expiresAt - Date.now()) / 10)) return;
      // A touch only moves an expiry later and carries no data a later request could miss:
      // it is applied here at once and replicated without holding up the response.
      this.commit({ op: 'touch', sid, expiresAt, version: this.clock.tick() }).catch((err) =>
        debug('touch of %s not replicated: %s', sid, (err as Error).message),
      );
    });
  }

  /** Every live session, by id (as express-session's MemoryStore answers). */
  all(
    cb?: Callback<Record<string, SessionData>>,
  ): Promise<Record<string, SessionData>> | undefined {
    return settle(cb, async () => {
      await this.ready();
      const out: Record<string, SessionData> = {};
      for (const [sid, json] of this.table.live()) out[sid] = JSON.parse(json) as SessionData;
      return out;
    });
  }

  ids(cb?: Callback<string[]>): Promise<string[]> | undefined {
    return settle(cb, async () => {
      await this.ready();
      return [...this.table.live()].map(([sid]) => sid);
    });
  }

  length(cb?: Callback<number>): Promise<number> | undefined {
    return settle(cb, async () => {
      await this.ready();
      let n = 0;
      for (const _ of this.table.live()) n++;
      return n;
    });
  }

  /** Destroys every session (each destroy is replicated like any other). */
  clear(cb?: Callback<void>): Promise<void> | undefined {
    return settle(cb, async () => {
      this.assertOpen();
      await this.ready();
      const sids = [...this.table.live()].map(([sid]) => sid);
      await Promise.all(
        sids.map((sid) => this.commit({ op: 'destroy', sid, version: this.clock.tick() })),
      );
    });
  }

  /**
   * Stops the sweeper and, standalone with `multicast`, says goodbye to the other machines and
   * closes the socket. Reads keep working; writes fail with `ERR_STICKY_STORE_CLOSED`.
   * Idempotent. (The application calls it from its own shutdown; no signal is taken over.)
   */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      clearInterval(this.sweeper);
    }
    return this.transport?.close() ?? Promise.resolve();
  }

  /** Replication to other machines when this store runs it itself (standalone `multicast`). */
  multicastStats(): MulticastStats | undefined {
    return this.transport?.kind === 'multicast'
      ? (this.transport.stats() as MulticastStats)
      : undefined;
  }

  /** Replication through Redis when this store runs it itself (standalone `redis`). */
  redisStats(): RedisStats | undefined {
    return this.transport?.kind === 'redis' ? (this.transport.stats() as RedisStats) : undefined;
  }

  /** Resolves once this process holds the sessions it should (hub or other machines). */
  private async ready(): Promise<void> {
    await this.hub?.ready();
    await this.transportReady;
  }

  /**
   * Applies a local change; in a cluster it resolves once the hub has it. Replication
   * transports subscribe to the 'change' event.
   */
  private async commit(change: Change): Promise<void> {
    if (this.hub) await this.hub.submit(change);
    else {
      this.table.apply(change);
      this.transport?.publish(change);
    }
    this.emit('change', change);
  }

  private expiresAt(session: object): number {
    const expires = (session as SessionData | null)?.cookie?.expires;
    if (expires) {
      const at = expires instanceof Date ? expires.getTime() : Date.parse(expires);
      if (Number.isFinite(at)) return at;
    }
    return Date.now() + this.options.ttl;
  }

  private assertOpen(): void {
    if (this.closed) {
      throw new StickyMeshError('ERR_STICKY_STORE_CLOSED', 'sticky-mesh: the store is closed');
    }
  }
}

/**
 * Runs `work` and reports through the callback (always asynchronously, as a store must) or,
 * without one, through the returned promise.
 */
function settle<T>(cb: Callback<T> | undefined, work: () => Promise<T>): Promise<T> | undefined {
  const done = work();
  if (!cb) return done;
  // The callback runs on its own tick: an exception in it surfaces as one, not as a rejection.
  done.then(
    (value) => process.nextTick(cb, null, value),
    (err: unknown) => process.nextTick(cb, err),
  );
  return undefined;
}

function resolve(options: ReplicatedStoreOptions): Resolved {
  if (typeof options !== 'object' || options === null) {
    throw new InvalidOptionError('options', 'an object', options);
  }
  const known = new Set(Object.keys(DEFAULTS));
  for (const key of Object.keys(options)) {
    if (!known.has(key)) {
      throw new InvalidOptionError(
        key,
        'a known option (is it misspelt?)',
        (options as never)[key],
      );
    }
  }
  const out = { ...DEFAULTS, ...stripUndefined(options) } as Resolved;
  resolveTransport(out);
  integer('ttl', out.ttl, 1, 2 ** 47);
  integer('touchAfter', out.touchAfter, 0, MAX_MS);
  integer('maxSessionBytes', out.maxSessionBytes, 1, 64 * 1024 * 1024);
  integer('tombstoneTtl', out.tombstoneTtl, 1, MAX_MS);
  integer('sweepInterval', out.sweepInterval, 1, MAX_MS);
  boolean('disableTouch', out.disableTouch);
  return out;
}

function stripUndefined<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}
