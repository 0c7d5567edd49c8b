// Standalone stores (no cluster) in this process, replicating over real UDP multicast on the
// loopback interface. Every socket here is bound to, or sends from, 127.0.0.1: no traffic leaves
// the machine.
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import net from 'node:net';
import express from 'express';
import session from 'express-session';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReplicatedStore, type ReplicatedStoreOptions } from '../../src/replication/store.js';
import { encodeMessage, Kind } from '../../src/replication/transports/multicast/codec.js';
import type { MulticastOptions } from '../../src/replication/transports/multicast/options.js';
import { Keyring, Sealer } from '../../src/replication/transports/multicast/seal.js';
import { multicastStore } from '../../src/replication/transports/multicast/store.js';

const SECRET = 'standalone integration secret, 32+ bytes';
const GROUP = '228.0.0.5';
const FAST = { heartbeatInterval: 100, joinTimeout: 200, failureTimeout: 600 };

let nextPort = 46_100;
const stores: ReplicatedStore[] = [];
const sockets: dgram.Socket[] = [];
const servers: http.Server[] = [];

afterEach(async () => {
  for (const s of sockets.splice(0)) s.close();
  await Promise.all(
    servers.splice(0).map(
      (s) =>
        new Promise<void>((resolve) => {
          s.closeAllConnections();
          s.close(() => resolve());
        }),
    ),
  );
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

interface Logged {
  lines: string[];
  logger: { info(m: string): void; warn(m: string): void; error(m: string): void };
}

function logged(): Logged {
  const lines: string[] = [];
  return {
    lines,
    logger: {
      info: (m) => lines.push(`info ${m}`),
      warn: (m) => lines.push(`warn ${m}`),
      error: (m) => lines.push(`error ${m}`),
    },
  };
}

/** A standalone store on the test's group port; its log lines land in `store.lines`. */
function store(
  port: number,
  multicast: Partial<MulticastOptions> = {},
  options: Omit<ReplicatedStoreOptions, 'multicast'> = {},
): ReplicatedStore & { lines: string[] } {
  const log = logged();
  const s = new ReplicatedStore({
    ...options,
    multicast: {
      secret: SECRET,
      ipv4: '127.0.0.1',
      multicastPort: port,
      ...FAST,
      logger: log.logger,
      ...multicast,
    },
  }) as ReplicatedStore & { lines: string[] };
  s.lines = log.lines;
  stores.push(s);
  return s;
}

/** Resolves once the store holds the cluster's sessions. */
async function ready(s: ReplicatedStore): Promise<void> {
  await s.length();
}

function stats(s: ReplicatedStore) {
  const st = s.multicastStats();
  if (!st) throw new Error('no multicast stats');
  return st;
}

function peerIds(s: ReplicatedStore): string[] {
  return stats(s)
    .peers.map((p) => p.id)
    .sort();
}

function sess(extra: Record<string, unknown> = {}) {
  return {
    cookie: { expires: new Date(Date.now() + 3_600_000), originalMaxAge: 3_600_000 },
    ...extra,
  };
}

/** A raw socket on the group (loopback only): what it hears goes to `heard`. */
async function listener(port: number): Promise<{ heard: Buffer[] }> {
  const heard: Buffer[] = [];
  const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
  sockets.push(socket);
  socket.on('message', (buf) => heard.push(Buffer.from(buf)));
  await new Promise<void>((resolve) => socket.bind(port, '0.0.0.0', () => resolve()));
  socket.addMembership(GROUP, '127.0.0.1');
  return { heard };
}

/** A raw socket that sends to the group from 127.0.0.1, with a TTL of 0 (this host only). */
async function injector(port: number): Promise<(buf: Buffer) => Promise<void>> {
  const socket = dgram.createSocket({ type: 'udp4' });
  sockets.push(socket);
  await new Promise<void>((resolve) => socket.bind(0, '127.0.0.1', () => resolve()));
  socket.setMulticastInterface('127.0.0.1');
  socket.setMulticastTTL(0);
  return (buf) =>
    new Promise<void>((resolve, reject) =>
      socket.send(buf, port, GROUP, (err) => (err ? reject(err) : resolve())),
    );
}

function from(buf: Buffer, nodeId: string): boolean {
  return buf.length >= 12 && buf.toString('hex', 4, 12) === nodeId;
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

describe('standalone stores over multicast on loopback', () => {
  it('a write on A is readable on B within 1 s; a destroy on B is honoured on A', async () => {
    const port = nextPort++;
    const a = store(port);
    await ready(a);
    const b = store(port);
    await ready(b);
    await a.set('s1', sess({ user: 'ann' }));
    const t0 = Date.now();
    await vi.waitFor(async () => expect(await b.get('s1')).toMatchObject({ user: 'ann' }), {
      timeout: 1000,
      interval: 5,
    });
    expect(Date.now() - t0).toBeLessThan(1000);
    await b.destroy('s1');
    await vi.waitFor(async () => expect(await a.get('s1')).toBeNull(), {
      timeout: 1000,
      interval: 5,
    });
    // Each knows the other.
    await vi.waitFor(() => {
      expect(peerIds(a)).toEqual([stats(b).nodeId]);
      expect(peerIds(b)).toEqual([stats(a).nodeId]);
    });
    for (const s of [a, b]) expect(s.lines.filter((l) => l.startsWith('error'))).toEqual([]);
  });

  it('a store started later gets every session (2,000, one of 200 KB) by state transfer', async () => {
    const port = nextPort++;
    const a = store(port, {}, { maxSessionBytes: 300_000 });
    await ready(a);
    for (let i = 0; i < 2000; i++) await a.set(`sid-${i}`, sess({ i, name: `user ${i} ☃` }));
    const blob = randomBytes(100_000).toString('hex');
    await a.set('big', sess({ blob }));
    await sleep(50);
    const b = store(port);
    await ready(b);
    // Ready means the state is in: no waiting for datagrams.
    expect(await b.length()).toBe(2001);
    expect(await b.get('sid-1234')).toMatchObject({ i: 1234, name: 'user 1234 ☃' });
    expect(((await b.get('big')) as { blob: string }).blob).toBe(blob);
    expect(stats(b).transfers).toBeGreaterThanOrEqual(1);
    expect(stats(a).served).toBeGreaterThanOrEqual(1);
    expect(stats(b).state).toBe('synced');
  });

  it('a store with another secret neither receives nor injects, and is counted as auth failures', async () => {
    const port = nextPort++;
    const a = store(port);
    await ready(a);
    const b = store(port);
    await ready(b);
    const evil = store(port, { secret: 'not the cluster secret, but as long' });
    await ready(evil);
    await evil.set('forged', sess({ admin: true }));
    await a.set('real', sess({ user: 'ann' }));
    await vi.waitFor(async () => expect(await b.get('real')).not.toBeNull());
    await sleep(3 * FAST.heartbeatInterval);
    expect(await a.get('forged')).toBeNull();
    expect(await b.get('forged')).toBeNull();
    expect(await evil.get('real')).toBeNull();
    expect(stats(a).rejected.auth).toBeGreaterThan(0);
    expect(stats(evil).rejected.auth).toBeGreaterThan(0);
    expect(peerIds(a)).toEqual([stats(b).nodeId]);
    expect(peerIds(evil)).toEqual([]);
  });

  it('garbage datagrams are counted as rejected, nothing throws, and the stores keep working', async () => {
    const port = nextPort++;
    const capture = await listener(port);
    const a = store(port);
    await ready(a);
    const b = store(port);
    await ready(b);
    const aId = stats(a).nodeId;
    await a.set('before', sess());
    await vi.waitFor(async () => expect(await b.get('before')).not.toBeNull());
    const sample = capture.heard.find((d) => from(d, aId) && d.length > 100) as Buffer;
    expect(sample).toBeDefined();
    const before = stats(b).rejected;
    const received = stats(b).datagramsReceived;
    const send = await injector(port);
    let sent = 0;
    // Random bytes of every length up to a datagram.
    for (let i = 0; i < 200; i++) {
      await send(randomBytes(Math.floor(Math.random() * 1400)));
      sent++;
    }
    // Truncated captures: below the smallest envelope, and cut inside the ciphertext.
    for (const n of [5, 20, 52, 53, 60, sample.length - 1]) {
      await send(sample.subarray(0, n));
      sent++;
    }
    // Bit flips all over a capture.
    for (let i = 4; i < sample.length; i += 7) {
      const bad = Buffer.from(sample);
      bad[i] = (bad[i] as number) ^ (1 << (i % 8));
      await send(bad);
      sent++;
    }
    // Oversized, and a plausible header with the wrong flags (an insecure node's).
    await send(Buffer.concat([sample, randomBytes(2000 - sample.length)]));
    const insecure = Buffer.from(sample);
    insecure[3] = 0;
    await send(insecure);
    sent += 2;
    // Authentic envelopes (right secret): one from a clock 2 minutes off, one holding no message.
    const ring = new Keyring(SECRET, 'sticky-mesh');
    const old = new Sealer(ring, randomBytes(8).toString('hex'), () => Date.now() - 120_000);
    await send(old.seal(...encodeMessage({ k: 'leave', seq: 0 })));
    const odd = new Sealer(ring, randomBytes(8).toString('hex'));
    await send(odd.seal(Kind.Heartbeat, Buffer.from('not a heartbeat')));
    await send(odd.seal(99, Buffer.alloc(8)));
    sent += 3;
    await vi.waitFor(() =>
      expect(stats(b).datagramsReceived - received).toBeGreaterThanOrEqual(sent),
    );
    const after = stats(b).rejected;
    const grew = (k: keyof typeof after) => after[k] - before[k];
    expect(grew('truncated')).toBeGreaterThanOrEqual(3);
    expect(grew('auth')).toBeGreaterThanOrEqual(3);
    expect(grew('oversize')).toBeGreaterThanOrEqual(1);
    expect(grew('foreign')).toBeGreaterThanOrEqual(100);
    expect(grew('stale')).toBe(1);
    expect(grew('malformed')).toBe(2);
    const total = Object.keys(after).reduce((n, k) => n + grew(k as keyof typeof after), 0);
    expect(total).toBeGreaterThanOrEqual(sent);
    // Nothing was acted on: no phantom peers, no error logged; replication still works.
    expect(peerIds(b)).toEqual([aId]);
    for (const s of [a, b]) expect(s.lines.filter((l) => l.startsWith('error'))).toEqual([]);
    await a.set('after', sess({ ok: 1 }));
    await vi.waitFor(async () => expect(await b.get('after')).toMatchObject({ ok: 1 }));
    await b.set('back', sess({ ok: 2 }));
    await vi.waitFor(async () => expect(await a.get('back')).toMatchObject({ ok: 2 }));
  });

  it('a replayed datagram is refused as a replay: an old set does not revive a destroyed session', async () => {
    const port = nextPort++;
    const a = store(port);
    await ready(a);
    const b = store(port);
    await ready(b);
    const capture = await listener(port);
    const aId = stats(a).nodeId;
    await a.set('r', sess({ user: 'ann' }));
    await vi.waitFor(async () => expect(await b.get('r')).not.toBeNull());
    await a.destroy('r');
    await vi.waitFor(async () => expect(await b.get('r')).toBeNull());
    const captured = capture.heard.filter((d) => from(d, aId));
    expect(captured.length).toBeGreaterThanOrEqual(2);
    const replays = stats(b).rejected.replay;
    const send = await injector(port);
    for (const d of captured) await send(d);
    await vi.waitFor(() => expect(stats(b).rejected.replay - replays).toBe(captured.length));
    await sleep(50);
    expect(await b.get('r')).toBeNull();
    expect(await a.get('r')).toBeNull();
  });

  it("a closed store's replayed heartbeats do not bring it back into the peer list", async () => {
    const port = nextPort++;
    const a = store(port);
    await ready(a);
    const capture = await listener(port);
    const c = store(port);
    await ready(c);
    const cId = stats(c).nodeId;
    await vi.waitFor(() => expect(peerIds(a)).toEqual([cId]));
    await sleep(2 * FAST.heartbeatInterval);
    await c.close();
    await vi.waitFor(() => expect(peerIds(a)).toEqual([]));
    const captured = capture.heard.filter((d) => from(d, cId));
    expect(captured.length).toBeGreaterThan(2);
    const replays = stats(a).rejected.replay;
    const send = await injector(port);
    for (const d of captured) await send(d);
    await vi.waitFor(() => expect(stats(a).rejected.replay - replays).toBe(captured.length));
    expect(peerIds(a)).toEqual([]);
  });

  it('close() says goodbye: the peer drops the store at once (well before failureTimeout)', async () => {
    const port = nextPort++;
    const a = store(port);
    await ready(a);
    const b = store(port);
    await ready(b);
    await vi.waitFor(() => expect(peerIds(b)).toEqual([stats(a).nodeId]));
    const t0 = Date.now();
    await a.close();
    await vi.waitFor(() => expect(peerIds(b)).toEqual([]), { timeout: 1000, interval: 5 });
    expect(Date.now() - t0).toBeLessThan(FAST.failureTimeout / 2);
    expect(b.lines.join('\n')).toMatch(/left/);
    // The closed store's reads still work; its writes fail.
    await expect(a.set('x', sess())).rejects.toMatchObject({ code: 'ERR_STICKY_STORE_CLOSED' });
  });

  it('close() right after construction releases both sockets', async () => {
    const port = nextPort++;
    const s = store(port);
    await s.close();
    await sleep(300);
    try {
      // The state-transfer server must not be listening...
      const syncPort = stats(s).syncPort;
      const tcp =
        syncPort === 0
          ? 'refused'
          : await new Promise<string>((resolve) => {
              const c = net.connect({ host: '127.0.0.1', port: syncPort });
              c.on('connect', () => {
                c.destroy();
                resolve('connected');
              });
              c.on('error', () => resolve('refused'));
            });
      // ...and the group socket must hear nothing.
      const send = await injector(port);
      await send(randomBytes(100));
      await sleep(100);
      expect({ tcp, udpReceived: stats(s).datagramsReceived }).toEqual({
        tcp: 'refused',
        udpReceived: 0,
      });
    } finally {
      // If they leaked, release them here (private fields: cleanup only) so later tests and the
      // worker are not affected.
      const t = (s as unknown as { transport?: { server?: net.Server; socket?: dgram.Socket } })
        .transport;
      t?.server?.close();
      try {
        t?.socket?.close();
      } catch {
        // already closed
      }
    }
  });
});

describe("express-session-multicast's README example, with the import changed and a secret added", () => {
  interface Reply {
    status: number;
    body: { user?: string | null };
    cookie: string | undefined;
  }

  function request(port: number, method: string, path: string, cookie?: string): Promise<Reply> {
    return new Promise((resolve, reject) => {
      const req = http.request(
        {
          host: '127.0.0.1',
          port,
          method,
          path,
          agent: false,
          headers: cookie ? { cookie } : {},
        },
        (res) => {
          const chunks: Buffer[] = [];
          res.on('data', (c: Buffer) => chunks.push(c));
          res.on('end', () => {
            const text = Buffer.concat(chunks).toString();
            resolve({
              status: res.statusCode ?? 0,
              body: text ? (JSON.parse(text) as Reply['body']) : {},
              cookie: res.headers['set-cookie']?.[0]?.split(';')[0],
            });
          });
        },
      );
      req.on('error', reject);
      req.end();
    });
  }

  async function app(multicastPort: number): Promise<{ port: number; store: ReplicatedStore }> {
    const SessionMulticast = multicastStore(session);
    const log = logged();
    const store = new SessionMulticast({
      // multicast address to listen for at runtime
      multicast: GROUP,
      // port to receive multicasts on
      multicastPort,
      // ip to report on start (here loopback: both apps run on this machine)
      ipv4: '127.0.0.1',
      // use IPv4 instead of v6
      use: 'v4',
      // to set or not to set session time-to-live value (expiry)
      useSessionTTL: true,
      // expiry time for sessions (ms here: the README's 1000 would end a login after a second)
      sessionTTL: 60_000,
      // multicast packet ttl
      multicastTTL: 1,
      // logging facility ie. bunyan, console or winston
      logger: log.logger,
      secret: SECRET,
      ...FAST,
    });
    stores.push(store);
    const server = express();
    server.use(
      session({
        secret: 'test',
        resave: false,
        saveUninitialized: false,
        store,
      }),
    );
    type Session = { user?: string };
    server.post('/login', (req, res) => {
      (req.session as unknown as Session).user = String(req.query.user);
      res.json({ user: (req.session as unknown as Session).user });
    });
    server.get('/me', (req, res) => {
      res.json({ user: (req.session as unknown as Session).user ?? null });
    });
    server.post('/logout', (req, res) => {
      req.session.destroy(() => res.json({ user: null }));
    });
    const httpServer = http.createServer(server);
    servers.push(httpServer);
    await new Promise<void>((resolve) => httpServer.listen(0, '127.0.0.1', () => resolve()));
    await ready(store);
    return { port: (httpServer.address() as AddressInfo).port, store };
  }

  it('two apps on two ports share a login, and a logout', async () => {
    const port = nextPort++;
    const one = await app(port);
    const two = await app(port);
    const login = await request(one.port, 'POST', '/login?user=ann');
    expect(login.status).toBe(200);
    expect(login.cookie).toMatch(/^connect\.sid=/);
    const cookie = login.cookie as string;
    await vi.waitFor(
      async () => expect((await request(two.port, 'GET', '/me', cookie)).body.user).toBe('ann'),
      { timeout: 1000, interval: 10 },
    );
    expect((await request(one.port, 'GET', '/me', cookie)).body.user).toBe('ann');
    expect((await request(two.port, 'POST', '/logout', cookie)).status).toBe(200);
    await vi.waitFor(
      async () => expect((await request(one.port, 'GET', '/me', cookie)).body.user).toBe(null),
      { timeout: 1000, interval: 10 },
    );
    // No cookie, no session.
    expect((await request(two.port, 'GET', '/me')).body.user).toBe(null);
  });
});
