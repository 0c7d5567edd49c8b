import { existsSync, renameSync, statSync, unlinkSync } from 'node:fs';
import net from 'node:net';
import path from 'node:path';
import { debug } from '../debug.js';
import type { RelaySink } from '../parser-gate.js';
import { markRelaying, type ResponseReader, responseReader } from '../relay-internals.js';

/**
 * Relays between the workers of one machine. A later request of a kept-open proxy connection
 * that belongs to another worker is not moved there with its connection (two handle passes
 * through the primary, and the other worker builds a socket and a parser for it): it is written,
 * head and body, on a channel of that client connection's own to the other worker (a Unix
 * socket, opened at the first such request and kept while the connection lives), whose http
 * server serves it as any request, and the answer is written back on the client connection here.
 * The other worker sees one connection per client connection, with the client connection's
 * remote address and port, so connection-keyed state and `req.socket.remoteAddress` hold as if
 * the connection itself had come.
 *
 * Each worker listens on `<dir>/<slot>.sock` (`dir`: a private directory the primary made, mode
 * 0700). A channel starts with one line, `<address> <port> <family>\n`, then carries requests.
 */

/** Most bytes of a relayed request kept for sending it elsewhere should its channel die. */
const RETRY_BYTES = 64 * 1024;

/** How a channel is introduced: the client connection's address, port and family, one line. */
const MAX_PREAMBLE = 128;

function socketPath(dir: string, slot: number): string {
  return path.join(dir, `${slot}.sock`);
}

/** The listening side in every worker: each channel from a sibling becomes a connection here. */
export class RelayListener {
  private readonly server: net.Server;
  /** Where siblings connect: `<slot>.sock`. */
  private readonly file: string;
  /** Where this worker binds first (its own name), renamed to `file` when it takes the slot. */
  private readonly own: string;
  /** The inode bound, to tell whether `file` is still this worker's. */
  private inode = -1;

  constructor(
    dir: string,
    slot: number,
    /** A channel, introduced: give it to the http server with `rest` (bytes after the line). */
    private readonly onChannel: (socket: net.Socket, rest: Buffer) => void,
  ) {
    this.file = socketPath(dir, slot);
    this.own = path.join(dir, `${slot}.${process.pid}.sock`);
    this.server = net.createServer((socket) => this.introduce(socket));
    this.server.on('error', (err) => debug('relay listener: %s', err.message));
  }

  /**
   * Listens under this worker's own name; `takeSlot` then makes it the slot's. (A worker that
   * replaces another in a rolling reload takes the name only once it has the slot, so siblings
   * do not relay to it before it holds the session state.)
   */
  listen(): Promise<boolean> {
    try {
      unlinkSync(this.own);
    } catch {
      // None there (a crashed worker with this pid would have left it).
    }
    return new Promise((resolve) => {
      this.server.once('error', () => resolve(false));
      // exclusive: a cluster worker's listen would otherwise go through the primary.
      this.server.listen({ path: this.own, exclusive: true }, () => {
        try {
          this.inode = statSync(this.own).ino;
          resolve(true);
        } catch {
          resolve(false);
        }
      });
    });
  }

  /** Siblings' channels to this slot reach this worker from now on (atomic: replaces the file). */
  takeSlot(): boolean {
    try {
      renameSync(this.own, this.file);
      return true;
    } catch (err) {
      debug('relay listener: %s', (err as Error).message);
      return false;
    }
  }

  /**
   * Takes no more channels (those open stay, as connections of the server). `leaving`: nobody
   * takes the slot over now, so its file goes too (siblings stop relaying to it); a worker
   * replaced by a reload leaves the file to its successor.
   */
  close(leaving: boolean): void {
    if (this.server.listening) this.server.close();
    if (!leaving) return;
    try {
      if (statSync(this.file).ino === this.inode) unlinkSync(this.file);
    } catch {
      // Already gone.
    }
  }

  private introduce(socket: net.Socket): void {
    let seen: Buffer = Buffer.alloc(0);
    socket.on('error', (err) => debug('relay channel: %s', err.message));
    const onData = (chunk: Buffer) => {
      seen = seen.length === 0 ? chunk : Buffer.concat([seen, chunk]);
      const end = seen.indexOf(10);
      if (end === -1) {
        if (seen.length > MAX_PREAMBLE) socket.destroy();
        return;
      }
      // No pause here: the server's own listeners take over within this same 'data' event, and
      // a pause now would make it lose track of its flow control (a body could then flow in
      // without back-pressure).
      socket.off('data', onData);
      const [address, port, family] = seen.toString('latin1', 0, end).split(' ');
      // The socket stands for the client connection: it reports that connection's peer.
      Object.defineProperties(socket, {
        remoteAddress: { value: address || undefined, configurable: true },
        remotePort: { value: Number(port) || undefined, configurable: true },
        remoteFamily: { value: family || undefined, configurable: true },
      });
      this.onChannel(socket, seen.subarray(end + 1));
    };
    socket.on('data', onData);
  }
}

/** One client connection's channel to one sibling worker. */
class Channel implements RelaySink {
  /** Requests written whose final answer has not been read in full. */
  pending = 0;
  /** Whether the client keeps its connection open after each of those answers. */
  private readonly keepAlive: boolean[] = [];
  /** When the last answer ended (a channel idle for long may be closed by the other side). */
  idleSince = 0;
  readonly socket: net.Socket;
  private readonly reader: ResponseReader;
  /**
   * The bytes of the one request under way while no byte of its answer has come (and they fit
   * in `RETRY_BYTES`): if the channel dies now (the sibling was leaving, or died), the request
   * can still go elsewhere, through the primary.
   */
  private unanswered: Buffer[] | undefined;
  private unansweredBytes = 0;
  private requestComplete = false;

  constructor(
    file: string,
    private readonly client: net.Socket,
    private readonly onIdle: () => void,
    private readonly onFail: () => void,
    /** Sends the client connection, with these bytes first, through the primary; or false. */
    private readonly retry: (bytes: Buffer) => boolean,
  ) {
    const reader = responseReader((status, keepAlive) => this.answered(status, keepAlive));
    if (!reader) throw new Error('no response reader');
    this.reader = reader;
    this.socket = net.connect(file);
    this.socket.on('error', (err) => debug('relay channel: %s', err.message));
    this.socket.on('close', () => {
      this.reader.close();
      if (this.pending === 0) return;
      const bytes = this.unanswered;
      this.pending = 0;
      if (bytes && this.requestComplete && this.retry(Buffer.concat(bytes))) return;
      this.onFail();
    });
    this.socket.on('data', (chunk: Buffer) => this.answer(chunk));
    // An answer whose body runs until the sibling closes (HTTP/1.0) ends with the stream.
    this.socket.on('end', () => this.reader.finish());
    const family = client.remoteFamily ?? '';
    this.socket.write(`${client.remoteAddress ?? ''} ${client.remotePort ?? ''} ${family}\n`);
  }

  /** Takes one more request; `head`: it is a HEAD (its answer has no body). */
  sink(head: boolean): RelaySink {
    // One behind another (pipelined) cannot be sent elsewhere alone: no retry then.
    this.unanswered = this.pending === 0 ? [] : undefined;
    this.unansweredBytes = 0;
    this.requestComplete = false;
    this.pending++;
    this.reader.expect(head);
    return this;
  }

  head(bytes: Buffer, keepAlive: boolean): void {
    this.keepAlive.push(keepAlive);
    this.body(bytes);
  }

  body(bytes: Buffer): void {
    if (this.unanswered) {
      this.unansweredBytes += bytes.length;
      if (this.unansweredBytes <= RETRY_BYTES) this.unanswered.push(bytes);
      else this.unanswered = undefined;
    }
    if (!this.socket.write(bytes) && !this.client.isPaused()) {
      // The sibling reads slower than the client sends: hold the client back.
      const client = this.client;
      client.pause();
      this.socket.once('drain', () => client.resume());
    }
  }

  end(): void {
    this.requestComplete = true;
  }

  close(): void {
    this.socket.destroy();
  }

  private answer(chunk: Buffer): void {
    this.unanswered = undefined;
    const client = this.client;
    if (!client.destroyed && !client.write(chunk) && !this.socket.isPaused()) {
      // The client reads slower than the sibling answers: hold the channel back.
      this.socket.pause();
      client.once('drain', () => this.socket.resume());
    }
    if (!this.reader.read(chunk)) this.fail();
  }

  private answered(status: number, keepAlive: boolean): void {
    if (status < 0) {
      // Relays carry no upgrades: a 101 means the stream is no longer HTTP.
      this.fail();
      return;
    }
    this.pending--;
    if (this.keepAlive.shift() === false || !keepAlive) {
      // The request or the answer closes the connection (HTTP/1.0, `Connection: close`, a
      // sibling shutting down): as the server would after its own answer, once it is written.
      const client = this.client;
      client.end(() => client.destroy());
    }
    if (this.pending === 0) {
      this.idleSince = Date.now();
      // Idle for the server once the answer has left for the client, as after its own answers
      // (a keep-alive timer or a drain must not cut what is still queued for a slow client).
      const client = this.client;
      if (client.writableLength === 0 || client.destroyed) this.onIdle();
      else client.once('drain', () => this.pending === 0 && this.onIdle());
    }
  }

  private fail(): void {
    this.pending = 0;
    this.socket.destroy();
    this.onFail();
  }
}

/** The relays of one client connection: a channel per sibling it has used, and which is busy. */
interface ClientRelays {
  channels: Map<number, Channel>;
  /** The channel whose answer is being written on the client connection, if any. */
  busy: Channel | undefined;
}

/** The sending side in every worker: the relays of its kept-open client connections. */
export class Relays {
  /** Requests relayed to siblings. */
  relayed = 0;
  private readonly clients = new WeakMap<net.Socket, ClientRelays>();

  /**
   * Takes a client connection from the server and sends it through the primary with `bytes`
   * first (keep-alive.ts sets it); false where it cannot.
   */
  retry: (client: net.Socket, bytes: Buffer) => boolean = () => false;

  constructor(
    private readonly dir: string,
    /** The server's keep-alive timeout (a channel idle for half of it is not reused), in ms. */
    private readonly keepAliveTimeout: () => number,
  ) {}

  /** Whether an answer relayed from a sibling is being written on this client connection. */
  busy(client: net.Socket): boolean {
    return this.clients.get(client)?.busy !== undefined;
  }

  /**
   * The sink of one request of `client` for `slot`'s worker (a request pipelined behind a
   * relayed one goes where that one went, whatever `slot` says: answers must keep their order).
   * `undefined` where no relay can be had (the caller then moves the connection instead).
   */
  sink(client: net.Socket, slot: number, method: string): RelaySink | undefined {
    let relays = this.clients.get(client);
    if (!relays) {
      relays = { channels: new Map(), busy: undefined };
      this.clients.set(client, relays);
      const mine = relays;
      client.once('close', () => {
        for (const channel of mine.channels.values()) channel.close();
        mine.channels.clear();
      });
    }
    let channel = relays.busy ?? relays.channels.get(slot);
    if (channel && channel.pending === 0 && this.stale(channel)) {
      // Idle for most of the keep-alive timeout: the sibling may be closing it right now.
      channel.close();
      relays.channels.delete(slot);
      channel = undefined;
    }
    if (!channel) {
      channel = this.open(client, relays, slot);
      if (!channel) return undefined;
    }
    if (relays.busy === undefined) {
      // Busy for the server: not idle, its keep-alive timer does not close it meanwhile.
      if (!markRelaying(client, true)) return undefined;
      relays.busy = channel;
    }
    this.relayed++;
    return channel.sink(method === 'HEAD');
  }

  private stale(channel: Channel): boolean {
    const timeout = this.keepAliveTimeout();
    return timeout > 0 && Date.now() - channel.idleSince > timeout / 2;
  }

  private open(client: net.Socket, relays: ClientRelays, slot: number): Channel | undefined {
    const file = socketPath(this.dir, slot);
    // A sibling that is leaving has closed its listener (and its file) before the primary's
    // word that it is gone can arrive here: the request then moves through the primary, which
    // knows, rather than failing on a channel that cannot connect.
    if (!existsSync(file)) return undefined;
    try {
      const channel: Channel = new Channel(
        file,
        client,
        () => {
          if (relays.busy !== channel) return;
          relays.busy = undefined;
          // The keep-alive timer runs from the answer's last write on, as after the server's own.
          markRelaying(client, false);
        },
        () => {
          relays.channels.delete(slot);
          // An answer was lost half way (the sibling died): the connection cannot go on.
          if (relays.busy === channel) {
            relays.busy = undefined;
            markRelaying(client, false);
            client.destroy();
          }
        },
        (bytes) => {
          relays.channels.delete(slot);
          if (relays.busy === channel) relays.busy = undefined;
          markRelaying(client, false);
          return this.retry(client, bytes);
        },
      );
      channel.socket.once('close', () => {
        if (relays.channels.get(slot) === channel) relays.channels.delete(slot);
      });
      relays.channels.set(slot, channel);
      return channel;
    } catch (err) {
      debug('no relay: %s', (err as Error).message);
      return undefined;
    }
  }
}
