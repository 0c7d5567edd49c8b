import { decodeChange, encodeChange, MAX_SEQ, type MeshMessage, type Piece } from './codec.js';
import { SEAL_OVERHEAD } from './seal.js';
import type { Change, SessionTable } from './table.js';

/**
 * Replication between machines, without the sockets: membership (join, greet, heartbeat,
 * failure timeout, leave), numbered delta datagrams with NACK repair, full state transfer to
 * joiners, and digest comparison to catch replicas that drifted apart. multicast.ts gives it a
 * UDP socket and a TCP server; tests give it an in-memory network with loss.
 *
 * Delivery is in order per sender: a datagram after a gap waits until the gap is repaired, so a
 * change split across datagrams is reassembled from consecutive ones. The session table is
 * order-independent anyway (last writer wins by version), which is what makes repair, retries
 * and full transfers that overlap with live traffic safe: applying a change twice is harmless.
 */

/** Largest datagram sent, envelope included. */
export const DATAGRAM_BUDGET = 1400;
/** Bytes of a data message around its pieces: seq (6) + count (1), per piece 10. */
const DATA_HEAD = 7;
const PIECE_HEAD = 10;
const PIECES_MAX = 255;

export interface PeerAddress {
  readonly id: string;
  /** The address its datagrams come from (its TCP server listens there too). */
  readonly address: string;
  /** Its state-transfer port. */
  readonly port: number;
}

/** A peer's full state, as a state transfer delivers it. */
export interface StateTransfer {
  /** Per node id, the last sequence number whose changes the state includes. */
  readonly vector: ReadonlyMap<string, number>;
}

/** What the node needs from the world: a datagram channel and a reliable state fetch. */
export interface MeshIO {
  /** Sends to the group (every node, this one included, may receive it). */
  send(msg: MeshMessage): void;
  /**
   * Fetches a peer's full state: `sink` receives its changes in chunks, then the promise
   * resolves with what it covers. Rejects on any failure (the node retries elsewhere).
   */
  fetchState(peer: PeerAddress, sink: (changes: Change[]) => void): Promise<StateTransfer>;
  /** This node's state-transfer port, as it tells peers. */
  readonly port: number;
}

/** Where received changes go: the local replica and whatever it feeds (the workers). */
export interface ReplicaHost {
  readonly table: SessionTable;
  /** Applies changes received from other machines. */
  applyRemote(changes: readonly Change[]): void;
}

export interface MeshLogger {
  info(msg: string): void;
  warn(msg: string): void;
}

export interface MeshTimings {
  /** ms between heartbeats. */
  heartbeatInterval: number;
  /** ms without hearing from a peer before it is dropped. */
  failureTimeout: number;
  /** ms a joiner waits for a greeting before it assumes it is alone. */
  joinTimeout: number;
  /** ms a joiner waits for its state transfer before it serves anyway (logged). */
  syncTimeout: number;
  /** ms a gap may stay open (reordering) before it is NACKed; then the NACK repeat interval. */
  nackDelay: number;
  nackInterval: number;
  /** Datagrams kept for retransmission. */
  retransmitBuffer: number;
  /** ms a leaving node keeps answering NACKs for its last datagrams. */
  leaveLinger: number;
}

export const MESH_TIMINGS: Readonly<MeshTimings> = Object.freeze({
  heartbeatInterval: 500,
  failureTimeout: 3000,
  joinTimeout: 1000,
  syncTimeout: 10_000,
  nackDelay: 5,
  nackInterval: 50,
  retransmitBuffer: 8192,
  leaveLinger: 300,
});

export interface MeshCounters {
  datagramsSent: number;
  bytesSent: number;
  dataSent: number;
  changesSent: number;
  changesReceived: number;
  retransmits: number;
  nacksSent: number;
  duplicates: number;
  /** Full state transfers fetched (joins, unrepairable gaps, digest mismatches). */
  transfers: number;
  transferFailures: number;
  /** Changes or datagrams that decoded but made no sense (bad piece order, bad change). */
  malformed: number;
  /** Datagrams dropped because a peer's out-of-order buffer was full. */
  overflow: number;
}

interface Peer {
  id: string;
  address: string;
  port: number;
  lastSeen: number;
  /** Next sequence number to deliver; `undefined` until known (while joining). */
  next: number | undefined;
  /** Data datagrams that wait for a gap to close (or, while joining, for the state). */
  pending: Map<number, Extract<MeshMessage, { k: 'data' }>>;
  /** Highest sequence number the peer has said it sent. */
  highest: number;
  /** A change being reassembled from pieces, and the datagram its first piece came in. */
  assembling: { total: number; parts: Buffer[]; got: number; from: number } | undefined;
  nackTimer: NodeJS.Timeout | undefined;
  /** `next` when the last NACK went out, and the multiplier of the NACK interval. */
  nackedAt: number | undefined;
  nackBackoff: number;
  /** It said goodbye with datagrams missing here: dropped once they arrive, or at this timer. */
  leaving: NodeJS.Timeout | undefined;
  /** A state transfer from this peer is running. */
  fetching: boolean;
  synced: boolean;
  /** Its last heartbeat said it knows of no gap. */
  complete: boolean;
  digest: number;
  stableMismatches: number;
  lastTransfer: number;
  transferBackoff: number;
}

type State = 'idle' | 'joining' | 'syncing' | 'synced' | 'leaving' | 'closed';

const MAX_PENDING = 16_384;
const DIGEST_MISMATCHES = 3;
const MIN_TRANSFER_GAP = 5_000;
const MAX_TRANSFER_GAP = 300_000;
/** ms during which a datagram is not resent again (one multicast resend answers every asker). */
const RETRANSMIT_HOLDOFF = 40;
/** Most datagrams resent for one NACK: a large gap is repaired over several rounds. */
const RETRANSMIT_BATCH = 256;

export class MeshNode {
  readonly counters: MeshCounters = {
    datagramsSent: 0,
    bytesSent: 0,
    dataSent: 0,
    changesSent: 0,
    changesReceived: 0,
    retransmits: 0,
    nacksSent: 0,
    duplicates: 0,
    transfers: 0,
    transferFailures: 0,
    malformed: 0,
    overflow: 0,
  };
  private state: State = 'idle';
  private seq = 0;
  private readonly peers = new Map<string, Peer>();
  private readonly ring: ({ seq: number; msg: MeshMessage; sentAt: number } | undefined)[];
  private outgoing: Buffer[] = [];
  private flushScheduled = false;
  private heartbeat: NodeJS.Timeout | undefined;
  private joinTimer: NodeJS.Timeout | undefined;
  private syncDeadline: NodeJS.Timeout | undefined;
  private readyResolve: (() => void) | undefined;
  private readonly readyPromise: Promise<void>;
  private greeters: PeerAddress[] = [];
  private lastOwnDigest = 0;

  constructor(
    readonly id: string,
    private readonly host: ReplicaHost,
    private readonly io: MeshIO,
    private readonly timings: MeshTimings = MESH_TIMINGS,
    private readonly logger: MeshLogger = { info() {}, warn() {} },
    private readonly now: () => number = Date.now,
  ) {
    this.ring = new Array(timings.retransmitBuffer);
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
      this.send({ k: 'join', seq: this.seq, port: this.io.port });
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
  publish(change: Change): void {
    if (this.state === 'closed' || this.state === 'idle') return;
    this.outgoing.push(encodeChange(change));
    this.counters.changesSent++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** A message from the group, already authenticated. */
  receive(from: { id: string; address: string }, msg: MeshMessage): void {
    if (from.id === this.id || this.state === 'closed' || this.state === 'idle') return;
    let peer = this.peers.get(from.id);
    if (this.state === 'leaving') {
      if (peer && msg.k === 'nack' && msg.to === this.id) this.retransmit(peer, msg.ranges);
      return;
    }
    if (msg.k === 'leave') {
      if (peer) this.onLeave(peer, msg.seq);
      return;
    }
    if (!peer) {
      peer = {
        id: from.id,
        address: from.address,
        port: 0,
        lastSeen: 0,
        next: this.state === 'synced' ? 1 : undefined,
        pending: new Map(),
        highest: 0,
        assembling: undefined,
        nackTimer: undefined,
        nackedAt: undefined,
        nackBackoff: 1,
        leaving: undefined,
        fetching: false,
        synced: false,
        complete: false,
        digest: 0,
        stableMismatches: 0,
        lastTransfer: 0,
        transferBackoff: MIN_TRANSFER_GAP,
      };
      this.peers.set(from.id, peer);
      this.logger.info(`sticky-mesh: peer ${from.id} (${from.address}) joined`);
    }
    peer.lastSeen = this.now();
    peer.address = from.address;
    switch (msg.k) {
      case 'join':
        peer.port = msg.port;
        this.seen(peer, msg.seq);
        if (this.state === 'synced') {
          this.send({ k: 'greet', to: peer.id, seq: this.seq, port: this.io.port });
        }
        break;
      case 'greet':
        peer.port = msg.port;
        this.seen(peer, msg.seq);
        if (msg.to === this.id && this.state === 'joining') {
          this.greeters.push({ id: peer.id, address: peer.address, port: peer.port });
          this.beginSync();
        } else if (msg.to === this.id && this.state === 'syncing') {
          this.greeters.push({ id: peer.id, address: peer.address, port: peer.port });
        }
        break;
      case 'heartbeat':
        peer.port = msg.port;
        peer.synced = msg.synced;
        peer.complete = msg.complete === true;
        this.seen(peer, msg.seq);
        this.compareDigest(peer, msg.digest);
        break;
      case 'data':
        this.onData(peer, msg);
        break;
      case 'nack':
        if (msg.to === this.id) this.retransmit(peer, msg.ranges);
        break;
      case 'gone':
        if (msg.to === this.id) {
          this.logger.info(
            `sticky-mesh: peer ${peer.id} no longer holds changes up to ${msg.seq}; fetching its state`,
          );
          void this.transferFrom(peer);
        }
        break;
    }
  }

  /** This node's state for a joiner: what it covers, and every record. */
  snapshot(): { vector: Map<string, number>; changes: Iterable<Change> } {
    const vector = new Map<string, number>([[this.id, this.seq]]);
    for (const peer of this.peers.values()) {
      // A change still being reassembled is not in the table: the state covers only what came
      // before the datagram it started in (the joiner asks for the rest).
      if (peer.next !== undefined) {
        vector.set(peer.id, (peer.assembling?.from ?? peer.next) - 1);
      }
    }
    return { vector, changes: this.host.table.changes() };
  }

  /** Says goodbye and stops every timer. Idempotent. */
  /**
   * Says goodbye: sends what is pending and a leave message naming the last sequence number,
   * then, until `close()`, only answers NACKs, so a peer that lost the last datagrams can still
   * get them. Returns whether there is anyone to linger for.
   */
  leave(): boolean {
    if (this.state === 'closed' || this.state === 'idle' || this.state === 'leaving') return false;
    this.flush();
    this.send({ k: 'leave', seq: this.seq });
    this.state = 'leaving';
    clearInterval(this.heartbeat);
    clearTimeout(this.joinTimer);
    return this.seq > 0 && this.peers.size > 0;
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

  peerList(): { id: string; address: string; port: number; lastSeen: number; synced: boolean }[] {
    return [...this.peers.values()].map((p) => ({
      id: p.id,
      address: p.address,
      port: p.port,
      lastSeen: p.lastSeen,
      synced: p.synced,
    }));
  }

  get lastSeq(): number {
    return this.seq;
  }

  get phase(): State {
    return this.state;
  }

  // ---- sending -------------------------------------------------------------------------------

  private send(msg: MeshMessage): void {
    this.io.send(msg);
  }

  /** Packs the changes of this tick into as few datagrams as fit the budget. */
  private flush(): void {
    this.flushScheduled = false;
    const changes = this.outgoing;
    this.outgoing = [];
    const room = DATAGRAM_BUDGET - SEAL_OVERHEAD - DATA_HEAD;
    let pieces: Piece[] = [];
    let used = 0;
    const emit = () => {
      if (pieces.length === 0) return;
      this.seq = Math.min(this.seq + 1, MAX_SEQ);
      const msg: MeshMessage = { k: 'data', seq: this.seq, pieces };
      this.ring[this.seq % this.ring.length] = { seq: this.seq, msg, sentAt: 0 };
      this.counters.dataSent++;
      this.send(msg);
      pieces = [];
      used = 0;
    };
    for (const bytes of changes) {
      let offset = 0;
      while (offset < bytes.length) {
        const free = room - used - PIECE_HEAD;
        // Start a change in a fresh datagram unless a useful part of it fits here.
        if (free < Math.min(64, bytes.length - offset) || pieces.length === PIECES_MAX) {
          emit();
          continue;
        }
        const len = Math.min(free, bytes.length - offset);
        pieces.push({ total: bytes.length, offset, bytes: bytes.subarray(offset, offset + len) });
        used += PIECE_HEAD + len;
        offset += len;
      }
    }
    emit();
  }

  private retransmit(peer: Peer, ranges: readonly [number, number][]): void {
    const now = this.now();
    let budget = RETRANSMIT_BATCH;
    for (const [from, to] of ranges) {
      for (let s = from; s <= to && budget > 0; s++, budget--) {
        if (s > this.seq) return;
        const entry = this.ring[s % this.ring.length];
        if (!entry || entry.seq !== s) {
          // Older than what is kept: the asker must fetch this node's whole state.
          this.send({ k: 'gone', to: peer.id, seq: s });
          return;
        }
        // Several receivers NACK the same loss; one resend (multicast) serves them all.
        if (now - entry.sentAt < RETRANSMIT_HOLDOFF) continue;
        entry.sentAt = now;
        this.counters.retransmits++;
        this.send(entry.msg);
      }
    }
  }

  // ---- receiving -----------------------------------------------------------------------------

  /** A peer said it has sent up to `seq`: a gap at the end shows here. */
  private seen(peer: Peer, seq: number): void {
    if (seq > peer.highest) peer.highest = seq;
    if (peer.next !== undefined && peer.highest >= peer.next) this.scheduleNack(peer);
  }

  private onData(peer: Peer, msg: Extract<MeshMessage, { k: 'data' }>): void {
    if (msg.seq > peer.highest) peer.highest = msg.seq;
    if (peer.next === undefined || msg.seq > peer.next) {
      if (peer.next !== undefined && msg.seq < peer.next) return;
      if (peer.pending.size >= MAX_PENDING) {
        this.counters.overflow++;
        return;
      }
      if (peer.pending.has(msg.seq)) this.counters.duplicates++;
      peer.pending.set(msg.seq, msg);
      if (peer.next !== undefined) this.scheduleNack(peer);
      return;
    }
    if (msg.seq < peer.next) {
      this.counters.duplicates++;
      return;
    }
    this.deliver(peer, msg);
    this.drain(peer);
  }

  /** Delivers what waited once the gap before it closed. */
  private drain(peer: Peer): void {
    if (peer.next === undefined) return;
    for (const seq of peer.pending.keys()) {
      if (seq < peer.next) peer.pending.delete(seq);
    }
    let msg = peer.pending.get(peer.next);
    while (msg) {
      peer.pending.delete(msg.seq);
      this.deliver(peer, msg);
      msg = peer.pending.get(peer.next);
    }
    if (peer.highest >= peer.next) this.scheduleNack(peer);
    else if (peer.leaving) this.left(peer);
  }

  private deliver(peer: Peer, msg: Extract<MeshMessage, { k: 'data' }>): void {
    peer.next = msg.seq + 1;
    const changes: Change[] = [];
    for (const piece of msg.pieces) {
      if (piece.offset === 0) {
        peer.assembling = { total: piece.total, parts: [], got: 0, from: msg.seq };
      }
      const a = peer.assembling;
      // The rest of a change begun before a state transfer took over: the transfer had it.
      if (!a && piece.offset > 0) continue;
      if (!a || a.total !== piece.total || a.got !== piece.offset) {
        // A piece that does not continue the change being assembled: the sender is broken.
        peer.assembling = undefined;
        this.counters.malformed++;
        continue;
      }
      a.parts.push(piece.bytes);
      a.got += piece.bytes.length;
      if (a.got === a.total) {
        peer.assembling = undefined;
        const whole = a.parts.length === 1 ? (a.parts[0] as Buffer) : Buffer.concat(a.parts);
        const decoded = decodeChange(whole);
        if (decoded && decoded[1] === whole.length) changes.push(decoded[0]);
        else this.counters.malformed++;
      }
    }
    if (changes.length > 0) {
      this.counters.changesReceived += changes.length;
      this.host.applyRemote(changes);
    }
  }

  private scheduleNack(peer: Peer): void {
    if (peer.nackTimer || peer.fetching) return;
    peer.nackTimer = setTimeout(() => this.nack(peer), this.timings.nackDelay);
    peer.nackTimer.unref();
  }

  private nack(peer: Peer): void {
    peer.nackTimer = undefined;
    if (peer.next === undefined || peer.fetching || !this.peers.has(peer.id)) return;
    const ranges: [number, number][] = [];
    let s = peer.next;
    while (s <= peer.highest && ranges.length < 64) {
      if (peer.pending.has(s)) {
        s++;
        continue;
      }
      const from = s;
      while (s <= peer.highest && !peer.pending.has(s) && s - from < 4096) s++;
      ranges.push([from, s - 1]);
    }
    if (ranges.length === 0) return;
    // A repeat NACK while nothing arrived since the last one waits longer each time (up to 16x):
    // the answers may still be queued behind a burst, and asking again only adds to it.
    peer.nackBackoff = peer.next === peer.nackedAt ? Math.min(peer.nackBackoff * 2, 16) : 1;
    peer.nackedAt = peer.next;
    this.counters.nacksSent++;
    this.send({ k: 'nack', to: peer.id, ranges });
    peer.nackTimer = setTimeout(
      () => this.nack(peer),
      this.timings.nackInterval * peer.nackBackoff,
    );
    peer.nackTimer.unref();
  }

  // ---- membership ----------------------------------------------------------------------------

  private tick(): void {
    if (this.state === 'closed') return;
    const digest = this.host.table.digest;
    this.send({
      k: 'heartbeat',
      seq: this.seq,
      port: this.io.port,
      synced: this.state === 'synced',
      complete: this.complete(),
      digest,
      count: this.host.table.size,
    });
    this.lastOwnDigest = digest;
    const deadline = this.now() - this.timings.failureTimeout;
    for (const peer of [...this.peers.values()]) {
      if (peer.lastSeen < deadline) {
        this.drop(peer);
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
    this.seen(peer, seq);
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

  /** No known gap from any peer, and no transfer running. */
  private complete(): boolean {
    for (const p of this.peers.values()) {
      if (p.next === undefined || p.highest >= p.next || p.pending.size > 0 || p.fetching) {
        return false;
      }
    }
    return true;
  }

  private drop(peer: Peer): void {
    clearTimeout(peer.leaving);
    clearTimeout(peer.nackTimer);
    this.peers.delete(peer.id);
  }

  /**
   * Replicas that received the same changes have the same digest. A difference that stays
   * while neither side changes (no writes in flight) means one missed something for good (a
   * sender died before repairing a loss, say): the state is fetched from that peer and merged.
   * Both sides do it, so both end with the union.
   */
  private compareDigest(peer: Peer, digest: number): void {
    const own = this.host.table.digest;
    const quiet =
      digest === peer.digest &&
      own === this.lastOwnDigest &&
      this.state === 'synced' &&
      peer.synced &&
      // Both sides have everything they know of: otherwise the difference is a repair in
      // progress (here or there), not drift.
      peer.complete &&
      this.complete();
    peer.digest = digest;
    if (!quiet || digest === own) {
      peer.stableMismatches = 0;
      if (digest === own) peer.transferBackoff = MIN_TRANSFER_GAP;
      return;
    }
    peer.stableMismatches++;
    if (peer.stableMismatches === DIGEST_MISMATCHES) {
      // Expired records are forgotten on a timer: sweep first, in case that is the difference.
      this.host.table.sweep();
      return;
    }
    if (
      peer.stableMismatches > DIGEST_MISMATCHES &&
      this.now() - peer.lastTransfer >= peer.transferBackoff
    ) {
      this.logger.info(`sticky-mesh: sessions differ from peer ${peer.id}; merging its state`);
      peer.transferBackoff = Math.min(peer.transferBackoff * 2, MAX_TRANSFER_GAP);
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
      if (peer) {
        this.counters.transfers++;
        try {
          const transfer = await this.io.fetchState(peer, (changes) =>
            this.host.applyRemote(changes),
          );
          if (this.state !== 'syncing') return;
          this.logger.info(`sticky-mesh: state received from peer ${peer.id}`);
          this.becomeSynced(transfer.vector);
          return;
        } catch (err) {
          this.counters.transferFailures++;
          this.logger.warn(
            `sticky-mesh: state transfer from ${peer.address}:${peer.port} failed: ${(err as Error).message}`,
          );
        }
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
      this.drain(peer);
    }
    this.resolveReady();
  }

  /** Fetches one peer's whole state and merges it (repair when its datagrams are gone). */
  private async transferFrom(peer: Peer): Promise<void> {
    if (peer.fetching || this.state !== 'synced' || peer.port === 0) return;
    peer.fetching = true;
    peer.lastTransfer = this.now();
    clearTimeout(peer.nackTimer);
    peer.nackTimer = undefined;
    this.counters.transfers++;
    try {
      const transfer = await this.io.fetchState(peer, (changes) => this.host.applyRemote(changes));
      const covered = transfer.vector.get(peer.id);
      if (covered !== undefined && peer.next !== undefined && covered + 1 > peer.next) {
        peer.next = covered + 1;
        peer.assembling = undefined;
      }
    } catch (err) {
      this.counters.transferFailures++;
      this.logger.warn(
        `sticky-mesh: state transfer from peer ${peer.id} failed: ${(err as Error).message}`,
      );
    } finally {
      peer.fetching = false;
      peer.lastTransfer = this.now();
    }
    if (this.peers.get(peer.id) === peer) this.drain(peer);
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
