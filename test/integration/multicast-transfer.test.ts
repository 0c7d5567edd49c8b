// The state-transfer server of the multicast transport (issue 15 item 4), with real transports in
// this process on 127.0.0.1: what it holds for connections without an authenticated request,
// and that a transfer answers exactly the request that asked for it. Every socket is on loopback.
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import { type Change, SessionTable } from '../../src/replication/table.js';
import { encodeSyncFrame } from '../../src/replication/transports/multicast/codec.js';
import { resolveMulticastOptions } from '../../src/replication/transports/multicast/options.js';
import { Keyring, Sealer } from '../../src/replication/transports/multicast/seal.js';
import { MulticastTransport } from '../../src/replication/transports/multicast/transport.js';

const SECRET = 'transfer integration secret, 32+ bytes';
const FAST = { heartbeatInterval: 100, joinTimeout: 200, failureTimeout: 600 };
const SESSIONS = 300;

let nextPort = 46_300;
const transports: MulticastTransport[] = [];
const sockets: net.Socket[] = [];
const servers: net.Server[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.destroy();
  await Promise.all(servers.splice(0).map((s) => new Promise((r) => s.close(r))));
  await Promise.all(transports.splice(0).map((t) => t.close()));
});

/**
 * A transport alone on its own group port (it syncs as the first node), holding `sessions`, each
 * padded to at least `bytes` of JSON.
 */
async function node(sessions = 0, maxSyncConnections = 32, bytes = 0): Promise<MulticastTransport> {
  const pad = 'x'.repeat(Math.max(0, bytes - 20));
  const table = new SessionTable({ tombstoneTtl: 600_000 });
  const t = new MulticastTransport(
    resolveMulticastOptions({
      secret: SECRET,
      ipv4: '127.0.0.1',
      multicastPort: nextPort++,
      ...FAST,
      maxSyncConnections,
      logger: { info() {}, warn() {}, error() {} },
    }),
    {
      table,
      applyRemote: (changes) => {
        for (const c of changes) table.apply(c);
      },
    },
  );
  transports.push(t);
  await t.start();
  for (let i = 0; i < sessions; i++) {
    const version = { t: Date.now(), c: i, n: t.id };
    table.apply({
      op: 'set',
      sid: `s${i}`,
      data: bytes ? `{"n":${i},"p":"${pad}"}` : `{"n":${i}}`,
      expiresAt: Date.now() + 3_600_000,
      version,
    });
  }
  return t;
}

function connect(port: number, localAddress = '127.0.0.1'): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const s = net.connect({ host: '127.0.0.1', port, localAddress }, () => resolve(s));
    s.on('error', reject);
    sockets.push(s);
  });
}

function closed(s: net.Socket): Promise<void> {
  return s.closed || s.destroyed
    ? Promise.resolve()
    : new Promise((r) => s.once('close', () => r()));
}

/** A length-prefixed sealed frame, as transfer.ts writes them. */
function frame(sealer: Sealer, kind: number, body: Buffer): Buffer {
  const sealed = sealer.seal(kind, body);
  const len = Buffer.alloc(4);
  len.writeUInt32BE(sealed.length, 0);
  return Buffer.concat([len, sealed]);
}

/** Splits recorded bytes into length-prefixed frames (with their prefixes). */
function frames(bytes: Buffer): Buffer[] {
  const out: Buffer[] = [];
  for (let at = 0; at + 4 <= bytes.length; ) {
    const n = bytes.readUInt32BE(at);
    out.push(bytes.subarray(at, at + 4 + n));
    at += 4 + n;
  }
  return out;
}

/**
 * A TCP relay to `port` that records what goes each way; `rewrite` may change what the server
 * answers before the client sees it (it gets the whole answer once the server closed).
 */
async function relay(
  port: number,
  rewrite?: (answer: Buffer) => Buffer,
): Promise<{ port: number; asked: Buffer[]; answered: Buffer[] }> {
  const asked: Buffer[] = [];
  const answered: Buffer[] = [];
  const server = net.createServer((client) => {
    const upstream = net.connect({ host: '127.0.0.1', port });
    sockets.push(client, upstream);
    client.on('data', (d) => {
      asked.push(d);
      upstream.write(d);
    });
    upstream.on('data', (d) => {
      answered.push(d);
      if (!rewrite) client.write(d);
    });
    upstream.on('end', () => {
      if (rewrite) client.write(rewrite(Buffer.concat(answered)));
      client.end();
    });
    client.on('error', () => upstream.destroy());
    upstream.on('error', () => client.destroy());
  });
  servers.push(server);
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', () => r()));
  return { port: (server.address() as net.AddressInfo).port, asked, answered };
}

/** Sends `bytes` to a state-transfer server; resolves with everything it answered. */
async function ask(port: number, bytes: Buffer): Promise<Buffer> {
  const s = await connect(port);
  const got: Buffer[] = [];
  s.on('data', (d) => got.push(d));
  s.write(bytes);
  await closed(s);
  return Buffer.concat(got);
}

function collect(): { changes: Change[]; sink: (c: Change[]) => void } {
  const changes: Change[] = [];
  return { changes, sink: (c) => changes.push(...c) };
}

describe('state-transfer server: connections without an authenticated request', () => {
  it('regression: holds at most maxSyncConnections of them, the rest closed at once and counted', async () => {
    const a = await node(0, 6);
    // 4 from each of three addresses: the global cap (6) and the per-address cap (4) both bite.
    const conns: net.Socket[] = [];
    for (const host of ['127.0.0.2', '127.0.0.3', '127.0.0.4']) {
      for (let i = 0; i < 5; i++) conns.push(await connect(a.port, host));
    }
    await expect.poll(() => a.stats().rejected.connections).toBe(15 - 6);
    const open = () => conns.filter((c) => !c.destroyed && !c.readableEnded).length;
    await expect.poll(open).toBe(6);
    expect(a.stats().syncWaiting).toBe(6);
    const perHost = ['127.0.0.2', '127.0.0.3', '127.0.0.4'].map(
      (h) => conns.filter((c) => c.localAddress === h && !c.readableEnded && !c.destroyed).length,
    );
    expect(
      perHost.every((n) => n <= 4),
      `held per address: ${perHost}`,
    ).toBe(true);
    // A real request still gets through once one of them goes.
    for (const c of conns) c.destroy();
    const b = await node();
    const got = collect();
    await b.fetchState({ id: a.id, address: '127.0.0.1', port: a.port }, got.sink);
    expect(a.stats().served).toBe(1);
  });

  it('regression: a connection trickling bytes is closed at the deadline from accept, counted', async () => {
    const a = await node();
    const s = await connect(a.port);
    // A plausible length prefix, then one byte every 500 ms: an idle timer would never fire.
    s.write(Buffer.from([0, 0, 0, 100]));
    let sent = 0;
    const trickle = setInterval(() => {
      if (s.destroyed || s.readableEnded || sent >= 40) return clearInterval(trickle);
      sent++;
      s.write(Buffer.from([0]));
    }, 500);
    await closed(s);
    clearInterval(trickle);
    // Closed by the server while the client was still trickling (40 bytes take 20 s).
    expect(sent).toBeLessThan(40);
    expect(a.stats().rejected.deadline).toBe(1);
    await expect.poll(() => a.stats().syncWaiting).toBe(0);
  }, 30_000);
});

describe('state transfers answer the request that asked for them', () => {
  it('a transfer through a relay delivers the whole state', async () => {
    const a = await node(SESSIONS);
    const b = await node();
    const r = await relay(a.port);
    const got = collect();
    await b.fetchState({ id: a.id, address: '127.0.0.1', port: r.port }, got.sink);
    expect(got.changes.length).toBe(SESSIONS);
  });

  it('regression: a captured request played back is refused by every node, and counted', async () => {
    const a = await node(SESSIONS);
    const b = await node();
    const c = await node(SESSIONS);
    const r = await relay(a.port);
    await b.fetchState({ id: a.id, address: '127.0.0.1', port: r.port }, collect().sink);
    const request = Buffer.concat(r.asked);
    expect(frames(request).length).toBe(1);
    // To the node it asked: a replay. To the node that sent it (its own id), or to a third
    // node (not addressed to it): unsolicited. None of them answers a byte.
    expect((await ask(a.port, request)).length).toBe(0);
    expect(a.stats().rejected.replay).toBe(1);
    expect((await ask(b.port, request)).length).toBe(0);
    expect((await ask(b.port, request)).length).toBe(0);
    expect(b.stats().rejected.unsolicited + b.stats().rejected.replay).toBe(2);
    expect(b.stats().served).toBe(0);
    expect((await ask(c.port, request)).length).toBe(0);
    expect(c.stats().rejected.unsolicited).toBe(1);
    expect(c.stats().served).toBe(0);
    expect(a.stats().served).toBe(1);
  });

  it('regression: an answer to another request is refused by the client, and counted', async () => {
    const a = await node(SESSIONS);
    const b = await node();
    const c = await node();
    // C's transfer from A, recorded; then B's request is answered with it.
    const recorded = await relay(a.port);
    await c.fetchState({ id: a.id, address: '127.0.0.1', port: recorded.port }, collect().sink);
    const other = Buffer.concat(recorded.answered);
    const fake = net.createServer((s) => {
      sockets.push(s);
      s.once('data', () => s.end(other));
    });
    servers.push(fake);
    await new Promise<void>((r) => fake.listen(0, '127.0.0.1', () => r()));
    const got = collect();
    const port = (fake.address() as net.AddressInfo).port;
    await expect(
      b.fetchState({ id: a.id, address: '127.0.0.1', port }, got.sink),
    ).rejects.toThrow();
    expect(got.changes.length).toBe(0);
    expect(b.stats().rejected.unsolicited).toBe(1);
  });

  it('regression: frames of another transfer spliced after a genuine header are refused', async () => {
    const a = await node(SESSIONS);
    const b = await node();
    const c = await node();
    const recorded = await relay(a.port);
    await c.fetchState({ id: a.id, address: '127.0.0.1', port: recorded.port }, collect().sink);
    const foreign = frames(Buffer.concat(recorded.answered));
    // B's own transfer from A, its header kept, everything after it taken from C's transfer.
    const r = await relay(a.port, (answer) => {
      const own = frames(answer);
      return Buffer.concat([own[0] as Buffer, ...foreign.slice(1)]);
    });
    const got = collect();
    await expect(
      b.fetchState({ id: a.id, address: '127.0.0.1', port: r.port }, got.sink),
    ).rejects.toThrow();
    expect(got.changes.length).toBe(0);
    expect(b.stats().rejected.unsolicited).toBe(1);
  });

  it('a request sealed with another secret is refused without an answer', async () => {
    const a = await node(SESSIONS);
    const wrong = new Sealer(new Keyring('not the secret, but 32 bytes long', 'sticky-mesh'), a.id);
    const request = frame(
      wrong,
      ...encodeSyncFrame({ k: 'request', challenge: Buffer.alloc(16), to: a.id }),
    );
    expect((await ask(a.port, request)).length).toBe(0);
    expect(a.stats().rejected.auth).toBe(1);
    expect(a.stats().served).toBe(0);
  });
});

describe('a large state transfer', () => {
  it('regression: the server sends one frame per turn of the event loop, so the primary routes meanwhile', async () => {
    // 4,000 sessions of 1 KB: about 16 frames. Over loopback the kernel takes a frame at once,
    // and a server that awaited only 'drain' sent them all in one turn.
    const a = await node(4000, 32, 1024);
    const b = await node();
    let turn = 0;
    let ticking = true;
    const tick = () => {
      turn++;
      if (ticking) setImmediate(tick);
    };
    setImmediate(tick);
    const framesPerTurn = new Map<number, number>();
    const write = net.Socket.prototype.write;
    net.Socket.prototype.write = function (this: net.Socket, ...args: unknown[]) {
      const chunk = args[0];
      if (Buffer.isBuffer(chunk) && chunk.length > 64 * 1024) {
        framesPerTurn.set(turn, (framesPerTurn.get(turn) ?? 0) + 1);
      }
      return (write as (...a: unknown[]) => boolean).apply(this, args);
    } as typeof write;
    const got = collect();
    try {
      await b.fetchState({ id: a.id, address: '127.0.0.1', port: a.port }, got.sink);
    } finally {
      net.Socket.prototype.write = write;
      ticking = false;
    }
    expect(got.changes.length).toBe(4000);
    const counts = [...framesPerTurn.values()];
    expect(
      counts.reduce((x, y) => x + y, 0),
      'frames written',
    ).toBeGreaterThanOrEqual(10);
    expect(Math.max(...counts), `frames per turn: ${counts}`).toBe(1);
  });
});
