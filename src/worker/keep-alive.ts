import type http from 'node:http';
import type { Socket } from 'node:net';
import { trace } from '../debug.js';
import { rendezvous, type SlotPicker } from '../hash.js';
import { type RawHandle, takeFromServer } from '../node-internals.js';
import type { ResolvedStickyOptions } from '../options.js';
import { gateRequests, type RequestGate } from '../parser-gate.js';
import { sendToPrimary } from '../protocol/ipc.js';
import { MessageType, message, type RerouteMessage } from '../protocol/messages.js';
import { missingHeader, respond } from '../routing/answer.js';
import { routeFields, slotFor } from '../routing/key.js';
import { type ScopeTest, scopeTest } from '../routing/scope.js';
import { sidFromTarget } from '../routing/session-id.js';
import type { Relays } from './relay.js';

/** What the routing of kept-open connections needs from the worker that runs it. */
export interface KeptOpenOwner {
  readonly slot: number;
  /** The worker takes requests (it is ready, not draining or closed). */
  readonly serving: boolean;
  /** Relays to sibling workers, where this worker has them. */
  readonly relays: Relays | undefined;
  /**
   * While this worker drains for a reload: whether it still serves engine.io session `sid`
   * (such a request is served here instead of being handed back).
   */
  retains(sid: string): boolean;
}

/**
 * Per-request routing of kept-open proxy connections (proxy mode, session-id affinity), which
 * carry requests of many clients. Each later request is checked the moment the server's parser
 * has read its head, before the server sees it (parser-gate.ts): one that belongs here goes on
 * as if nothing had looked (no extra read, copy or allocation beyond the check); one that
 * belongs to a sibling is relayed to it (relay.ts: the request goes over a channel of this
 * connection's own, the answer comes back and is written here; the connection stays). Upgrades,
 * and any request when no relay can be had, are stopped after the head instead, and the
 * connection is handed back to the primary with the request's bytes, which routes it like a new
 * connection. No byte is lost and the connection stays open. Requests that arrive while an
 * earlier one is still being answered (pipelining) are served where that one is: here, or by
 * the sibling it was relayed to, so answers keep their order.
 */
export class KeptOpenConnections {
  /** Connections handed back to the primary because their next request belonged elsewhere. */
  handedBack = 0;
  private readonly pick: SlotPicker;
  /** Slots with a ready worker, as the primary last said. */
  private live: readonly number[];
  private readonly missingHeader: Buffer;
  /** Which requests must reach their key's worker; `undefined`: every one. */
  private readonly inScope: ScopeTest | undefined;
  /** Sockets whose parser this Node does not let us gate: each answer closes them. */
  private readonly ungated = new WeakSet<Socket>();
  /** engine.io sessions that workers draining for a reload still serve (the primary's word). */
  private readonly retired = new Set<string>();
  /** Workers draining for a reload now: while any does, every connection is followed. */
  draining = 0;

  /** The primary's word on the workers draining for a reload and the sessions they keep. */
  setRetiring(add: readonly string[] = [], remove: readonly string[] = [], draining = 0): void {
    for (const sid of add) this.retired.add(sid);
    for (const sid of remove) this.retired.delete(sid);
    this.draining = draining;
    if (draining === 0) this.retired.clear();
  }

  /**
   * Whether a request for `url` belongs to an engine.io session a worker draining for a reload
   * still serves (it goes there through the primary).
   */
  private isRetired(url: string): boolean {
    if (this.retired.size === 0 || !url.includes('EIO=')) return false;
    const sid = sidFromTarget(url);
    return sid !== undefined && this.retired.has(sid);
  }

  constructor(
    private readonly options: ResolvedStickyOptions,
    private readonly owner: KeptOpenOwner,
  ) {
    this.pick = rendezvous(options.seed, options.num);
    this.live = Array.from({ length: options.num }, (_, i) => i);
    this.missingHeader = missingHeader(options.header);
    this.inScope = scopeTest(options.scope, options.sessionAffinity, options.seed, options.num);
    if (owner.relays) owner.relays.retry = (socket, bytes) => this.sendBack(socket, bytes);
  }

  /** The peer address key of each followed connection (the fallback key of its requests). */
  private readonly peers = new WeakMap<Socket, string | undefined>();

  /**
   * Takes a followed connection from its server and hands it, with `bytes` as its next request,
   * back to the primary (a relay's channel died before any answer came).
   */
  private sendBack(socket: Socket, bytes: Buffer): boolean {
    const handle = takeFromServer(socket);
    if (!handle) return false;
    handle.readStop();
    socket.destroy();
    this.handBack(handle, bytes, this.peers.get(socket));
    return true;
  }

  /** The primary's latest word on which slots have a ready worker. */
  setLive(live: readonly number[]): void {
    this.live = live;
    this.liveVersion++;
  }

  /** Bumped with every change of `live` (a connection's cached slot is valid within one). */
  private liveVersion = 0;

  /**
   * Follows the requests of a connection the server has just taken. `routedFirst`: the primary
   * routed it by its first request, which is then served without a second look. Returns false
   * where this Node's parser cannot be gated: the caller then installs `onRequest`.
   */
  follow(socket: Socket, peer: string | undefined, routedFirst: boolean): boolean {
    this.peers.set(socket, peer);
    if (gateRequests(socket, this.gateFor(socket, peer, routedFirst))) return true;
    this.ungated.add(socket);
    return false;
  }

  /**
   * The server's 'request' listener once a connection could not be gated: each answer on such
   * a connection closes it, so every request arrives as a new connection the primary routes
   * (slower, never wrong).
   */
  onRequest(req: http.IncomingMessage, res: http.ServerResponse): void {
    if (this.ungated.has(req.socket) && !res.headersSent) res.setHeader('connection', 'close');
  }

  private gateFor(socket: Socket, peer: string | undefined, routedFirst: boolean): RequestGate {
    let first = routedFirst;
    /** Why the last request was stopped: it names no key (400), or it belongs elsewhere. */
    let unroutable = false;
    /**
     * The last request's key header line and the slot it led to: a proxy connection often
     * carries one client's requests in a row, whose line is the same text. Only where the line
     * alone decides (proxy mode without session ids).
     */
    const cache = { line: '', slot: -1, version: -1 };
    const cacheable = this.options.proxy && !this.options.sessionAffinity;
    return {
      decide: (method, url, fields, busy, upgrade) => {
        if (first) {
          first = false;
          return false;
        }
        const relays = this.owner.relays;
        // Behind a relayed request, pipelined: to the same place, so answers keep their order.
        if (relays?.busy(socket)) return relays.sink(socket, -1, method) ?? true;
        if (busy) return false;
        // An engine.io session that a worker draining for a reload still serves goes there.
        if (this.owner.serving && this.isRetired(url)) {
          unroutable = false;
          return true;
        }
        if (this.inScope !== undefined && !this.inScope(method, url, fields)) return false;
        // Not serving (draining): the primary decides where it goes, unless it is one of the
        // engine.io sessions this worker keeps until it has drained.
        if (!this.owner.serving) {
          const sid = url.includes('EIO=') ? sidFromTarget(url) : undefined;
          if (sid !== undefined && this.owner.retains(sid)) return false;
          unroutable = false;
          return true;
        }
        const line = cacheable ? onlyLine(fields, this.options.header) : undefined;
        let slot: number | undefined;
        if (!this.options.proxy) {
          // IP mode: the connection is on its address's worker; only a live session's owner
          // elsewhere moves a request.
          const owner = routeFields(url, fields, peer, this.options).owner;
          unroutable = false;
          if (owner === undefined || owner === this.owner.slot || !this.live.includes(owner)) {
            return false;
          }
          slot = owner;
        } else if (
          line !== undefined &&
          line === cache.line &&
          cache.version === this.liveVersion
        ) {
          slot = cache.slot;
          unroutable = false;
        } else {
          const route = routeFields(url, fields, peer, this.options);
          unroutable = route.key === undefined && route.owner === undefined;
          if (unroutable) {
            trace.request?.('worker %d: no usable %s: 400', this.owner.slot, this.options.header);
            return true;
          }
          slot = slotFor(route, this.pick, this.live);
          if (line !== undefined && slot !== undefined) {
            cache.line = line;
            cache.slot = slot;
            cache.version = this.liveVersion;
          }
        }
        trace.request?.(
          'worker %d: %s -> slot %s (%s)',
          this.owner.slot,
          method,
          slot,
          whereTo(slot, this.owner.slot, upgrade, relays),
        );
        if (slot === this.owner.slot) return false;
        // Upgrades (long-lived, no longer HTTP) move with their connection; so does anything
        // when no slot is live or no relay can be had.
        if (upgrade || slot === undefined || !relays) return true;
        return relays.sink(socket, slot, method) ?? true;
      },
      stopped: (handle, head, rest) => {
        if (!handle) return;
        if (unroutable) respond(handle, this.missingHeader);
        else this.handBack(handle, rest.length > 0 ? Buffer.concat([head, rest]) : head, peer);
      },
    };
  }

  /** Gives a proxy connection back to the primary, with the bytes read from it. */
  private handBack(handle: RawHandle, bytes: Buffer, peer: string | undefined): void {
    this.handedBack++;
    const msg = message<RerouteMessage>(MessageType.Reroute, {
      head: bytes.toString('base64'),
      ...(peer ? { peer } : {}),
    });
    // Once written, the descriptor travels in the message: this process's copy can go.
    const what = `worker ${this.owner.slot}: hand-back`;
    if (!sendToPrimary(msg, what, () => handle.close(), handle)) handle.close();
  }
}

/** Where a request for `slot` goes from the worker of `own` (for the `request` trace). */
function whereTo(slot: number | undefined, own: number, upgrade: boolean, relays: unknown): string {
  if (slot === own) return 'served here';
  return upgrade || slot === undefined || !relays
    ? 'handed back to the primary'
    : 'relayed, or handed back if no channel';
}

/** The value of header `name` (lower case) when the head has exactly one such line. */
function onlyLine(fields: readonly string[], name: string): string | undefined {
  let value: string | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = fields[i] as string;
    if (field.length === name.length && field.toLowerCase() === name) {
      if (value !== undefined) return undefined;
      value = fields[i + 1] as string;
    }
  }
  return value;
}
