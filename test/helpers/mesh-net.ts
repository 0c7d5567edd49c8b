/**
 * An in-memory network for {@link MeshNode}: every node has its own session table, and what one
 * node sends reaches the others asynchronously (on timers, so vitest's fake timers drive it),
 * each delivery lost, duplicated or delayed (reordered) at random from a seeded PRNG, so a run
 * is reproducible. Messages travel in their binary form (encoded, then decoded at each
 * receiver) and state transfers call the serving node's `snapshot()`, as the real transport
 * does.
 */
import { vi } from 'vitest';
import { Clock } from '../../src/replication/clock.js';
import { type Change, SessionTable } from '../../src/replication/table.js';
import {
  decodeChange,
  decodeMessage,
  encodeChange,
  encodeMessage,
  type MeshMessage,
} from '../../src/replication/transports/multicast/codec.js';
import { MeshNode } from '../../src/replication/transports/multicast/mesh.js';
import {
  MESH_TIMINGS,
  type MeshIO,
  type MeshTimings,
  type PeerAddress,
  type StateTransfer,
} from '../../src/replication/transports/multicast/peer.js';

/** mulberry32: a small seeded PRNG, uniform in [0, 1). */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export const HOUR = 3_600_000;

/** Test timings: fast heartbeats so that membership tests take little fake time. */
export const TEST_TIMINGS: Readonly<MeshTimings> = Object.freeze({
  ...MESH_TIMINGS,
  heartbeatInterval: 100,
  failureTimeout: 600,
  joinTimeout: 200,
  syncTimeout: 3000,
});

/** One datagram on its way from one node to another. */
export interface Delivery {
  readonly from: MeshHandle;
  readonly to: MeshHandle;
  readonly msg: MeshMessage;
}

export interface NetOptions {
  /** PRNG seed (default 1). */
  seed?: number;
  /** Probability that a delivery (one sender to one receiver) is lost. */
  loss?: number;
  /** Probability that a delivery arrives twice. */
  duplicate?: number;
  /** Probability that a delivery is held back 1..maxDelay ms (overtaken by later ones). */
  reorder?: number;
  maxDelay?: number;
  /** Timings of every node (merged over {@link TEST_TIMINGS}). */
  timings?: Partial<MeshTimings>;
  tombstoneTtl?: number;
  /** Changes per state-transfer chunk (a timer tick between chunks). */
  chunkSize?: number;
}

/** A state transfer attempted over the network. */
export interface FetchRecord {
  readonly from: string;
  readonly to: string;
  ok: boolean | undefined;
}

/** One node of the network: a MeshNode, its table and clock, and what it logged. */
export class MeshHandle {
  readonly node: MeshNode;
  readonly table: SessionTable;
  readonly clock: Clock;
  readonly address: string;
  readonly port: number;
  readonly logs: string[] = [];
  /** False once killed or closed: nothing reaches it or comes from it any more. */
  alive = true;
  /** Whether it answers state-transfer requests (from a given node). */
  serves: (requester: MeshHandle) => boolean = () => true;

  constructor(
    readonly net: MeshNet,
    readonly id: string,
    readonly index: number,
    timings: MeshTimings,
    tombstoneTtl: number,
  ) {
    const now = () => Date.now();
    this.address = `10.0.0.${index + 1}`;
    this.port = 7000 + index;
    this.table = new SessionTable({ tombstoneTtl, now });
    this.clock = new Clock(id, now);
    const table = this.table;
    const clock = this.clock;
    const io: MeshIO = {
      port: this.port,
      send: (msg) => net.send(this, msg),
      fetchState: (peer, sink) => net.fetchState(this, peer, sink),
    };
    this.node = new MeshNode(
      id,
      {
        table,
        applyRemote: (changes) => {
          for (const c of changes) if (table.apply(c)) clock.observe(c.version);
        },
      },
      io,
      timings,
      {
        info: (m) => this.logs.push(`info ${m}`),
        warn: (m) => this.logs.push(`warn ${m}`),
      },
      now,
    );
  }

  /** A local write: applied to this node's table, then published. */
  write(change: Change): Change {
    this.table.apply(change);
    this.node.publish(change);
    return change;
  }

  set(sid: string, data: string, ttl = HOUR): Change {
    return this.write({
      op: 'set',
      sid,
      data,
      expiresAt: Date.now() + ttl,
      version: this.clock.tick(),
    });
  }

  destroy(sid: string): Change {
    return this.write({ op: 'destroy', sid, version: this.clock.tick() });
  }

  touch(sid: string, ttl = HOUR): Change {
    return this.write({
      op: 'touch',
      sid,
      expiresAt: Date.now() + ttl,
      version: this.clock.tick(),
    });
  }

  peerIds(): string[] {
    return this.node
      .peerList()
      .map((p) => p.id)
      .sort();
  }

  /** Every record, tombstones and pending touches included, in a comparable form. */
  state(): string {
    return [...this.table.changes()]
      .map((c) => JSON.stringify(c))
      .sort()
      .join('\n');
  }

  /** Live sessions, sorted by id. */
  live(): [string, string][] {
    return [...this.table.live()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  }
}

export class MeshNet {
  readonly nodes: MeshHandle[] = [];
  readonly rand: () => number;
  readonly fetches: FetchRecord[] = [];
  /** Every message sent, in order (for assertions on the protocol). */
  readonly sent: { from: string; msg: MeshMessage }[] = [];
  readonly stats = { deliveries: 0, lost: 0, filtered: 0, duplicated: 0, delayed: 0 };
  loss: number;
  duplicate: number;
  reorder: number;
  maxDelay: number;
  /** Return false to drop a delivery (applied to what random loss let through). */
  filter: (d: Delivery) => boolean = () => true;
  /** Return true to make a state transfer fail (connection refused). */
  failFetch: (from: MeshHandle, to: MeshHandle, attempt: number) => boolean = () => false;
  private readonly timings: MeshTimings;
  private readonly tombstoneTtl: number;
  private readonly chunkSize: number;

  constructor(options: NetOptions = {}) {
    this.rand = prng(options.seed ?? 1);
    this.loss = options.loss ?? 0;
    this.duplicate = options.duplicate ?? 0;
    this.reorder = options.reorder ?? 0;
    this.maxDelay = options.maxDelay ?? 20;
    this.timings = { ...TEST_TIMINGS, ...options.timings };
    this.tombstoneTtl = options.tombstoneTtl ?? 600_000;
    this.chunkSize = options.chunkSize ?? 64;
  }

  /** Creates a node; `start` (default) makes it join the group at once. */
  add(start = true): MeshHandle {
    const index = this.nodes.length;
    let id = '';
    while (id.length < 16) id += Math.floor(this.rand() * 16).toString(16);
    const h = new MeshHandle(this, id, index, this.timings, this.tombstoneTtl);
    this.nodes.push(h);
    if (start) void h.node.start();
    return h;
  }

  /** Nodes still on the network. */
  live(): MeshHandle[] {
    return this.nodes.filter((n) => n.alive);
  }

  /** Cuts a node off without a word (a crash, a pulled cable); its timers are stopped. */
  kill(h: MeshHandle): void {
    h.alive = false;
    h.node.close(); // its leave goes nowhere: it is already off the network
  }

  /** A clean shutdown: the node says goodbye, then leaves the network. */
  close(h: MeshHandle): void {
    h.node.leave();
    h.node.close();
    h.alive = false;
  }

  /** A clean shutdown that lingers `ms` (answering NACKs) between goodbye and leaving. */
  async closeLingering(h: MeshHandle, ms: number): Promise<void> {
    h.node.leave();
    await this.run(ms);
    h.node.close();
    h.alive = false;
  }

  /** Stops every node's timers (for afterEach). */
  closeAll(): void {
    for (const h of this.nodes) {
      h.alive = false;
      h.node.close();
    }
  }

  /** Advances fake time (timers and the promises they settle). */
  async run(ms: number): Promise<void> {
    await vi.advanceTimersByTimeAsync(ms);
  }

  /** Whether every live node (or those given) holds the same records, by digest and content. */
  converged(among: MeshHandle[] = this.live()): boolean {
    const [first, ...rest] = among;
    if (!first) return true;
    const state = first.state();
    return rest.every((h) => h.table.digest === first.table.digest && h.state() === state);
  }

  /**
   * Advances time in steps until the nodes converge, at most `limit` ms; returns the ms it
   * took, or -1 if they did not.
   */
  async settle(limit: number, step = 50, among?: MeshHandle[]): Promise<number> {
    for (let t = 0; t <= limit; t += step) {
      if (this.converged(among)) return t;
      await this.run(step);
    }
    return this.converged(among) ? limit : -1;
  }

  /** How many messages of a kind were sent (by one node, or by any). */
  count(kind: MeshMessage['k'], from?: MeshHandle): number {
    return this.sent.filter((s) => s.msg.k === kind && (!from || s.from === from.id)).length;
  }

  // ---- MeshIO ---------------------------------------------------------------------------------

  send(from: MeshHandle, msg: MeshMessage): void {
    if (!from.alive) return;
    this.sent.push({ from: from.id, msg });
    const [kind, body] = encodeMessage(msg);
    for (const to of this.nodes) {
      if (!to.alive) continue;
      // The sender hears its own datagram back (multicast loopback), never lost.
      if (to !== from) {
        if (this.rand() < this.loss) {
          this.stats.lost++;
          continue;
        }
        if (!this.filter({ from, to, msg })) {
          this.stats.filtered++;
          continue;
        }
      }
      const copies = to !== from && this.rand() < this.duplicate ? 2 : 1;
      if (copies === 2) this.stats.duplicated++;
      for (let i = 0; i < copies; i++) {
        let delay = 0;
        if (to !== from && this.rand() < this.reorder) {
          delay = 1 + Math.floor(this.rand() * this.maxDelay);
          this.stats.delayed++;
        }
        setTimeout(() => {
          if (!to.alive) return;
          const decoded = decodeMessage(kind, Buffer.from(body));
          if (!decoded) throw new Error(`undecodable ${msg.k} message`);
          this.stats.deliveries++;
          to.node.receive({ id: from.id, address: from.address }, decoded);
        }, delay);
      }
    }
  }

  async fetchState(
    requester: MeshHandle,
    peer: PeerAddress,
    sink: (changes: Change[]) => void,
  ): Promise<StateTransfer> {
    const server = this.nodes.find((n) => n.id === peer.id);
    const record: FetchRecord = { from: requester.id, to: peer.id, ok: undefined };
    const attempt = this.fetches.length;
    this.fetches.push(record);
    const fail = (why: string): Error => {
      record.ok = false;
      return new Error(why);
    };
    await tick(); // connecting
    if (!server?.alive || !requester.alive) throw fail('connection refused');
    if (server.port !== peer.port || server.address !== peer.address) {
      throw fail('connection refused');
    }
    if (!server.serves(requester) || this.failFetch(requester, server, attempt)) {
      throw fail('connection refused');
    }
    const { vector, changes } = server.node.snapshot();
    const covered = new Map(vector);
    let batch: Change[] = [];
    for (const change of changes) {
      const bytes = encodeChange(change);
      batch.push((decodeChange(bytes) as [Change, number])[0]);
      if (batch.length >= this.chunkSize) {
        await tick();
        if (!requester.alive || !server.alive) throw fail('connection reset');
        sink(batch);
        batch = [];
      }
    }
    await tick();
    if (!requester.alive || !server.alive) throw fail('connection reset');
    if (batch.length > 0) sink(batch);
    record.ok = true;
    return { vector: covered };
  }
}

function tick(): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, 0));
}
