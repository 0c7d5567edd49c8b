import type { Change } from '../../table.js';
import type { ReplicaHost } from '../../transport.js';
import type { MeshMessage } from './codec.js';
import {
  coveredVector,
  digestVerdict,
  MESH_TIMINGS,
  type MeshCounters,
  type MeshIO,
  type MeshLogger,
  type MeshTimings,
  newCounters,
  newPeer,
  noGaps,
  type Peer,
  type PeerAddress,
  type PeerInfo,
  peerInfo,
} from './peer.js';
import { StateFetch } from './state-fetch.js';
import { Inbox, Outbox } from './stream.js';

/**
 * Replication between machines, without the sockets: membership (join, greet, heartbeat,
 * failure timeout, leave), numbered delta datagrams with NACK repair, full state transfer to
 * joiners, and digest comparison to catch replicas that drifted apart. The delta stream itself
 * is stream.ts; transport.ts gives the node a UDP socket and a TCP server (transfer.ts); tests
 * give it an in-memory network with loss.
 *
 * Delivery is in order per sender: a datagram after a gap waits until the gap is repaired, so a
 * change split across datagrams is reassembled from consecutive ones. The session table is
 * order-independent anyway (last writer wins by version), which is what makes repair, retries
 * and full transfers that overlap with live traffic safe: applying a change twice is harmless.
 */

type State = 'idle' | 'joining' | 'syncing' | 'synced' | 'leaving' | 'closed';

export class MeshNode {
  readonly counters: MeshCounters = newCounters();
  private state: State = 'idle';
  private readonly peers = new Map<string, Peer>();
  private readonly outbox: Outbox;
  private readonly inbox: Inbox;
  private heartbeat: NodeJS.Timeout | undefined;
  private joinTimer: NodeJS.Timeout | undefined;
  private syncDeadline: NodeJS.Timeout | undefined;
  private readyResolve: (() => void) | undefined;
  private readonly readyPromise: Promise<void>;
  private greeters: PeerAddress[] = [];
  private lastOwnDigest = 0;
  /** State transfers from peers, and peers back after a long silence (state-fetch.ts). */
  private readonly fetcher: StateFetch;

  constructor(
    readonly id: string,
    private readonly host: ReplicaHost,
    private readonly io: MeshIO,
    private readonly timings: MeshTimings = MESH_TIMINGS,
    private readonly logger: MeshLogger = { info() {}, warn() {} },
    private readonly now: () => number = Date.now,
  ) {
    const send = (msg: MeshMessage) => io.send(msg);
    this.outbox = new Outbox(send, this.counters, timings.retransmitBuffer, now);
    this.inbox = new Inbox({
      counters: this.counters,
      timings,
      send,
      applyRemote: (changes) => host.applyRemote(changes),
      isMember: (id) => this.peers.has(id),
      caughtUp: (peer) => this.left(peer),
    });
    this.fetcher = new StateFetch(host, io, this.counters, logger);
    this.readyPromise = new Promise((resolve) => {
      this.readyResolve = resolve;
    });
  }

  /** Resolves once this node holds the cluster's state (or gave up waiting, logged). */
  ready(): Promise<void> {
    return this.readyPromise;
  }

  get synced(): boolean {
    return this.state === 'synced';
  }

  /** Joins the group: announce, wait for a greeting, fetch the state from the greeter. */
  start(): Promise<void> {
    if (this.state !== 'idle') return this.readyPromise;
    this.state = 'joining';
    let attempts = 0;
    const announce = () => {
      if (this.state !== 'joining') return;
      this.io.send({ k: 'join', seq: this.outbox.seq, port: this.io.port });
      attempts++;
      const step = Math.max(1, Math.floor(this.timings.joinTimeout / 4));
      if (attempts * step >= this.timings.joinTimeout) {
        this.joinTimer = setTimeout(() => this.alone(), step);
      } else {
        this.joinTimer = setTimeout(announce, step);
      }
    };
    announce();
    this.heartbeat = setInterval(() => this.tick(), this.timings.heartbeatInterval);
    this.heartbeat.unref();
    this.syncDeadline = setTimeout(() => {
      if (this.state === 'syncing') {
        this.logger.warn(
          `sticky-mesh: no session state transfer completed in ${this.timings.syncTimeout} ms; ` +
            'serving with what has arrived, and still trying',
        );
        this.resolveReady();
      }
    }, this.timings.syncTimeout);
    this.syncDeadline.unref();
    return this.readyPromise;
  }

  /** Sends a local change to every other node (batched with others of the same tick). */
  publish(change: Change, encoded?: Buffer): void {
    if (this.state === 'closed' || this.state === 'idle') return;
    this.outbox.add(change, encoded);
  }

  /** A message from the group, already authenticated. */
  receive(from: { id: string; address: string }, msg: MeshMessage): void {
    if (from.id === this.id || this.state === 'closed' || this.state === 'idle') return;
    let peer = this.peers.get(from.id);
    if (this.state === 'leaving') {
      if (peer && msg.k === 'nack' && msg.to === this.id) {
        this.counters.nacksReceived++;
        this.outbox.retransmit(peer.id, msg.ranges);
      }
      return;
    }
    if (msg.k === 'leave') {
      if (peer) this.onLeave(peer, msg.seq);
      return;
    }
    if (!peer) {
      peer = newPeer(from.id, from.address, this.state === 'synced' ? 1 : undefined);
      this.peers.set(from.id, peer);
      this.logger.info(`sticky-mesh: peer ${from.id} (${from.address}) joined`);
      this.fetcher.heard(from.id, this.now());
    }
    peer.lastSeen = this.now();
    peer.address = from.address;
    switch (msg.k) {
      case 'join':
        peer.port = msg.port;
        this.inbox.seen(peer, msg.seq);
        if (this.state === 'synced') {
          this.io.send({ k: 'greet', to: peer.id, seq: this.outbox.seq, port: this.io.port });
        }
        break;
      case 'greet':
        peer.port = msg.port;
        this.inbox.seen(peer, msg.seq);
        if (msg.to === this.id && (this.state === 'joining' || this.state === 'syncing')) {
          this.greeters.push({ id: peer.id, address: peer.address, port: peer.port });
          if (this.state === 'joining') this.beginSync();
        }
        break;
      case 'heartbeat':
        peer.port = msg.port;
        peer.synced = msg.synced;
        peer.complete = msg.complete === true;
        this.inbox.seen(peer, msg.seq);
        this.compareDigest(peer, msg.digest);
        break;
      case 'data':
        this.inbox.onData(peer, msg);
        break;
      case 'nack':
        if (msg.to === this.id) {
          this.counters.nacksReceived++;
          this.outbox.retransmit(peer.id, msg.ranges);
        }
        break;
      case 'gone':
        if (msg.to === this.id) {
          this.logger.info(
            `sticky-mesh: peer ${peer.id} no longer holds changes up to ${msg.seq}; fetching its state`,
          );
          void this.transferFrom(peer);
        }
        break;
      case 'query':
        if (this.state === 'synced')
          this.outbox.answer(msg.sid, this.host.table.changesOf(msg.sid));
        break;
    }
  }

  /** This node's state for a joiner: what it covers, and every record. */
  snapshot(): { vector: Map<string, number>; changes: Iterable<Change> } {
    const vector = new Map([[this.id, this.outbox.seq], ...coveredVector(this.peers.values())]);
    return { vector, changes: this.host.table.changes() };
  }

  /**
   * Says goodbye: sends what is pending and a leave message naming the last sequence number,
   * then, until `close()`, only answers NACKs, so a peer that lost the last datagrams can still
   * get them. Returns whether there is anyone to linger for.
   */
  leave(): boolean {
    if (this.state === 'closed' || this.state === 'idle' || this.state === 'leaving') return false;
    this.outbox.flush();
    this.io.send({ k: 'leave', seq: this.outbox.seq });
    this.state = 'leaving';
    clearInterval(this.heartbeat);
    clearTimeout(this.joinTimer);
    return this.outbox.seq > 0 && this.peers.size > 0;
  }

  /** Stops every timer (after `leave()`, or without a goodbye). Idempotent. */
  close(): void {
    if (this.state === 'closed') return;
    this.state = 'closed';
    clearInterval(this.heartbeat);
    clearTimeout(this.joinTimer);
    clearTimeout(this.syncDeadline);
    for (const peer of this.peers.values()) clearTimeout(peer.nackTimer);
    this.peers.clear();
    this.resolveReady();
  }

  peerList(): PeerInfo[] {
    return [...this.peers.values()].map(peerInfo);
  }

  get lastSeq(): number {
    return this.outbox.seq;
  }

  get phase(): State {
    return this.state;
  }

  // ---- membership ----------------------------------------------------------------------------

  private tick(): void {
    if (this.state === 'closed') return;
    const digest = this.host.table.digest;
    this.io.send({
      k: 'heartbeat',
      seq: this.outbox.seq,
      port: this.io.port,
      synced: this.state === 'synced',
      complete: noGaps(this.peers.values()),
      digest,
      count: this.host.table.size,
    });
    this.lastOwnDigest = digest;
    const deadline = this.now() - this.timings.failureTimeout;
    for (const peer of [...this.peers.values()]) {
      if (peer.lastSeen < deadline) {
        this.drop(peer);
        this.fetcher.lost(peer.id, peer.lastSeen);
        this.logger.warn(
          `sticky-mesh: peer ${peer.id} (${peer.address}) timed out after ` +
            `${this.timings.failureTimeout} ms; dropped`,
        );
      }
    }
  }

  /**
   * A peer says goodbye. If its last datagrams are missing here, it is kept (while it lingers
   * to answer NACKs) until they arrive, or `leaveLinger` passes.
   */
  private onLeave(peer: Peer, seq: number): void {
    this.inbox.seen(peer, seq);
    if (peer.next !== undefined && peer.highest >= peer.next && !peer.leaving) {
      peer.leaving = setTimeout(() => this.left(peer), this.timings.leaveLinger * 2);
      peer.leaving.unref();
      return;
    }
    this.left(peer);
  }

  private left(peer: Peer): void {
    if (this.peers.get(peer.id) !== peer) return;
    this.drop(peer);
    this.logger.info(`sticky-mesh: peer ${peer.id} (${peer.address}) left`);
  }

  private drop(peer: Peer): void {
    clearTimeout(peer.leaving);
    clearTimeout(peer.nackTimer);
    this.peers.delete(peer.id);
  }

  /** A peer's heartbeat carried its digest: see {@link digestVerdict}. */
  private compareDigest(peer: Peer, digest: number): void {
    const own = this.host.table.digest;
    // Quiet: no write here since the last heartbeat, and both sides have everything they know
    // of (otherwise a difference is a repair in progress, here or there, not drift).
    const quiet =
      own === this.lastOwnDigest &&
      this.state === 'synced' &&
      peer.synced &&
      peer.complete &&
      noGaps(this.peers.values());
    const verdict = digestVerdict(peer, digest, own, quiet, this.now());
    if (verdict === 'sweep') {
      // Expired records are forgotten on a timer: sweep first, in case that is the difference.
      this.host.table.sweep();
    } else if (verdict === 'transfer') {
      this.logger.info(`sticky-mesh: sessions differ from peer ${peer.id}; merging its state`);
      void this.transferFrom(peer);
    }
  }

  private alone(): void {
    if (this.state !== 'joining') return;
    // No greeting came back, but a synced peer was heard (its heartbeats): the greetings were
    // lost, not absent. Fetch the state from it rather than start empty.
    if ([...this.peers.values()].some((p) => p.synced && p.port > 0)) {
      this.logger.info('sticky-mesh: no greeting, but synced peers are up; fetching their state');
      this.beginSync();
      return;
    }
    this.logger.info('sticky-mesh: no peer answered; starting as the first node');
    this.becomeSynced(new Map());
  }

  private beginSync(): void {
    this.state = 'syncing';
    clearTimeout(this.joinTimer);
    void this.syncLoop();
  }

  /** Fetches the state from the greeters in turn until one transfer completes. */
  private async syncLoop(): Promise<void> {
    let i = 0;
    while (this.state === 'syncing') {
      const candidates = [
        ...this.greeters,
        ...[...this.peers.values()].filter((p) => p.synced && p.port > 0),
      ];
      const peer = candidates[i++ % Math.max(1, candidates.length)];
      const transfer = peer && (await this.fetcher.from(peer));
      if (transfer && peer) {
        if (this.state !== 'syncing') return;
        this.logger.info(`sticky-mesh: state received from peer ${peer.id}`);
        this.becomeSynced(transfer.vector);
        return;
      }
      await delay(Math.min(500, this.timings.joinTimeout));
    }
  }

  private becomeSynced(vector: ReadonlyMap<string, number>): void {
    clearTimeout(this.joinTimer);
    this.state = 'synced';
    for (const peer of this.peers.values()) {
      if (peer.next !== undefined) continue;
      const covered = vector.get(peer.id);
      // A peer the state does not cover: everything it sent is asked for (and if it no longer
      // holds it, its whole state is fetched).
      peer.next = covered === undefined ? 1 : covered + 1;
      this.inbox.drain(peer);
    }
    this.resolveReady();
  }

  /**
   * Fetches one peer's whole state and merges it (repair when its datagrams are gone; after a
   * long silence, by the rule in state-fetch.ts).
   */
  private async transferFrom(peer: Peer): Promise<void> {
    if (peer.fetching || this.state !== 'synced' || peer.port === 0) return;
    peer.fetching = true;
    peer.lastTransfer = this.now();
    clearTimeout(peer.nackTimer);
    peer.nackTimer = undefined;
    const covered = (await this.fetcher.from(peer))?.vector.get(peer.id);
    if (covered !== undefined && peer.next !== undefined && covered + 1 > peer.next) {
      peer.next = covered + 1;
      peer.assembling = undefined;
    }
    peer.fetching = false;
    peer.lastTransfer = this.now();
    if (this.peers.get(peer.id) === peer) this.inbox.drain(peer);
  }

  private resolveReady(): void {
    clearTimeout(this.syncDeadline);
    this.readyResolve?.();
    this.readyResolve = undefined;
  }
}

function delay(ms: number): Promise<void> {
  return new Promise((resolve) => setTimeout(resolve, ms).unref());
}
