import type { Change } from '../../table.js';
import { forgetSessions, type ReplicaHost } from '../../transport.js';
import type { MeshCounters, MeshIO, MeshLogger, PeerAddress, StateTransfer } from './peer.js';

/** Departed peers remembered (to spot one that comes back after a long silence). */
const MAX_DEPARTED = 1024;

/**
 * Fetching a peer's whole state over TCP into the replica: for a joiner, for repair (a peer
 * whose datagrams are gone, digests that differ), counted and logged.
 *
 * And peers that come back after a silence longer than `tombstoneTtl` (a partition, a machine
 * that was suspended). A session either side ended during the silence may by now be forgotten there
 * (its tombstone expired) while the other side still holds it from before: merging the two
 * states as usual would bring it back. So the first state transfer from such a peer is merged
 * by one more rule: a record older than the silence that only one side holds was ended (or
 * expired) on the other side, and is neither taken from the peer nor kept here. What either side
 * wrote during the silence merges as always (last writer wins).
 */
export class StateFetch {
  /** Peers dropped after the failure timeout: when each was last heard. */
  private readonly departed = new Map<string, number>();
  /** Peers back after a long silence, with when it began. */
  private readonly cutOff = new Map<string, number>();

  constructor(
    private readonly host: ReplicaHost,
    private readonly io: MeshIO,
    private readonly counters: MeshCounters,
    private readonly logger: MeshLogger,
  ) {}

  /** A peer's whole state, merged: `undefined` if the transfer failed (logged). */
  async from(peer: PeerAddress): Promise<StateTransfer | undefined> {
    const merger = this.merger(peer.id);
    const transfer = await this.fetch(peer, merger?.merge);
    if (transfer) merger?.done();
    return transfer;
  }

  private async fetch(
    peer: PeerAddress,
    merge: (changes: Change[]) => void = (changes) => this.host.applyRemote(changes),
  ): Promise<StateTransfer | undefined> {
    this.counters.transfers++;
    try {
      return await this.io.fetchState(peer, merge);
    } catch (err) {
      this.counters.transferFailures++;
      this.logger.warn(
        `sticky-mesh: state transfer from peer ${peer.id} (${peer.address}:${peer.port}) ` +
          `failed: ${(err as Error).message}`,
      );
      return undefined;
    }
  }

  /** A peer was dropped after the failure timeout; it was last heard at `lastSeen`. */
  lost(id: string, lastSeen: number): void {
    this.departed.delete(id);
    this.departed.set(id, lastSeen);
    if (this.departed.size > MAX_DEPARTED) {
      this.departed.delete(this.departed.keys().next().value as string);
    }
  }

  /** A peer not in the membership was heard at `now`: back after a long silence? */
  heard(id: string, now: number): void {
    const since = this.departed.get(id);
    if (since === undefined) return;
    this.departed.delete(id);
    if (now - since > this.host.table.tombstoneTtl) this.cutOff.set(id, since);
  }

  /**
   * How to merge a state transfer from `id`: `undefined` for the usual way (apply everything);
   * for a peer back after a long silence, a `merge` for the transfer's chunks and a `done` to
   * call once the transfer completed.
   */
  private merger(id: string): { merge(changes: Change[]): void; done(): void } | undefined {
    const since = this.cutOff.get(id);
    if (since === undefined) return undefined;
    const theirs = new Set<string>();
    const table = this.host.table;
    return {
      merge: (changes) => {
        const keep = changes.filter((c) => {
          theirs.add(c.sid);
          return c.version.t >= since || table.record(c.sid) !== undefined;
        });
        this.host.applyRemote(keep);
      },
      done: () => {
        this.cutOff.delete(id);
        const gone: string[] = [];
        for (const c of table.changes()) {
          if (c.op !== 'touch' && c.version.t < since && !theirs.has(c.sid)) gone.push(c.sid);
        }
        const n = forgetSessions(this.host, gone);
        this.logger.warn(
          `sticky-mesh: peer ${id} was out of reach longer than tombstoneTtl; merged, and ` +
            `dropped ${n} sessions here that it no longer holds (ended or expired meanwhile)`,
        );
      },
    };
  }
}
