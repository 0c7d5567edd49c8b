import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { rawExchange, request } from '../helpers/http.js';
import { sessionAppStats } from '../helpers/session-app.js';

/** 40 client addresses as a reverse proxy would forward them. */
const CLIENTS = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);

describe('proxy mode: routing by X-Forwarded-For', () => {
  let app: FixtureProcess;
  let port: number;
  const home = new Map<string, number>();

  beforeAll(async () => {
    app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '4',
        STICKY_OPTIONS: JSON.stringify({
          proxy: true,
          seed: 7,
          headTimeout: 300,
          maxHeaderBytes: 2048,
        }),
      },
    });
    port = app.port();
    // Every request comes from the same TCP peer, as behind a proxy. The client wrote an
    // X-Forwarded-For of its own; the proxy appended the address it saw, which is the key
    // (trustedProxies defaults to 1): the later tests send that address alone.
    for (const client of CLIENTS) {
      const r = await request({ port, headers: { 'x-forwarded-for': `6.6.6.6, ${client}` } });
      home.set(client, r.body?.slot ?? -1);
    }
  });

  afterAll(stopFixtures);

  it('pins each forwarded client to one worker and uses every worker', async () => {
    for (const client of CLIENTS) {
      const r = await request({ port, headers: { 'x-forwarded-for': client } });
      expect(r.body?.slot, `${client}\n${app.transcript()}`).toBe(home.get(client));
    }
    expect(new Set(home.values())).toEqual(new Set([0, 1, 2, 3]));
  });

  it('routes each of 60 requests on one keep-alive agent by its own header', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      for (let i = 0; i < 60; i++) {
        const client = CLIENTS[(i * 7) % CLIENTS.length] as string;
        const r = await request({ port, agent, headers: { 'x-forwarded-for': client } });
        expect(r.body?.slot, `request ${i} for ${client}`).toBe(home.get(client));
      }
    } finally {
      agent.destroy();
    }
  });

  it('delivers a 10 MB body intact through the primary that read its head', async () => {
    const body = randomBytes(10 * 1024 * 1024);
    const r = await request({
      port,
      method: 'POST',
      body,
      headers: { 'x-forwarded-for': CLIENTS[3] as string },
      timeoutMs: 15_000,
    });
    expect(r.body).toMatchObject({
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
      slot: home.get(CLIENTS[3] as string),
    });
  });

  it('routes a head split over many writes exactly as an unsplit one', async () => {
    const client = CLIENTS[9] as string;
    const head = `GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${client}\r\nConnection: close\r\n\r\n`;
    const ex = await rawExchange({ port, source: '127.0.0.1', send: head, timeoutMs: 3_000 });
    expect(ex.data).toMatch(new RegExp(`"slot":${home.get(client)}`));
  });

  it('answers 400 with the reason when the header is missing, 431 for a huge head, 408 for a slow one', async () => {
    const missing = await rawExchange({
      port,
      source: '127.0.0.1',
      send: 'GET / HTTP/1.1\r\nHost: x\r\n\r\n',
      timeoutMs: 3_000,
    });
    expect(missing.data).toMatch(
      /^HTTP\/1\.1 400 [\s\S]*missing or unusable x-forwarded-for header \(sticky-mesh: set ignoreMissingHeader to route such requests by the connection's address\)/,
    );
    const garbage = await rawExchange({
      port,
      source: '127.0.0.1',
      send: 'GET / HTTP/1.1\r\nX-Forwarded-For: unknown\r\n\r\n',
      timeoutMs: 3_000,
    });
    expect(garbage.data).toMatch(/^HTTP\/1\.1 400 /);
    const huge = await rawExchange({
      port,
      source: '127.0.0.1',
      send: `GET / HTTP/1.1\r\nX-Pad: ${'a'.repeat(4096)}\r\n\r\n`,
      timeoutMs: 3_000,
    });
    expect(huge.data).toMatch(/^HTTP\/1\.1 431 /);
    const slow = await rawExchange({
      port,
      source: '127.0.0.1',
      send: 'GET / HTTP/1.1\r\nHost: x\r\n',
      timeoutMs: 3_000,
    });
    expect(slow.data).toMatch(/^HTTP\/1\.1 408 /);
  });
});

describe('proxy mode options', () => {
  afterAll(stopFixtures);

  it('ignoreMissingHeader routes a request without the header by the TCP peer, and Forwarded works as the header', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        STICKY_OPTIONS: JSON.stringify({
          proxy: true,
          header: 'Forwarded',
          ignoreMissingHeader: true,
          seed: 7,
        }),
      },
    });
    const port = app.port();
    const plain = await request({ port, source: '127.0.0.5' });
    expect(plain.status).toBe(200);
    // Every request comes from the same TCP peer: only the header can spread them.
    const slots = new Set<number | undefined>();
    for (let i = 1; i <= 12; i++) {
      const a = await request({
        port,
        headers: { forwarded: `for="[2001:db8::${i.toString(16)}]:4711";proto=https` },
      });
      const b = await request({
        port,
        headers: { forwarded: `For=2001:DB8:0::${i.toString(16)}` },
      });
      expect(a.body?.slot, `client ${i}`).toBe(b.body?.slot);
      slots.add(a.body?.slot);
    }
    expect(slots).toEqual(new Set([0, 1]));
  });
});

/** A connection that sent `send` (possibly nothing) and stays open; resolves once connected. */
function openSilent(port: number, send = ''): Promise<net.Socket> {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1' }, () => {
      socket.off('error', reject);
      socket.on('error', () => {});
      if (send) socket.write(send);
      resolve(socket);
    });
    socket.once('error', reject);
  });
}

/**
 * Writes `bytes` one at a time, `gapMs` apart, on a fresh connection, until the server answers
 * or closes; what came back, when (ms after connecting) and how many bytes had been sent by then.
 */
function trickle(
  port: number,
  bytes: Buffer,
  gapMs: number,
): Promise<{ data: string; afterMs: number; sent: number }> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1' });
    const got: Buffer[] = [];
    let sent = 0;
    let connectedAt = 0;
    let answered: { afterMs: number; sent: number } | undefined;
    const mark = () => (answered ??= { afterMs: Date.now() - connectedAt, sent });
    let timer: NodeJS.Timeout | undefined;
    const next = () => {
      if (answered || sent === bytes.length) return;
      socket.write(bytes.subarray(sent, sent + 1));
      sent++;
      timer = setTimeout(next, gapMs);
    };
    socket.on('connect', () => {
      socket.setNoDelay(true);
      connectedAt = Date.now();
      next();
    });
    socket.on('data', (chunk: Buffer) => {
      mark();
      got.push(chunk);
    });
    socket.on('error', () => {});
    socket.on('close', () => {
      clearTimeout(timer);
      resolve({ data: Buffer.concat(got).toString('latin1'), ...mark() });
    });
    setTimeout(() => socket.destroy(), bytes.length * gapMs + 3_000).unref();
  });
}

/** GET /me from a fresh connection as forwarded client `client`: the answer's status line. */
async function statusOf(port: number, client: string): Promise<string> {
  const ex = await rawExchange({
    port,
    source: '127.0.0.1',
    send: `GET /me HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: ${client}\r\nConnection: close\r\n\r\n`,
    timeoutMs: 3_000,
  });
  return ex.data.split('\r\n')[0] ?? '';
}

describe.each([
  ['the handle', {}],
  ['a socket', { STICKY_MESH_HEAD_READS: 'socket' }],
] as const)('proxy mode against hostile clients (heads read through %s)', (_via, env) => {
  let app: FixtureProcess;
  let port: number;

  beforeAll(async () => {
    app = await startFixture({
      fixture: 'session-app.mjs',
      env: {
        WORKERS: '2',
        ...env,
        STICKY_OPTIONS: JSON.stringify({ headTimeout: 1_000, maxHeadReads: 3 }),
      },
    });
    port = app.port();
  });

  afterAll(stopFixtures);

  it('answers 408 at the deadline to a client sending one byte every 300 ms: bytes do not extend it', async () => {
    // 7.5 s of bytes at 300 ms each: an idle timer (reset by each byte) would never fire.
    const head = Buffer.from('GET /me HTTP/1.1\r\nHost: x\r\n', 'latin1');
    const r = await trickle(port, head, 300);
    expect(r.data, `answered after ${r.afterMs} ms, ${r.sent} bytes sent`).toMatch(
      /^HTTP\/1\.1 408 /,
    );
    expect(r.sent, `answered after ${r.afterMs} ms`).toBeLessThan(head.length);
    expect(r.afterMs).toBeGreaterThanOrEqual(900);
    expect(r.afterMs).toBeLessThan(2_500);
  });

  it('answers 503 at once beyond maxHeadReads heads in flight, counts it, and takes connections again as reads end', async () => {
    const before = await sessionAppStats<{ headReadsRefused?: number }>(app);
    // Three connections whose heads never complete (one silent, two partial): the limit.
    const held = [
      await openSilent(port),
      await openSilent(port, 'GET /me HTTP/1.1\r\n'),
      await openSilent(port, 'G'),
    ];
    try {
      expect(await statusOf(port, '10.0.0.1')).toBe('HTTP/1.1 503 Service Unavailable');
      const after = await sessionAppStats<{ headReadsRefused?: number }>(app);
      expect(after.headReadsRefused).toBe((before.headReadsRefused ?? 0) + 1);
      // A client that leaves frees its place at once.
      held.pop()?.destroy();
      await expect.poll(() => statusOf(port, '10.0.0.2')).toBe('HTTP/1.1 200 OK');
    } finally {
      for (const socket of held) socket.destroy();
    }
    // Once a request has gone through, the primary has seen those clients leave.
    await expect.poll(() => statusOf(port, '10.0.0.3')).toBe('HTTP/1.1 200 OK');
    // Every read that ended gave its place back, once: three connections fit again, none of
    // them refused, and a fourth is refused.
    const again = [await openSilent(port), await openSilent(port), await openSilent(port)];
    try {
      expect(await statusOf(port, '10.0.0.4')).toBe('HTTP/1.1 503 Service Unavailable');
      expect(again.map((socket) => socket.bytesRead)).toEqual([0, 0, 0]);
    } finally {
      for (const socket of again) socket.destroy();
    }
    await expect.poll(() => statusOf(port, '10.0.0.5')).toBe('HTTP/1.1 200 OK');
  });
});
