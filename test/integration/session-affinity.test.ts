import { afterAll, describe, expect, it } from 'vitest';
import { rendezvous } from '../../src/hash.js';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import { RawConnection } from '../helpers/raw-http.js';

afterAll(stopFixtures);

const SEED = 11;
const WORKERS = 4;
const pick = rendezvous(SEED, WORKERS);
const ALL = [0, 1, 2, 3];

/** Starts the fixture with session-id affinity (and the given extra options). */
async function start(options: Record<string, unknown>) {
  return startFixture({
    fixture: 'ip-app.mjs',
    env: {
      WORKERS: String(WORKERS),
      STICKY_OPTIONS: JSON.stringify({ seed: SEED, sessionAffinity: true, ...options }),
    },
  });
}

/** One id made by each worker slot, collected by asking from addresses that land on each. */
async function idsBySlot(
  port: number,
  headers: (i: number) => Record<string, string>,
  source: (i: number) => string = () => '127.0.0.1',
) {
  const ids = new Map<number, string>();
  for (let i = 0; i < 64 && ids.size < WORKERS; i++) {
    const r = await request({ port, path: '/genid', headers: headers(i), source: source(i) });
    const body = r.body as unknown as { slot: number; id: string };
    ids.set(body.slot, body.id);
  }
  expect([...ids.keys()].sort()).toEqual(ALL);
  return ids;
}

/** A signed express-session cookie value for `id` (the signature is not checked by routing). */
function cookie(id: string): string {
  return `connect.sid=${encodeURIComponent(`s:${id}.c2lnbmF0dXJl`)}; theme=dark`;
}

describe('session-id affinity behind a proxy', () => {
  it('routes by the slot the id names (cookie or engine.io sid), whatever the address says', async () => {
    const app = await start({ proxy: true });
    const port = app.port();
    const xff = (i: number) => ({ 'x-forwarded-for': `198.51.100.${i + 1}` });
    const ids = await idsBySlot(port, xff);
    for (const [slot, id] of ids) {
      for (let i = 0; i < 8; i++) {
        const viaCookie = await request({ port, headers: { ...xff(i), cookie: cookie(id) } });
        expect(viaCookie.body?.slot, `cookie ${id} from ${i}`).toBe(slot);
        const viaQuery = await request({
          port,
          path: `/socket.io/?EIO=4&transport=polling&sid=${id}`,
          headers: xff(i),
        });
        expect(viaQuery.body?.slot, `sid ${id} from ${i}`).toBe(slot);
      }
    }
  });

  it('routes an id that names no slot (foreign, tampered, unsigned garbage) by the address', async () => {
    const app = await start({ proxy: true });
    const port = app.port();
    const foreign = ['X'.repeat(27), 'abc', '%%%', 's:.', ''];
    for (let i = 0; i < 20; i++) {
      const client = `203.0.113.${i + 1}`;
      const id = foreign[i % foreign.length] as string;
      const r = await request({
        port,
        headers: { 'x-forwarded-for': client, cookie: `connect.sid=${id}` },
      });
      expect(r.body?.slot, `${client} with ${JSON.stringify(id)}`).toBe(pick(client, ALL));
    }
  });

  it('keeps a session on its slot on every request of a shared keep-alive connection', async () => {
    const app = await start({ proxy: true });
    const port = app.port();
    const ids = await idsBySlot(port, (i) => ({ 'x-forwarded-for': `198.51.100.${i + 1}` }));
    const { Agent } = await import('node:http');
    const agent = new Agent({ keepAlive: true, maxSockets: 1 });
    const sockets = new Set<unknown>();
    try {
      for (let i = 0; i < 40; i++) {
        const slot = i % WORKERS;
        const r = await request({
          port,
          agent,
          headers: { 'x-forwarded-for': '192.0.2.1', cookie: cookie(ids.get(slot) as string) },
        });
        sockets.add(r.socket);
        expect(r.body?.slot, `request ${i}`).toBe(slot);
      }
    } finally {
      agent.destroy();
    }
    expect(sockets.size).toBe(1);
  });

  it('a sibling balancer with the same seed and worker count routes the ids the same way', async () => {
    const first = await start({ proxy: true });
    const second = await start({ proxy: true });
    const ids = await idsBySlot(first.port(), (i) => ({
      'x-forwarded-for': `198.51.100.${i + 1}`,
    }));
    for (const [slot, id] of ids) {
      const r = await request({
        port: second.port(),
        headers: { 'x-forwarded-for': '192.0.2.77', cookie: cookie(id) },
      });
      expect(r.body?.slot, id).toBe(slot);
    }
  });

  it("falls back to the address while the id's worker is down, and returns once it is back", async () => {
    const app = await start({ proxy: true, respawnDelay: 300 });
    const port = app.port();
    const ids = await idsBySlot(port, (i) => ({ 'x-forwarded-for': `198.51.100.${i + 1}` }));
    // A client whose address maps elsewhere holds a session on slot `owner`.
    const owner = 2;
    const client =
      Array.from({ length: 50 }, (_, i) => `192.0.2.${i + 1}`).find(
        (c) => pick(c, ALL) !== owner,
      ) ?? '';
    const headers = { 'x-forwarded-for': client, cookie: cookie(ids.get(owner) as string) };
    const crash = request({ port, path: '/crash', headers }).catch(() => undefined);
    const exited = await app.waitFor('workerExit', { match: (e) => e.slot === owner });
    await crash;
    const meanwhile = await request({ port, headers });
    expect(meanwhile.status).toBe(200);
    expect(meanwhile.body?.slot).toBe(
      pick(
        client,
        ALL.filter((s) => s !== owner),
      ),
    );
    await app.waitFor('workerUp', { from: exited.index, match: (e) => e.slot === owner });
    const after = await request({ port, headers });
    expect(after.body?.slot).toBe(owner);
  });
});

describe('session-id affinity without a proxy (IP mode)', () => {
  it('routes by the id when it names a slot, else by the client address', async () => {
    const app = await start({});
    const port = app.port();
    const sources = loopbackSources(32);
    const ids = await idsBySlot(
      port,
      () => ({}),
      (i) => `127.0.1.${i + 1}`,
    );
    for (const [i, source] of sources.entries()) {
      const slot = i % WORKERS;
      const withId = await request({
        port,
        source,
        headers: { cookie: cookie(ids.get(slot) as string) },
      });
      expect(withId.body?.slot, `${source} with an id of slot ${slot}`).toBe(slot);
      const without = await request({ port, source });
      expect(without.body?.slot, source).toBe(pick(source, ALL));
    }
  });
});

describe('session-id affinity in IP mode: the worker checks the first request too', () => {
  it('a new connection whose first request names another worker is served there; an upgrade moves there', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: String(WORKERS),
        UPGRADE: 'echo',
        STICKY_OPTIONS: JSON.stringify({ seed: SEED, sessionAffinity: true }),
      },
    });
    const port = app.port();
    // The primary reads no head in IP mode: the connection goes to its address's worker ...
    const home = pick('127.0.0.1', ALL);
    const other = ALL.find((s) => s !== home) as number;
    const ids = await idsBySlot(
      port,
      () => ({}),
      (i) => `127.0.1.${i + 1}`,
    );
    const slotOf = (answer: { headers: Record<string, string | string[] | undefined> }) =>
      Number(answer.headers['x-worker-slot']);
    const conn = await RawConnection.open(port);
    try {
      // ... whose gate sends a first request carrying another worker's session there.
      await conn.write(
        `GET /first HTTP/1.1\r\nHost: app\r\nCookie: ${cookie(ids.get(other) as string)}\r\n\r\n`,
      );
      expect(slotOf(await conn.answer())).toBe(other);
      // The connection itself stayed home: a request without an id is served there.
      await conn.write('GET /second HTTP/1.1\r\nHost: app\r\n\r\n');
      expect(slotOf(await conn.answer())).toBe(home);
    } finally {
      conn.destroy();
    }
    // A WebSocket-style upgrade as a new connection's first request, with another worker's
    // engine.io sid: it moves (through the primary) to that worker, which takes the upgrade.
    const ws = await RawConnection.open(port);
    try {
      await ws.write(
        `GET /socket.io/?EIO=4&transport=websocket&sid=${ids.get(other)} HTTP/1.1\r\n` +
          'Host: app\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n',
      );
      const switched = await ws.answer();
      expect(switched.status).toBe(101);
      expect(slotOf(switched)).toBe(other);
      await ws.write('through');
      await ws.received('through'.length);
      expect(ws.rest().toString()).toBe('through');
    } finally {
      ws.destroy();
    }
  });
});
