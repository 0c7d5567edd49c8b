import { randomBytes } from 'node:crypto';
import net from 'node:net';
import { debug } from '../../../debug.js';
import type { Change } from '../../table.js';
import { decodeSyncFrame, encodeChange, encodeSyncFrame, Kind, type SyncFrame } from './codec.js';
import type { PeerAddress, StateTransfer } from './peer.js';
import { type Keyring, type Opened, Sealer, sameBytes } from './seal.js';

/**
 * Full state transfers between machines over TCP: a joiner (or a node repairing a gap) asks one
 * peer for all it holds; the peer streams it back in sealed, length-prefixed frames (a header
 * that answers the request's challenge and says what the state covers, chunks of changes, an
 * end frame with the count). Each connection seals with a sealer of its own (own salt and
 * counter), so its frames do not move the replay window of the node's datagrams.
 *
 * Binding: a request names the node it asks (`to`) and carries a fresh random challenge; like
 * every envelope it is checked for freshness and replay, so a captured request is served at most
 * once, by the node it was meant for, and never by the node that sent it. The answer's header
 * echoes the challenge, and every later frame must come from the header's sealer (same sender
 * and salt) with the next counter: frames that answer no request of this node are refused and
 * counted (`rejected.unsolicited`).
 *
 * The server bounds what anyone without the secret can hold: at most `maxSyncConnections`
 * connections (and {@link MAX_UNAUTHENTICATED_PER_ADDRESS} from one address) that have not yet
 * sent an authenticated request, each given {@link REQUEST_DEADLINE} from accept to send it.
 */

/** Changes per state-transfer frame are packed up to about this many bytes. */
const FRAME_TARGET = 256 * 1024;
/** Largest frame accepted (a session can be up to 64 MiB with maxSessionBytes raised). */
const MAX_FRAME = 72 * 1024 * 1024;
/** Most transfers served at once. */
const MAX_SERVING = 4;
const CONNECT_TIMEOUT = 5000;
const IDLE_TIMEOUT = 15_000;
/** ms from accept within which a connection must have sent its authenticated request. */
export const REQUEST_DEADLINE = 5000;
/** Connections without an authenticated request yet, held at once from one address. */
export const MAX_UNAUTHENTICATED_PER_ADDRESS = 4;

/** Why the state-transfer side refused a connection or a frame (counted in `stats().rejected`). */
export type TransferRefusal = 'connections' | 'deadline' | 'unsolicited';

/** What the server holds for anyone without the secret. */
export interface TransferLimits {
  /** Connections without an authenticated request yet, held at once. */
  readonly maxConnections: number;
  /** The same, from one remote address. */
  readonly perAddress: number;
  /** ms from accept to the authenticated request. */
  readonly deadline: number;
}

/** What both ends of a transfer need from the node's transport. */
export interface TransferContext {
  /** This node's id. */
  readonly id: string;
  readonly ring: Keyring;
  /** Every open transfer connection (closed with the transport). */
  readonly conns: Set<net.Socket>;
  /** The transport is closing: serve nothing more. */
  readonly closed: boolean;
  /** Opens and freshness-checks an envelope, counting why it was refused. */
  openFrame(buf: Buffer): Opened | undefined;
  /** Counts an authenticated frame that was not a well-formed message. */
  malformed(): void;
  /** Counts a refused connection or frame. */
  refused(why: TransferRefusal): void;
}

/**
 * Fetches a peer's whole state: `sink` receives its changes chunk by chunk; the promise
 * resolves with what the state covers, or rejects on any failure.
 */
export function fetchState(
  ctx: TransferContext,
  peer: PeerAddress,
  sink: (changes: Change[]) => void,
): Promise<StateTransfer> {
  return new Promise<StateTransfer>((resolve, reject) => {
    const challenge = randomBytes(16);
    const socket = net.connect({ host: peer.address, port: peer.port });
    ctx.conns.add(socket);
    let header: Extract<SyncFrame, { k: 'header' }> | undefined;
    let received = 0;
    let lastCounter = 0;
    let settled = false;
    const fail = (why: string) => {
      if (settled) return;
      settled = true;
      socket.destroy();
      reject(new Error(why));
    };
    socket.setTimeout(CONNECT_TIMEOUT, () => fail('timed out'));
    socket.once('connect', () => {
      socket.setTimeout(IDLE_TIMEOUT);
      socket.setNoDelay(true);
      socket.write(
        frame(
          new Sealer(ctx.ring, ctx.id),
          ...encodeSyncFrame({ k: 'request', challenge, to: peer.id }),
        ),
      );
    });
    socket.on('error', (err) => fail(err.message));
    socket.on('close', () => {
      ctx.conns.delete(socket);
      fail('connection closed before the transfer ended');
    });
    /** The answer's sealer: every frame after the header comes from it, numbered in turn. */
    let salt = '';
    const unsolicited = (why: string) => {
      ctx.refused('unsolicited');
      fail(why);
      return false;
    };
    readFrames(
      socket,
      (buf) => {
        if (settled) return false;
        const opened = ctx.openFrame(buf);
        if (!opened) {
          fail('a frame failed authentication or was stale or replayed');
          return false;
        }
        if (opened.sender !== peer.id) return unsolicited('a frame from another node');
        if (header && (opened.salt !== salt || opened.counter !== lastCounter + 1)) {
          return unsolicited('a frame that does not continue this transfer');
        }
        lastCounter = opened.counter;
        const f = decodeSyncFrame(opened.kind, opened.body);
        if (!f) {
          ctx.malformed();
          fail('malformed frame');
          return false;
        }
        if (!header) {
          if (f.k !== 'header' || !sameBytes(f.challenge, challenge)) {
            return unsolicited('the transfer did not answer this request');
          }
          header = f;
          salt = opened.salt;
        } else if (f.k === 'chunk') {
          received += f.changes.length;
          sink(f.changes as Change[]);
        } else if (f.k === 'end' && f.total === received) {
          settled = true;
          socket.end();
          resolve({ vector: header.vector });
          return false;
        } else {
          fail(`unexpected ${f.k} frame`);
          return false;
        }
        return true;
      },
      () => fail('frame too large'),
    );
  });
}

/** A node's full state, as a transfer sends it. */
export type Snapshot = () => { vector: Map<string, number>; changes: Iterable<Change> };

/** The TCP server that answers authenticated state-transfer requests. */
export class TransferServer {
  /** Transfers completed. */
  served = 0;
  private serving = 0;
  private server: net.Server | undefined;
  /** Connections without an authenticated request yet: in all, and per remote address. */
  private unauthenticated = 0;
  private readonly byAddress = new Map<string, number>();

  constructor(
    private readonly ctx: TransferContext,
    private readonly snapshot: Snapshot,
    private readonly onError: (err: Error) => void,
    private readonly limits: TransferLimits,
  ) {}

  get port(): number {
    const a = this.server?.address();
    return typeof a === 'object' && a ? a.port : 0;
  }

  /** Connections held that have not sent an authenticated request yet. */
  get waiting(): number {
    return this.unauthenticated;
  }

  listen(host: string, port: number): Promise<void> {
    return new Promise<void>((resolve, reject) => {
      const server = net.createServer((socket) => this.serve(socket));
      server.once('error', reject);
      server.listen({ host, port }, () => {
        server.off('error', reject);
        server.on('error', this.onError);
        server.unref();
        // The transport closed first: nothing opened after it may stay open.
        if (this.ctx.closed) server.close();
        else this.server = server;
        resolve();
      });
    });
  }

  close(): Promise<void> | undefined {
    const server = this.server;
    return server ? new Promise<void>((r) => server.close(() => r())) : undefined;
  }

  /** Answers one authenticated state-transfer request with this node's whole state. */
  private serve(socket: net.Socket): void {
    const ctx = this.ctx;
    ctx.conns.add(socket);
    socket.on('close', () => ctx.conns.delete(socket));
    socket.on('error', () => socket.destroy());
    const address = socket.remoteAddress ?? '';
    const fromThere = this.byAddress.get(address) ?? 0;
    if (
      ctx.closed ||
      this.serving >= MAX_SERVING ||
      this.unauthenticated >= this.limits.maxConnections ||
      fromThere >= this.limits.perAddress
    ) {
      ctx.refused('connections');
      socket.destroy();
      return;
    }
    this.unauthenticated++;
    this.byAddress.set(address, fromThere + 1);
    let waiting = true;
    const settle = () => {
      if (!waiting) return;
      waiting = false;
      clearTimeout(deadline);
      this.unauthenticated--;
      const n = (this.byAddress.get(address) ?? 1) - 1;
      if (n > 0) this.byAddress.set(address, n);
      else this.byAddress.delete(address);
    };
    // A deadline from accept, not an idle timer: trickling bytes does not extend it.
    const deadline = setTimeout(() => {
      if (!waiting) return;
      ctx.refused('deadline');
      socket.destroy();
    }, this.limits.deadline);
    deadline.unref();
    socket.once('close', settle);
    socket.setNoDelay(true);
    readFrames(
      socket,
      (buf) => {
        if (!waiting) return false;
        const opened = ctx.openFrame(buf);
        const f = opened && decodeSyncFrame(opened.kind, opened.body);
        if (!opened || !f) {
          if (opened) ctx.malformed();
          socket.destroy();
          return false;
        }
        // A request for another node, a node's own request played back to it, or anything
        // but a request: no transfer of this node was asked for.
        if (f.k !== 'request' || f.to !== ctx.id || opened.sender === ctx.id) {
          ctx.refused('unsolicited');
          socket.destroy();
          return false;
        }
        settle();
        if (this.serving >= MAX_SERVING || ctx.closed) {
          socket.destroy();
          return false;
        }
        this.serving++;
        socket.setTimeout(IDLE_TIMEOUT, () => socket.destroy());
        this.stream(socket, f.challenge)
          .then(() => {
            this.served++;
          })
          .catch((err: Error) => {
            debug('state transfer to %s failed: %s', socket.remoteAddress, err.message);
            socket.destroy();
          })
          .finally(() => {
            this.serving--;
          });
        return false;
      },
      () => socket.destroy(),
      4096,
    );
  }

  private async stream(socket: net.Socket, challenge: Buffer): Promise<void> {
    const { vector, changes } = this.snapshot();
    const sealer = new Sealer(this.ctx.ring, this.ctx.id);
    await write(socket, frame(sealer, ...encodeSyncFrame({ k: 'header', challenge, vector })));
    let parts: Buffer[] = [];
    let size = 0;
    let total = 0;
    const flush = async () => {
      const body = Buffer.concat(parts, size);
      parts = [];
      size = 0;
      await write(socket, frame(sealer, Kind.SyncChunk, body));
    };
    for (const change of changes) {
      const bytes = encodeChange(change);
      parts.push(bytes);
      size += bytes.length;
      total++;
      if (size >= FRAME_TARGET) {
        await flush();
        // One frame per turn: a frame the kernel takes at once is 'drain'ed on a nextTick, so a
        // fast receiver would get the whole state in one turn, and the primary route nothing.
        await new Promise<void>((resolve) => setImmediate(resolve));
      }
      if (socket.destroyed) throw new Error('connection closed');
    }
    if (size > 0) await flush();
    await write(socket, frame(sealer, ...encodeSyncFrame({ k: 'end', total })));
    socket.end();
  }
}

/** A length-prefixed sealed frame. */
function frame(sealer: Sealer, kind: number, body: Buffer): Buffer {
  const sealed = sealer.seal(kind, body);
  const len = Buffer.allocUnsafe(4);
  len.writeUInt32BE(sealed.length, 0);
  return Buffer.concat([len, sealed]);
}

function write(socket: net.Socket, buf: Buffer): Promise<void> {
  if (socket.destroyed) return Promise.reject(new Error('connection closed'));
  if (socket.write(buf)) return Promise.resolve();
  return new Promise<void>((resolve, reject) => {
    const done = (err?: Error) => {
      socket.off('drain', ok);
      socket.off('close', closed);
      if (err) reject(err);
      else resolve();
    };
    const ok = () => done();
    const closed = () => done(new Error('connection closed'));
    socket.once('drain', ok);
    socket.once('close', closed);
  });
}

/**
 * Splits a stream into length-prefixed frames; `onFrame` returns false to stop reading.
 * A length over `max` calls `tooLarge` and stops.
 */
function readFrames(
  socket: net.Socket,
  onFrame: (buf: Buffer) => boolean,
  tooLarge: () => void,
  max = MAX_FRAME,
): void {
  let chunks: Buffer[] = [];
  let have = 0;
  let need = -1;
  const onData = (data: Buffer) => {
    chunks.push(data);
    have += data.length;
    for (;;) {
      if (need < 0) {
        if (have < 4) return;
        const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, have);
        chunks = [all];
        need = all.readUInt32BE(0);
        if (need > max || need === 0) {
          socket.off('data', onData);
          tooLarge();
          return;
        }
        need += 4;
      }
      if (have < need) return;
      const all = chunks.length === 1 ? (chunks[0] as Buffer) : Buffer.concat(chunks, have);
      const body = all.subarray(4, need);
      const rest = all.subarray(need);
      chunks = rest.length > 0 ? [rest] : [];
      have = rest.length;
      need = -1;
      if (!onFrame(body)) {
        socket.off('data', onData);
        return;
      }
    }
  };
  socket.on('data', onData);
}
