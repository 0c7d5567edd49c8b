/**
 * One raw, kept-open HTTP/1.1 client connection: the test writes request bytes as it likes (in
 * pieces, pipelined, with pauses) and reads the answers one by one, the way a proxy in front of
 * the cluster would. Answers are framed by Content-Length (the fixtures always send one); a HEAD
 * answer and 1xx answers have no body; after a 101 the rest is the upgraded stream (`rest()`).
 */
import net from 'node:net';

export interface RawAnswer {
  readonly status: number;
  /** Status line and header lines, as sent. */
  readonly head: string;
  /** Header fields, names lower-cased (the last one wins). */
  readonly headers: Readonly<Record<string, string>>;
  readonly body: Buffer;
}

export class RawConnection {
  /** Bytes received and not yet taken by an answer, as they came. */
  private chunks: Buffer[] = [];
  private length = 0;
  /** The unread bytes the answer whose head was seen needs (no joining before they are in). */
  private need = 0;
  private waiter: (() => void) | undefined;
  /** The server closed the connection (or it broke). */
  closed = false;
  /** When `closed` turned true (Date.now). */
  closedAt = 0;

  private constructor(readonly socket: net.Socket) {
    socket.on('data', (chunk: Buffer) => {
      this.chunks.push(chunk);
      this.length += chunk.length;
      this.waiter?.();
    });
    socket.on('close', () => {
      this.closed = true;
      this.closedAt = Date.now();
      this.waiter?.();
    });
    socket.on('error', () => {});
  }

  /** `readableHighWaterMark`: how much a paused connection takes in before it stops reading. */
  static open(port: number, readableHighWaterMark?: number): Promise<RawConnection> {
    return new Promise((resolve, reject) => {
      const options = {
        port,
        host: '127.0.0.1',
        ...(readableHighWaterMark && { readableHighWaterMark }),
      };
      const socket = net.connect(options, () => resolve(new RawConnection(socket)));
      socket.once('error', reject);
    });
  }

  /** The connection's own end, as the server sees it (address, port). */
  get local(): { address: string; port: number } {
    return { address: this.socket.localAddress ?? '', port: this.socket.localPort ?? 0 };
  }

  /** Bytes received and not yet read as an answer. */
  get unread(): number {
    return this.length;
  }

  write(data: string | Buffer): Promise<void> {
    return new Promise((resolve, reject) =>
      this.socket.write(data, (err) => (err ? reject(err) : resolve())),
    );
  }

  /**
   * The next complete answer. `head`: it answers a HEAD request (no body whatever the head
   * says). Rejects when the connection closes first or `timeoutMs` passes, saying what it got.
   */
  async answer(options: { head?: boolean; timeoutMs?: number } = {}): Promise<RawAnswer> {
    const deadline = Date.now() + (options.timeoutMs ?? 5_000);
    for (;;) {
      const parsed = this.parse(options.head ?? false);
      if (parsed) return parsed;
      if (this.closed) throw new Error(`closed before a complete answer; got ${this.describe()}`);
      if (!(await this.wait(deadline))) {
        throw new Error(`no complete answer in time; got ${this.describe()}`);
      }
    }
  }

  /** Waits until at least `bytes` unread bytes arrived (or the connection closed). */
  async received(bytes: number, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (this.length < bytes && !this.closed) {
      if (!(await this.wait(deadline))) throw new Error(`only ${this.length} of ${bytes} bytes`);
    }
  }

  /** Takes every unread byte (after a 101: the upgraded stream so far). */
  rest(): Buffer {
    const all = this.take();
    this.chunks = [];
    this.length = 0;
    this.need = 0;
    return all;
  }

  /** Resolves once the server closed the connection; rejects if it is still open at the end. */
  async closedByServer(timeoutMs: number): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!this.closed) {
      if (!(await this.wait(deadline))) throw new Error('the server kept the connection open');
    }
  }

  destroy(): void {
    this.socket.destroy();
  }

  private parse(head: boolean): RawAnswer | undefined {
    if (this.length === 0 || this.length < this.need) return undefined;
    const buffer = this.take();
    const end = buffer.indexOf('\r\n\r\n');
    if (end === -1) return undefined;
    const text = buffer.subarray(0, end).toString('latin1');
    const headers: Record<string, string> = {};
    for (const line of text.split('\r\n').slice(1)) {
      const colon = line.indexOf(':');
      if (colon > 0)
        headers[line.slice(0, colon).trim().toLowerCase()] = line.slice(colon + 1).trim();
    }
    const status = Number(text.split(' ')[1]);
    const bodyless = head || (status >= 100 && status < 200) || status === 204 || status === 304;
    let body: Buffer;
    let next: number;
    if (!bodyless && /(^|,)\s*chunked\s*$/i.test(headers['transfer-encoding'] ?? '')) {
      const chunked = dechunk(buffer, end + 4);
      if (!chunked) return undefined;
      [body, next] = chunked;
    } else {
      const length = bodyless ? 0 : Number(headers['content-length'] ?? 0);
      if (buffer.length < end + 4 + length) {
        this.need = end + 4 + length;
        return undefined;
      }
      body = buffer.subarray(end + 4, end + 4 + length);
      next = end + 4 + length;
    }
    this.need = 0;
    const left = buffer.subarray(next);
    this.chunks = left.length > 0 ? [left] : [];
    this.length = left.length;
    return { status, head: text, headers, body };
  }

  /** Everything unread as one buffer (joined once, not per chunk received). */
  private take(): Buffer {
    if (this.chunks.length > 1) this.chunks = [Buffer.concat(this.chunks)];
    return this.chunks[0] ?? Buffer.alloc(0);
  }

  /** Waits for more bytes or the close; false once `deadline` passed. */
  private async wait(deadline: number): Promise<boolean> {
    const left = deadline - Date.now();
    if (left <= 0) return false;
    await new Promise<void>((resolve) => {
      const timer = setTimeout(resolve, left);
      this.waiter = () => {
        clearTimeout(timer);
        resolve();
      };
    });
    this.waiter = undefined;
    return true;
  }

  private describe(): string {
    const buffer = this.take();
    const shown = buffer.subarray(0, 300).toString('latin1');
    return `${buffer.length} unread bytes${this.closed ? ', closed' : ''}: ${JSON.stringify(shown)}`;
  }
}

/**
 * A chunked body starting at `from`: its data and where the bytes after it start, or
 * `undefined` while incomplete. Trailer fields are skipped.
 */
function dechunk(buffer: Buffer, from: number): [Buffer, number] | undefined {
  const parts: Buffer[] = [];
  let at = from;
  for (;;) {
    const eol = buffer.indexOf('\r\n', at);
    if (eol === -1) return undefined;
    const size = Number.parseInt(buffer.subarray(at, eol).toString('latin1'), 16);
    if (Number.isNaN(size)) throw new Error(`bad chunk size line at ${at}`);
    if (size === 0) {
      const end = buffer.indexOf('\r\n\r\n', eol);
      if (end === -1) return undefined;
      return [Buffer.concat(parts), end + 4];
    }
    if (buffer.length < eol + 2 + size + 2) return undefined;
    parts.push(buffer.subarray(eol + 2, eol + 2 + size));
    at = eol + 2 + size + 2;
  }
}
