import { EventEmitter } from 'node:events';
import { createRequire } from 'node:module';
import { debug } from '../debug.js';
import { describe, StickyMeshError } from '../errors.js';
import { Clock, newNodeId, type Version } from './clock.js';
import { sidProblem } from './limits.js';
import {
  type ReplicatedStoreOptions,
  type ResolvedStoreOptions,
  resolveStoreOptions,
} from './store-options.js';
import type { Change, SessionTable } from './table.js';
import type { Transport } from './transport.js';
import { openReplica } from './transports/choose.js';
import type { MulticastStats } from './transports/multicast/transport.js';
import type { RedisStats } from './transports/redis/transport.js';
import { isSessionIdLike } from './wire.js';

export type { ReplicatedStoreOptions };

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
 * late save, and a `touch` never rewrites data. In a sticky-mesh worker the replica is the
 * process's, fed over IPC by the primary's hub; standalone it is the store's own, replicated to
 * other machines over multicast or Redis when its options say so, or a plain in-process store
 * (see transports/choose.ts). After each local write it emits `'change'` with the change.
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
  private readonly options: ResolvedStoreOptions;
  private readonly clock: Clock;
  private readonly table: SessionTable;
  private readonly counters: { versionsAhead: number };
  /**
   * How writes reach the other replicas: the hub in a sticky-mesh worker, multicast or Redis
   * standalone, none for a plain in-process store.
   */
  private readonly transport: Transport | undefined;
  /** Settles once local writes may go out (rejects if the transport cannot start). */
  private readonly started: Promise<void> | undefined;
  private readonly sweeper: NodeJS.Timeout;
  private closed = false;

  constructor(options: ReplicatedStoreOptions = {}) {
    super();
    this.options = resolveStoreOptions(options);
    this.nodeId = newNodeId();
    this.clock = new Clock(this.nodeId);
    const replica = openReplica(this.options, this.clock);
    this.table = replica.table;
    this.counters = replica.counters;
    const transport = replica.transport;
    this.transport = transport;
    if (transport) {
      // Only when it cannot serve at all (nothing rebuilt yet and no Redis) does the store
      // say so: express-session then runs without sessions instead of failing requests.
      let available = true;
      transport.onAvailability = (now) => {
        if (now === available) return;
        available = now;
        this.emit(now ? 'connect' : 'disconnect');
      };
      this.started = transport.start();
      const { logger } = this.options;
      this.started.catch((err: Error) => logger.error(err.message));
    }
    this.sweeper = setInterval(() => this.table.sweep(), this.options.sweepInterval);
    this.sweeper.unref();
  }

  get(sid: string, cb?: Callback<SessionData | null>): Promise<SessionData | null> | undefined {
    return settle(cb, async () => {
      await this.ready();
      let json = this.table.get(sid);
      // No record at all (not even a tombstone): it may not have arrived yet from another
      // machine. Ask the cluster, bounded (read on miss).
      const fetch = this.transport?.fetch;
      if (json === undefined && fetch && this.table.record(sid) === undefined) {
        if (isSessionIdLike(sid)) {
          await fetch.call(this.transport, sid);
          json = this.table.get(sid);
        }
      }
      return json === undefined ? null : (JSON.parse(json) as SessionData);
    });
  }

  set(sid: string, session: object, cb?: Callback<void>): Promise<void> | undefined {
    return settle(cb, async () => {
      this.assertSid(sid);
      this.assertOpen();
      await this.started;
      const expiresAt = this.expiresAt(session);
      if (expiresAt <= Date.now()) {
        await this.commit({ op: 'destroy', sid, version: this.version(sid) });
        return;
      }
      const data = JSON.stringify(session);
      // UTF-8 takes at most 3 bytes per UTF-16 code unit: most sessions need no counting.
      const bytes = data.length * 3 <= this.options.maxSessionBytes ? 0 : Buffer.byteLength(data);
      if (bytes > this.options.maxSessionBytes) {
        throw new StickyMeshError(
          'ERR_STICKY_SESSION_TOO_LARGE',
          `sticky-mesh: session ${sid} is ${bytes} bytes as JSON, over maxSessionBytes ` +
            `(${this.options.maxSessionBytes}); nothing was written`,
        );
      }
      await this.commit({ op: 'set', sid, data, expiresAt, version: this.version(sid) });
    });
  }

  destroy(sid: string, cb?: Callback<void>): Promise<void> | undefined {
    return settle(cb, async () => {
      this.assertSid(sid);
      this.assertOpen();
      await this.started;
      await this.commit({ op: 'destroy', sid, version: this.version(sid) });
    });
  }

  touch(sid: string, session: object, cb?: Callback<void>): Promise<void> | undefined {
    return settle(cb, async () => {
      this.assertSid(sid);
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
      this.commit({ op: 'touch', sid, expiresAt, version: this.version(sid) }).catch((err) =>
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
        sids.map((sid) => this.commit({ op: 'destroy', sid, version: this.version(sid) })),
      );
    });
  }

  /**
   * Stops the sweeper and, standalone with `multicast` or `redis`, closes the link to the other
   * machines (multicast says goodbye first). Reads keep working; writes fail with `ERR_STICKY_STORE_CLOSED`.
   * Idempotent. (The application calls it from its own shutdown; no signal is taken over.)
   */
  close(): Promise<void> {
    if (!this.closed) {
      this.closed = true;
      clearInterval(this.sweeper);
    }
    return this.transport?.close() ?? Promise.resolve();
  }

  /**
   * Replication to other machines when this store runs it itself (standalone `multicast`), with
   * `versionsAhead`: changes received stamped more than a minute ahead of this machine's clock.
   */
  multicastStats(): (MulticastStats & { versionsAhead: number }) | undefined {
    return this.transport?.kind === 'multicast'
      ? { ...(this.transport.stats() as MulticastStats), ...this.counters }
      : undefined;
  }

  /** Replication through Redis when this store runs it itself (standalone `redis`); as above. */
  redisStats(): (RedisStats & { versionsAhead: number }) | undefined {
    return this.transport?.kind === 'redis'
      ? { ...(this.transport.stats() as RedisStats), ...this.counters }
      : undefined;
  }

  /** Resolves once this process holds the sessions it should (hub or other machines). */
  private async ready(): Promise<void> {
    await this.transport?.synced();
  }

  /**
   * The version of a local write to `sid`: after every version this replica holds of it, so the
   * write replaces what was read even if a clock running ahead stamped that.
   */
  private version(sid: string): Version {
    return this.clock.tickAfter(this.table.versionOf(sid));
  }

  /**
   * Applies a local change and hands it to the transport; in a sticky-mesh worker it resolves
   * once the hub has it. Then emits `'change'` with it, for whoever observes the store. A change
   * that does not win here is never reported as done.
   */
  private async commit(change: Change): Promise<void> {
    if (!this.table.apply(change)) {
      throw new StickyMeshError(
        'ERR_STICKY_WRITE_REFUSED',
        `sticky-mesh: the ${change.op} of session ${change.sid} was not newer than the record ` +
          'it replaces; nothing was written',
      );
    }
    await this.transport?.publish(change);
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

  /**
   * Refuses, before anything is applied, a session id that some replica or transport would
   * refuse (limits.ts): a write is applied everywhere or nowhere.
   */
  private assertSid(sid: unknown): void {
    const problem = sidProblem(sid);
    if (problem !== undefined) {
      throw new StickyMeshError(
        'ERR_STICKY_INVALID_SESSION_ID',
        `sticky-mesh: session id ${describe(sid)} ${problem}; nothing was written`,
      );
    }
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
