/**
 * A TCP relay on 127.0.0.1 in front of a server, whose link a test can blackhole: while it is,
 * the relay still reads from both ends (so the connections stay up and nobody sees an error)
 * but forwards nothing and keeps what it read, counting the bytes; `restore()` delivers what it
 * kept, in order, and forwards again. A client behind it sees a link that swallows everything
 * without closing, then carries again with nothing lost. Or a test can cut it: `cut()` ends
 * every connection and stops accepting (the server is out of reach), `reopen()` accepts again on
 * the same port. `close()` ends every connection.
 */
import net from 'node:net';

interface Pair {
  readonly client: net.Socket;
  readonly upstream: net.Socket;
  /** Bytes read from each end while blackholed, not yet forwarded. */
  readonly toUpstream: Buffer[];
  readonly toClient: Buffer[];
}

export class TcpRelay {
  /** Bytes the clients sent while the link was blackholed (what reached nobody meanwhile). */
  swallowedFromClients = 0;
  private blackholed = false;
  private readonly pairs = new Set<Pair>();
  private readonly server: net.Server;
  private cutPort = 0;

  private constructor(private readonly target: number) {
    this.server = net.createServer((client) => this.accept(client));
  }

  /** A relay to 127.0.0.1:`targetPort`, listening on a port of its own. */
  static async start(targetPort: number): Promise<TcpRelay> {
    const relay = new TcpRelay(targetPort);
    await new Promise<void>((resolve, reject) => {
      relay.server.once('error', reject);
      relay.server.listen(0, '127.0.0.1', () => resolve());
    });
    return relay;
  }

  get port(): number {
    return (this.server.address() as net.AddressInfo).port;
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  blackhole(): void {
    this.blackholed = true;
    this.swallowedFromClients = 0;
  }

  restore(): void {
    this.blackholed = false;
    for (const p of this.pairs) {
      for (const chunk of p.toUpstream.splice(0)) p.upstream.write(chunk);
      for (const chunk of p.toClient.splice(0)) p.client.write(chunk);
    }
  }

  /** Ends every connection and stops accepting (clients see the server go away). */
  async cut(): Promise<void> {
    const port = this.port;
    this.cutPort = port;
    await this.close();
  }

  /** Accepts again, on the port it had before `cut()`. */
  async reopen(): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(this.cutPort, '127.0.0.1', resolve));
  }

  async close(): Promise<void> {
    for (const p of this.pairs) {
      p.client.destroy();
      p.upstream.destroy();
    }
    this.pairs.clear();
    if (!this.server.listening) return;
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  private accept(client: net.Socket): void {
    const upstream = net.connect(this.target, '127.0.0.1');
    const pair: Pair = { client, upstream, toUpstream: [], toClient: [] };
    this.pairs.add(pair);
    client.on('data', (chunk: Buffer) => {
      if (!this.blackholed) {
        upstream.write(chunk);
        return;
      }
      this.swallowedFromClients += chunk.length;
      pair.toUpstream.push(chunk);
    });
    upstream.on('data', (chunk: Buffer) => {
      if (this.blackholed) pair.toClient.push(chunk);
      else client.write(chunk);
    });
    const end = () => {
      this.pairs.delete(pair);
      client.destroy();
      upstream.destroy();
    };
    client.on('error', end);
    upstream.on('error', end);
    client.on('close', end);
    upstream.on('close', end);
  }
}
