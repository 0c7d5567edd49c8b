import { debug } from '../../../debug.js';
import { newNodeId } from '../../clock.js';
import { MissLookups } from '../../miss.js';
import type { Change } from '../../table.js';
import { forgetSessions, type ReplicaHost, type Transport } from '../../transport.js';
import { openClient, type RedisClientLike, type ResolvedRedisOptions } from './options.js';
import { MAX_IN_FLIGHT, WriteQueue } from './queue.js';
import {
  applyArgs,
  channelMessage,
  defineApply,
  newerThanRedis,
  noteNewest,
  ownMessagePrefix,
  type RecordVersions,
  readChannelMessage,
  readRecord,
  scanRecords,
} from './script.js';
import type { RedisStats } from './stats.js';
import { TurnPipeline } from './turn-pipeline.js';

/**
 * Replication between machines through Redis, for networks without multicast.
 *
 * Redis holds the authoritative shared copy: one hash per session (`t`, `c`, `n`: the version;
 * `e`: the expiry; `d`: the session JSON, absent in a tombstone), written only through a Lua
 * script that compares versions, so a stale write never overwrites a newer one and a tombstone
 * blocks a late write, atomically. The same script publishes each change it applied on the
 * cluster's channel, and every machine applies it to its local replica: reads stay local.
 *
 * Pub/sub rather than streams: a machine that was disconnected (or is new) rebuilds from the
 * records themselves by scanning, so it needs no replayable log; pub/sub keeps nothing in Redis
 * to trim, and a message reaches every machine once. A machine subscribes before it scans and
 * applies what arrived meanwhile after, so nothing published during the scan is missed.
 *
 * Every own write is held in a bounded queue (queue.ts) until Redis has answered it, in flight
 * included, so a Redis that is unreachable, or that stops answering while the connection still
 * looks up, costs bounded memory. While Redis is unreachable the machine serves from its
 * replica; on reconnect it sends the queue, rebuilds by scanning, and then writes back every
 * local record Redis lacks or holds older (so even writes dropped from a full queue reach Redis
 * and the other machines; a drop while connected makes the next drained moment rebuild).
 */

export type { RedisStats };

/**
 * One machine's link to Redis: a command connection (the Lua writes, scans) and a subscriber.
 * Owned by the cluster primary, or by a standalone store.
 */
export class RedisTransport implements Transport<RedisStats> {
  readonly kind = 'redis' as const;
  readonly machineId = newNodeId();
  private readonly ownPrefix = ownMessagePrefix(this.machineId);
  private readonly counters = {
    written: 0,
    stale: 0,
    received: 0,
    dropped: 0,
    rebuilds: 0,
    reconciled: 0,
    forgotten: 0,
    malformed: 0,
    errors: 0,
  };
  private state: RedisStats['state'] = 'idle';
  private cmd: RedisClientLike | undefined;
  private sub: RedisClientLike | undefined;
  private ownsCmd = false;
  private readonly writes: WriteQueue;
  /** The Lua writes of each turn, sent together (turn-pipeline.ts). */
  private readonly pipeline = new TurnPipeline(() => this.cmd as RedisClientLike);
  /** Reads on miss sent to Redis and not answered yet (at most MAX_IN_FLIGHT). */
  private reads = 0;
  /** Messages received while a rebuild scans: applied after it. */
  private held: Change[] | undefined;
  /** During a rebuild, the newest version heard per session (not to be written back). */
  private heard: Map<string, Change['version']> | undefined;
  /** The subscription is confirmed on the current subscriber connection. */
  private subscribed = false;
  private rebuilding: Promise<void> | undefined;
  /** Set at start and whenever a connection drops: the next ready rebuilds. */
  private stale = true;
  private readyResolve: (() => void) | undefined;
  private readonly readyPromise: Promise<void>;
  private starting: Promise<void> | undefined;
  private rebuiltOnce = false;
  /** When the link to Redis was lost (after a first rebuild), until the next rebuild. */
  private lostAt: number | undefined;
  /** Sessions written here since then: what may be written back after a long outage. */
  private readonly writtenWhileAway = new Set<string>();
  private closing: Promise<void> | undefined;
  private readonly channel: string;
  private readonly keyPrefix: string;
  private readonly listeners: [RedisClientLike, string, (...a: unknown[]) => void][] = [];
  /** Called when the store cannot serve at all (no state yet and no Redis), and when it can. */
  onAvailability: ((available: boolean) => void) | undefined;

  /** Where received changes go: the replica, then any read waiting for them. */
  private readonly host: ReplicaHost;
  private readonly misses: MissLookups;

  constructor(
    private readonly options: ResolvedRedisOptions,
    host: ReplicaHost,
  ) {
    this.misses = new MissLookups(host.table, options.readOnMissWait);
    this.host = this.misses.watching(host);
    this.channel = `${options.prefix}${options.cluster}:changes`;
    this.keyPrefix = `${options.prefix}${options.cluster}:s:`;
    this.readyPromise = new Promise((resolve) => {
      this.readyResolve = resolve;
    });
    this.writes = new WriteQueue({
      maxQueue: options.maxQueue,
      maxQueueBytes: options.maxQueueBytes,
      send: (change) => this.write(change),
      canSend: () => this.connected(),
      onDrop: () => {
        this.counters.dropped++;
        // Written back by a rebuild: after the reconnect, or once the queue has drained.
        this.stale = true;
      },
      onDrained: () => this.onReady(),
    });
  }

  /**
   * Connects, subscribes and rebuilds the replica from Redis; resolves once that is done, or
   * after `syncTimeout` (logged; the rebuild goes on in the background).
   */
  start(): Promise<void> {
    this.starting ??= this.open();
    return this.starting;
  }

  synced(): Promise<void> {
    return this.start();
  }

  private open(): Promise<void> {
    this.state = 'syncing';
    const o = this.options;
    try {
      this.cmd = o.client ?? openClient(o);
    } catch (err) {
      this.state = 'closed';
      return Promise.reject(err);
    }
    this.ownsCmd = o.client === undefined;
    defineApply(this.cmd);
    this.sub = this.cmd.duplicate();
    this.listen(this.sub, 'message', (channel, message) => this.onMessage(channel, message));
    this.listen(this.cmd, 'ready', () => this.onReady());
    for (const c of [this.cmd, this.sub]) {
      this.listen(c, 'error', (err) => {
        this.counters.errors++;
        debug('redis: %s', (err as Error).message);
      });
      this.listen(c, 'end', () => this.onLost(c));
      this.listen(c, 'close', () => this.onLost(c));
    }
    // Subscribe on every (re)connection of the subscriber (a repeated SUBSCRIBE is harmless) and
    // rebuild only once it is confirmed: what is published from then on is never missed.
    const subscribe = () => {
      (this.sub as RedisClientLike).subscribe(this.channel).then(
        () => {
          this.subscribed = true;
          this.onReady();
        },
        (err: Error) => debug('redis: subscribe failed: %s', err.message),
      );
    };
    this.listen(this.sub, 'ready', subscribe);
    if (this.sub.status === 'ready') subscribe();
    const timer = setTimeout(() => {
      if (!this.rebuiltOnce) {
        o.logger.warn(
          `sticky-mesh: no session state from Redis in ${o.syncTimeout} ms; serving with what ` +
            'this machine holds, and still trying',
        );
        this.onAvailability?.(false);
        this.resolveReady();
      }
    }, o.syncTimeout);
    timer.unref();
    return this.readyPromise;
  }

  /** Writes a local change to Redis, held in the bounded queue until Redis has answered it. */
  publish(change: Change): void {
    if (this.state === 'closed' || this.state === 'idle') return;
    if (this.lostAt !== undefined) this.writtenWhileAway.add(change.sid);
    this.writes.push(change);
  }

  stats(): RedisStats {
    return {
      machineId: this.machineId,
      state: this.state,
      connected: this.connected(),
      ...this.counters,
      queued: this.writes.length,
      queuedBytes: this.writes.bytes,
      readOnMiss: { ...this.misses.counters },
    };
  }

  /**
   * Read on miss: reads the session's record from Redis (the authoritative copy) and resolves
   * once it is applied here, Redis said it has none, or `readOnMissWait` passed; see
   * replication/miss.ts. While Redis is unreachable the read does not wait.
   */
  fetch(sid: string): Promise<void> {
    // Unanswered reads are bounded like writes: a Redis that stops answering does not pile
    // them up in ioredis (the read then does not wait).
    if (!this.connected() || this.reads >= MAX_IN_FLIGHT) return Promise.resolve();
    const read = () => {
      this.reads++;
      readRecord(this.cmd as RedisClientLike, this.keyPrefix, sid)
        .then(
          (change) => (change ? this.host.applyRemote([change]) : this.misses.notFound(sid)),
          (err: Error) => debug('redis: read of %s failed: %s', sid, err.message),
        )
        .finally(() => this.reads--);
    };
    return this.misses.lookup(sid, read, { askEvery: 0, rememberSilence: false });
  }

  /** Closes the connections it opened (a client passed in stays open). Idempotent. */
  close(): Promise<void> {
    this.closing ??= (async () => {
      this.state = 'closed';
      this.writes.close();
      this.misses.close();
      this.resolveReady();
      for (const [client, event, fn] of this.listeners) client.off(event, fn);
      const quit = async (c: RedisClientLike | undefined) => {
        if (!c) return;
        try {
          await Promise.race([c.quit(), new Promise((r) => setTimeout(r, 1000).unref())]);
        } catch {
          // already gone
        }
        c.disconnect();
      };
      // Let writes already sent finish before the connection goes.
      await quit(this.sub);
      if (this.ownsCmd) await quit(this.cmd);
    })();
    return this.closing;
  }

  // ---- internals -------------------------------------------------------------------------------

  private listen(client: RedisClientLike, event: string, fn: (...a: unknown[]) => void): void {
    client.on(event, fn);
    this.listeners.push([client, event, fn]);
  }

  private connected(): boolean {
    return this.cmd?.status === 'ready' && this.sub?.status === 'ready' && this.subscribed;
  }

  private write(change: Change): Promise<number> {
    const message = channelMessage(this.machineId, change);
    const { tombstoneTtl } = this.options;
    const args = applyArgs(this.keyPrefix, change, tombstoneTtl, this.channel, message);
    return this.pipeline.apply(args).then((applied) => {
      this.counters.written++;
      if (applied !== 1) this.counters.stale++;
      return applied;
    });
  }

  private onMessage(channel: unknown, message: unknown): void {
    if (channel !== this.channel || this.state === 'closed') return;
    const change = readChannelMessage(message, this.machineId, this.ownPrefix);
    if (change === 'own') return;
    if (!change) {
      this.counters.malformed++;
      return;
    }
    this.counters.received++;
    if (this.heard) noteNewest(this.heard, change);
    if (this.held) this.held.push(change);
    else this.host.applyRemote([change]);
  }

  private onLost(client: RedisClientLike): void {
    if (client === this.sub) this.subscribed = false;
    this.stale = true;
    if (this.rebuiltOnce) this.lostAt ??= Date.now();
    if (this.state === 'synced') {
      this.options.logger.warn(
        "sticky-mesh: Redis connection lost; serving from this machine's replica, queueing writes",
      );
      this.state = 'syncing';
    }
  }

  /** Both connections are up (first time or again): send the queue, rebuild, reconcile. */
  private onReady(): void {
    if (this.state === 'closed' || !this.connected() || !this.stale || this.rebuilding) return;
    this.stale = false;
    this.rebuilding = this.rebuild()
      .catch((err: Error) => {
        this.counters.errors++;
        this.options.logger.warn(`sticky-mesh: rebuild from Redis failed: ${err.message}`);
      })
      .finally(() => {
        this.rebuilding = undefined;
        // A drop during the rebuild (or a failed one): again, once connected.
        if (this.state === 'syncing') this.stale = true;
        if (this.stale) setTimeout(() => this.onReady(), 200).unref();
      });
  }

  private async rebuild(): Promise<void> {
    this.state = 'syncing';
    this.held = [];
    try {
      // Own writes made while away go first: the scan then sees them. (A failure leaves them
      // held for the next attempt.)
      await this.writes.flush();
      this.heard = new Map();
      const inRedis = await scanRecords(this.cmd as RedisClientLike, this.keyPrefix, (changes) =>
        this.host.applyRemote(changes),
      );
      const held = this.held;
      this.held = undefined;
      this.host.applyRemote(held);
      // Away longer than Redis keeps tombstones: only what was written here meanwhile goes back.
      const away = this.lostAt === undefined ? 0 : Date.now() - this.lostAt;
      const long = away >= this.options.tombstoneTtl;
      await this.writeBack(inRedis, long ? this.writtenWhileAway : undefined);
      this.lostAt = undefined;
      this.writtenWhileAway.clear();
      if ((this.state as RedisStats['state']) === 'closed') return;
      this.counters.rebuilds++;
      this.state = 'synced';
      if (!this.rebuiltOnce) {
        this.rebuiltOnce = true;
        this.options.logger.info(
          `sticky-mesh: sessions rebuilt from Redis (${inRedis.size} records)`,
        );
      }
      this.onAvailability?.(true);
      this.resolveReady();
    } finally {
      this.heard = undefined;
      if (this.held) {
        const held = this.held;
        this.held = undefined;
        this.host.applyRemote(held);
      }
    }
  }

  /**
   * Writes back whatever this machine holds newer than Redis (writes dropped from a full queue,
   * made while the rebuild ran, or lost when Redis restarted empty), so Redis and every machine
   * end up the same. What came from Redis itself (scanned, or heard during the rebuild) is not
   * sent again. A session is written back with its touched expiry, not its last save's.
   */
  private async writeBack(
    inRedis: RecordVersions,
    onlyThese: ReadonlySet<string> | undefined,
  ): Promise<void> {
    const pending: Promise<unknown>[] = [];
    const gone: string[] = [];
    for (const out of newerThanRedis(this.host.table, inRedis, this.heard, onlyThese, gone)) {
      if (this.state === 'closed') return;
      this.counters.reconciled++;
      pending.push(this.write(out));
      // Pipelined, in batches no larger than the window of unanswered writes.
      if (pending.length >= MAX_IN_FLIGHT) await Promise.all(pending.splice(0));
    }
    await Promise.all(pending);
    if (gone.length === 0) return;
    const n = forgetSessions(this.host, gone);
    this.counters.forgotten += n;
    this.options.logger.warn(
      `sticky-mesh: away from Redis longer than tombstoneTtl: dropped ${n} sessions it no longer holds`,
    );
  }

  private resolveReady(): void {
    this.readyResolve?.();
    this.readyResolve = undefined;
  }
}
