import type { Change } from '../../table.js';
import { decodeChange, encodeChange, MAX_SEQ, type MeshMessage, type Piece } from './codec.js';
import type { DataMessage, MeshCounters, MeshTimings, Peer } from './peer.js';
import { SEAL_OVERHEAD } from './seal.js';

/**
 * The numbered delta stream between machines: each node numbers the datagrams that carry its
 * changes ({@link Outbox}), and each receiver delivers every sender's datagrams in order,
 * asking for the ones it missed ({@link Inbox}). A datagram after a gap waits until the gap is
 * repaired, so a change split across datagrams is reassembled from consecutive ones.
 */

/** Largest datagram sent, envelope included. */
export const DATAGRAM_BUDGET = 1400;
/** Bytes of a data message around its pieces: seq (6) + count (1), per piece 10. */
const DATA_HEAD = 7;
const PIECE_HEAD = 10;
const PIECES_MAX = 255;
/** Datagrams a receiver holds per sender while a gap before them is open. */
const MAX_PENDING = 16_384;
/** ms during which a datagram is not resent again (one multicast resend answers every asker). */
const RETRANSMIT_HOLDOFF = 40;
/** Most datagrams resent for one NACK: a large gap is repaired over several rounds. */
const RETRANSMIT_BATCH = 256;
/** ms during which a session's record is not sent again for another query (NACKs repair it). */
const ANSWER_HOLDOFF = 1000;

/** The sending half: batches this node's changes into numbered datagrams, kept for repair. */
export class Outbox {
  /** Last sequence number sent. */
  seq = 0;
  private readonly ring: ({ seq: number; msg: MeshMessage; sentAt: number } | undefined)[];
  private outgoing: Buffer[] = [];
  private flushScheduled = false;
  /** Sessions whose record was sent again for a query, and when (bounded; see `answer`). */
  private readonly answered = new Map<string, number>();

  constructor(
    private readonly send: (msg: MeshMessage) => void,
    private readonly counters: MeshCounters,
    retransmitBuffer: number,
    private readonly now: () => number,
  ) {
    this.ring = new Array(retransmitBuffer);
  }

  /**
   * Queues a change (`encoded`: its `encodeChange` bytes, if the caller has them); the changes
   * of one event-loop turn leave together.
   */
  add(change: Change, encoded?: Buffer): void {
    this.outgoing.push(encoded ?? encodeChange(change));
    this.counters.changesSent++;
    if (!this.flushScheduled) {
      this.flushScheduled = true;
      setImmediate(() => this.flush());
    }
  }

  /** Packs the queued changes into as few datagrams as fit the budget, and sends them. */
  flush(): void {
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

  /**
   * Answers a query for a session with its record (as changes, in the numbered stream, so a
   * lost answer is repaired like any change). Several nodes may ask within a moment: one answer
   * per `ANSWER_HOLDOFF` serves them all.
   */
  answer(sid: string, changes: readonly Change[]): void {
    if (changes.length === 0) return;
    const now = this.now();
    if (now - (this.answered.get(sid) ?? Number.NEGATIVE_INFINITY) < ANSWER_HOLDOFF) return;
    // Forgetting holdoffs early only costs a duplicate answer.
    if (this.answered.size >= 1024) this.answered.clear();
    this.answered.set(sid, now);
    this.counters.queriesAnswered++;
    for (const change of changes) this.add(change);
  }

  /** Answers a NACK from node `to`; what is no longer kept is answered with `gone`. */
  retransmit(to: string, ranges: readonly [number, number][]): void {
    const now = this.now();
    let budget = RETRANSMIT_BATCH;
    for (const [from, last] of ranges) {
      for (let s = from; s <= last && budget > 0; s++, budget--) {
        if (s > this.seq) return;
        const entry = this.ring[s % this.ring.length];
        if (!entry || entry.seq !== s) {
          // Older than what is kept: the asker must fetch this node's whole state.
          this.send({ k: 'gone', to, seq: s });
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
}

/** What the receiving half needs from the node that owns it. */
export interface InboxOwner {
  readonly counters: MeshCounters;
  readonly timings: MeshTimings;
  send(msg: MeshMessage): void;
  /** Changes delivered in order, to apply. */
  applyRemote(changes: Change[]): void;
  /** Whether a peer of this id is still a member (a dropped peer's timers do nothing). */
  isMember(id: string): boolean;
  /** A peer that said goodbye with datagrams missing has now received them all. */
  caughtUp(peer: Peer): void;
}

/** The receiving half: per-sender in-order delivery, reassembly, and NACKs for gaps. */
export class Inbox {
  constructor(private readonly owner: InboxOwner) {}

  /** A peer said it has sent up to `seq`: a gap at the end shows here. */
  seen(peer: Peer, seq: number): void {
    if (seq > peer.highest) peer.highest = seq;
    if (peer.next !== undefined && peer.highest >= peer.next) this.scheduleNack(peer);
  }

  onData(peer: Peer, msg: DataMessage): void {
    const { counters } = this.owner;
    if (msg.seq > peer.highest) peer.highest = msg.seq;
    if (peer.next === undefined || msg.seq > peer.next) {
      if (peer.next !== undefined && msg.seq < peer.next) return;
      if (peer.pending.size >= MAX_PENDING) {
        counters.overflow++;
        return;
      }
      if (peer.pending.has(msg.seq)) counters.duplicates++;
      peer.pending.set(msg.seq, msg);
      if (peer.next !== undefined) this.scheduleNack(peer);
      return;
    }
    if (msg.seq < peer.next) {
      counters.duplicates++;
      return;
    }
    this.deliver(peer, msg);
    this.drain(peer);
  }

  /** Delivers what waited once the gap before it closed. */
  drain(peer: Peer): void {
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
    else if (peer.leaving) this.owner.caughtUp(peer);
  }

  private deliver(peer: Peer, msg: DataMessage): void {
    const { counters } = this.owner;
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
        counters.malformed++;
        continue;
      }
      a.parts.push(piece.bytes);
      a.got += piece.bytes.length;
      if (a.got === a.total) {
        peer.assembling = undefined;
        const whole = a.parts.length === 1 ? (a.parts[0] as Buffer) : Buffer.concat(a.parts);
        const decoded = decodeChange(whole);
        if (decoded && decoded[1] === whole.length) changes.push(decoded[0]);
        else counters.malformed++;
      }
    }
    if (changes.length > 0) {
      counters.changesReceived += changes.length;
      this.owner.applyRemote(changes);
    }
  }

  private scheduleNack(peer: Peer): void {
    if (peer.nackTimer || peer.fetching) return;
    peer.nackTimer = setTimeout(() => this.nack(peer), this.owner.timings.nackDelay);
    peer.nackTimer.unref();
  }

  private nack(peer: Peer): void {
    peer.nackTimer = undefined;
    if (peer.next === undefined || peer.fetching || !this.owner.isMember(peer.id)) return;
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
    this.owner.counters.nacksSent++;
    this.owner.send({ k: 'nack', to: peer.id, ranges });
    peer.nackTimer = setTimeout(
      () => this.nack(peer),
      this.owner.timings.nackInterval * peer.nackBackoff,
    );
    peer.nackTimer.unref();
  }
}
