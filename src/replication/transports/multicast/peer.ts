import type { Change } from '../../table.js';
import type { MeshMessage } from './codec.js';

/**
 * The vocabulary of replication between machines: what a node knows of each peer, the timings
 * and counters of the mesh, and what the mesh needs from the world (a datagram channel and a
 * reliable state fetch). Shared by the mesh (mesh.ts), its delta stream (stream.ts) and the
 * multicast transport that gives it sockets.
 */

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
  /** NACKs from peers asking this node to send datagrams again. */
  nacksReceived: number;
  duplicates: number;
  /** Full state transfers fetched (joins, unrepairable gaps, digest mismatches). */
  transfers: number;
  transferFailures: number;
  /** Changes or datagrams that decoded but made no sense (bad piece order, bad change). */
  malformed: number;
  /** Datagrams dropped because a peer's out-of-order buffer was full. */
  overflow: number;
  /** Read on miss: queries sent for sessions missing here, and answered for others. */
  queriesSent: number;
  queriesAnswered: number;
}

export function newCounters(): MeshCounters {
  return {
    datagramsSent: 0,
    bytesSent: 0,
    dataSent: 0,
    changesSent: 0,
    changesReceived: 0,
    retransmits: 0,
    nacksSent: 0,
    nacksReceived: 0,
    duplicates: 0,
    transfers: 0,
    transferFailures: 0,
    malformed: 0,
    overflow: 0,
    queriesSent: 0,
    queriesAnswered: 0,
  };
}

/** A data message: numbered changes (or pieces of them) from one sender. */
export type DataMessage = Extract<MeshMessage, { k: 'data' }>;

/** Shortest wait between two full state transfers from one peer, in ms (it doubles per retry). */
export const MIN_TRANSFER_GAP = 5_000;

/** What a node knows of one peer. */
export interface Peer {
  id: string;
  address: string;
  port: number;
  lastSeen: number;
  /** Next sequence number to deliver; `undefined` until known (while joining). */
  next: number | undefined;
  /** Data datagrams that wait for a gap to close (or, while joining, for the state). */
  pending: Map<number, DataMessage>;
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

/** A peer first heard from now; `next` is 1 once this node is synced, unknown while joining. */
export function newPeer(id: string, address: string, next: number | undefined): Peer {
  return {
    id,
    address,
    port: 0,
    lastSeen: 0,
    next,
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
}

/** What stats report of a peer. */
export interface PeerInfo {
  id: string;
  address: string;
  port: number;
  lastSeen: number;
  synced: boolean;
}

export function peerInfo(p: Peer): PeerInfo {
  return { id: p.id, address: p.address, port: p.port, lastSeen: p.lastSeen, synced: p.synced };
}

/** Heartbeats in a row with the same differing digest before a sweep; a transfer after more. */
const DIGEST_MISMATCHES = 3;
const MAX_TRANSFER_GAP = 300_000;

/**
 * Replicas that received the same changes have the same digest. A difference that stays while
 * neither side changes (`quiet`: no writes in flight, no repair in progress on either side) means
 * one missed something for good (a sender died before repairing a loss, say): after a sweep (in
 * case expiry is the difference) the state is fetched from that peer and merged, no more often
 * than its backoff allows. Both sides do it, so both end with the union. Updates the peer's
 * digest bookkeeping and says what to do.
 */
export function digestVerdict(
  peer: Peer,
  digest: number,
  own: number,
  quiet: boolean,
  now: number,
): 'none' | 'sweep' | 'transfer' {
  const stable = quiet && digest === peer.digest;
  peer.digest = digest;
  if (!stable || digest === own) {
    peer.stableMismatches = 0;
    if (digest === own) peer.transferBackoff = MIN_TRANSFER_GAP;
    return 'none';
  }
  peer.stableMismatches++;
  if (peer.stableMismatches === DIGEST_MISMATCHES) return 'sweep';
  if (
    peer.stableMismatches > DIGEST_MISMATCHES &&
    now - peer.lastTransfer >= peer.transferBackoff
  ) {
    peer.transferBackoff = Math.min(peer.transferBackoff * 2, MAX_TRANSFER_GAP);
    return 'transfer';
  }
  return 'none';
}

/** No known gap from any peer, and no transfer running. */
export function noGaps(peers: Iterable<Peer>): boolean {
  for (const p of peers) {
    if (p.next === undefined || p.highest >= p.next || p.pending.size > 0 || p.fetching) {
      return false;
    }
  }
  return true;
}

/**
 * Per peer, the last sequence number whose changes this node's table holds (what a state
 * transfer of it covers). A change still being reassembled is not in the table: the state covers
 * only what came before the datagram it started in (the joiner asks for the rest).
 */
export function coveredVector(peers: Iterable<Peer>): Map<string, number> {
  const vector = new Map<string, number>();
  for (const peer of peers) {
    if (peer.next !== undefined) vector.set(peer.id, (peer.assembling?.from ?? peer.next) - 1);
  }
  return vector;
}

/** Datagrams, frames and connections the transport refused, by reason (see `stats()`). */
export interface Rejections {
  oversize: number;
  truncated: number;
  /** Not this product's, another protocol version, another cluster, or sealed vs insecure. */
  foreign: number;
  /** Failed authentication (the gate tag or AES-GCM): wrong secret, forged or altered. */
  auth: number;
  /** Sender clock outside `maxClockSkew`. */
  stale: number;
  replay: number;
  /** Authenticated but not a well-formed message. */
  malformed: number;
  /**
   * A state-transfer frame that answers no request of this node: a request for another node
   * or carrying this node's own id, an answer to no outstanding request, a frame that does
   * not continue its transfer, a transfer frame in a datagram.
   */
  unsolicited: number;
  /**
   * State-transfer connections closed at accept: `maxSyncConnections` (or 4 from one
   * address) were already waiting for their request, or 4 transfers were being served.
   */
  connections: number;
  /** State-transfer connections closed without an authenticated request 5 s after accept. */
  deadline: number;
}

export function newRejections(): Rejections {
  return {
    oversize: 0,
    truncated: 0,
    foreign: 0,
    auth: 0,
    stale: 0,
    replay: 0,
    malformed: 0,
    unsolicited: 0,
    connections: 0,
    deadline: 0,
  };
}
