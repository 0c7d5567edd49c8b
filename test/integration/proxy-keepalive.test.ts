import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import type net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { rendezvous } from '../../src/hash.js';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { Connection } from '../helpers/connection.js';
import { request } from '../helpers/http.js';

const SEED = 7;
const ALL = [0, 1, 2, 3];
const pick = rendezvous(SEED, ALL.length);
const CLIENTS = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);

function get(client: string | undefined, extra = ''): string {
  const xff = client === undefined ? '' : `X-Forwarded-For: ${client}\r\n`;
  return `GET / HTTP/1.1\r\nHost: app\r\n${xff}${extra}\r\n`;
}

function slotOf(body: Buffer): number {
  return (JSON.parse(body.toString()) as { slot: number }).slot;
}

// Heads are read straight from the handle where Node allows it (the connection stays with the
// worker's server between requests); the portable path reads through sockets and detaches.
describe.each([
  ['handle', 'handle'],
  ['socket', 'socket'],
])('proxy mode: many clients on one keep-alive connection (head reads via %s)', (_, via) => {
  let app: FixtureProcess;
  let port: number;

  beforeAll(async () => {
    app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        STICKY_MESH_HEAD_READS: via,
        WORKERS: '4',
        KEEP_ALIVE_TIMEOUT: '2500',
        STICKY_OPTIONS: JSON.stringify({ proxy: true, seed: SEED }),
      },
    });
    port = app.port();
  });
  afterAll(stopFixtures);

  it('sends each request to its own key’s worker and keeps the one connection open', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<net.Socket>();
    try {
      for (let i = 0; i < 60; i++) {
        const client = CLIENTS[(i * 7) % CLIENTS.length] as string;
        const r = await request({ port, agent, headers: { 'x-forwarded-for': client } });
        sockets.add(r.socket);
        expect(r.body?.slot, `request ${i} for ${client}`).toBe(pick(client, ALL));
      }
    } finally {
      agent.destroy();
    }
    expect(sockets.size).toBe(1);
    expect(new Set(CLIENTS.map((c) => pick(c, ALL)))).toEqual(new Set(ALL));
  });

  it('carries request bodies intact while the connection moves between workers', async () => {
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<net.Socket>();
    try {
      for (let i = 0; i < 16; i++) {
        const client = CLIENTS[i] as string;
        const body = randomBytes(64 * 1024 + i * 4099);
        const r = await request({
          port,
          agent,
          method: 'POST',
          body,
          headers: { 'x-forwarded-for': client },
        });
        sockets.add(r.socket);
        expect(r.body, `request ${i}`).toMatchObject({
          slot: pick(client, ALL),
          bytes: body.length,
          sha256: createHash('sha256').update(body).digest('hex'),
        });
      }
    } finally {
      agent.destroy();
    }
    expect(sockets.size).toBe(1);
  });

  it('routes a later request whose head arrives a byte at a time like an unsplit one', async () => {
    const conn = await Connection.open(port);
    try {
      for (const client of CLIENTS.slice(0, 6)) {
        const bytes = Buffer.from(get(client));
        for (let i = 0; i < bytes.length; i += 3) {
          conn.socket.write(bytes.subarray(i, i + 3));
          await new Promise((r) => setTimeout(r, 1));
        }
        const r = await conn.response();
        expect(r.status).toBe(200);
        expect(slotOf(r.body), client).toBe(pick(client, ALL));
      }
    } finally {
      conn.socket.destroy();
    }
  });

  it('closes an idle connection quietly after keepAliveTimeout, wherever it waits', async () => {
    const conn = await Connection.open(port);
    conn.socket.write(get(CLIENTS[0]));
    expect((await conn.response()).status).toBe(200);
    conn.socket.write(get(CLIENTS[1]));
    expect((await conn.response()).status).toBe(200);
    // Nothing more is sent: the worker waiting for the next head closes it without an answer.
    // (2.5 s: Node's clients drop a connection whose Keep-Alive hint is under 2 s.)
    expect(await conn.closedByServer(5_000)).toBe('');
  });

  it('answers 400 and closes when a later request lacks the header', async () => {
    const conn = await Connection.open(port);
    conn.socket.write(get(CLIENTS[2]));
    expect((await conn.response()).status).toBe(200);
    conn.socket.write(get(undefined));
    const r = await conn.response();
    expect(r.status).toBe(400);
    expect(r.body.toString()).toMatch(
      /missing or unusable x-forwarded-for header \(sticky-mesh: set ignoreMissingHeader/,
    );
    await conn.closedByServer(3_000);
  });

  it('answers every pipelined request (served where the connection is) and loses none', async () => {
    const conn = await Connection.open(port);
    try {
      const keys = CLIENTS.slice(10, 16);
      conn.socket.write(keys.map((k) => get(k)).join(''));
      const slots: number[] = [];
      for (const _ of keys) {
        const r = await conn.response();
        expect(r.status).toBe(200);
        slots.push(slotOf(r.body));
      }
      expect(slots[0]).toBe(pick(keys[0] as string, ALL));
      // Afterwards the connection is routed per request again.
      for (const client of CLIENTS.slice(20, 28)) {
        conn.socket.write(get(client));
        expect(slotOf((await conn.response()).body), client).toBe(pick(client, ALL));
      }
    } finally {
      conn.socket.destroy();
    }
  });
});

describe('proxy mode: shutdown', () => {
  afterAll(stopFixtures);

  it('closes kept-open proxy connections between requests at once on shutdown', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        KEEP_ALIVE_TIMEOUT: '30000',
        STICKY_OPTIONS: JSON.stringify({ proxy: true, seed: SEED }),
      },
    });
    const conns = await Promise.all(CLIENTS.slice(0, 6).map(() => Connection.open(app.port())));
    await Promise.all(
      conns.map(async (conn, i) => {
        conn.socket.write(get(CLIENTS[i]));
        expect((await conn.response()).status).toBe(200);
      }),
    );
    const started = Date.now();
    app.signal('SIGTERM');
    for (const conn of conns) expect(await conn.closedByServer(5_000)).toBe('');
    await app.waitForExit(5_000);
    // Far below the 30 s keep-alive timeout: idle connections do not hold the drain.
    expect(Date.now() - started).toBeLessThan(3_000);
  });
});

describe('proxy mode: sync', () => {
  afterAll(stopFixtures);

  async function start(delay: string) {
    return startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        SYNC_EVENT: 'sticky-sync',
        SYNC_DELAY: delay,
        STICKY_OPTIONS: JSON.stringify({
          proxy: true,
          seed: SEED,
          sync: { isSyncable: true, event: 'sticky-sync' },
        }),
      },
    });
  }

  it('replays the request only once the application emits the event on the socket', async () => {
    const app = await start('300');
    const body = randomBytes(200_000);
    const started = Date.now();
    const r = await request({
      port: app.port(),
      method: 'POST',
      body,
      headers: { 'x-forwarded-for': CLIENTS[0] as string },
    });
    expect(Date.now() - started).toBeGreaterThanOrEqual(290);
    expect(r.body).toMatchObject({
      bytes: body.length,
      sha256: createHash('sha256').update(body).digest('hex'),
    });
    expect(app.events('syncWait').length).toBeGreaterThan(0);
  });

  it('holds the request while the event is never emitted', async () => {
    const app = await start('never');
    await expect(
      request({
        port: app.port(),
        headers: { 'x-forwarded-for': CLIENTS[0] as string },
        timeoutMs: 800,
      }),
    ).rejects.toThrow(/no complete reply/);
    expect(app.events('syncWait').length).toBe(1);
  });
});
