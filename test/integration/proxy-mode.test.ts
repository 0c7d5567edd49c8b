import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { rawExchange, request } from '../helpers/http.js';

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
    // Every request comes from the same TCP peer, as behind a proxy.
    for (const client of CLIENTS) {
      const r = await request({ port, headers: { 'x-forwarded-for': `${client}, 10.0.0.1` } });
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
      /^HTTP\/1\.1 400 [\s\S]*missing or unusable x-forwarded-for header/,
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
