import { createHash, randomBytes } from 'node:crypto';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { rendezvous } from '../../src/hash.js';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { isAlive } from '../helpers/proc.js';
import { type RawAnswer, RawConnection } from '../helpers/raw-http.js';

/**
 * Relays (src/worker/relay.ts): on a kept-open proxy connection, a later request for another
 * worker is written over a channel to that worker and its answer comes back on the same client
 * connection, which never moves. Each test drives one raw connection, the way a proxy in front
 * of the cluster would, with keys picked so that consecutive requests belong to different
 * workers. The worker the connection's first request reached holds it ("the holder").
 */

const SEED = 7;
const pickSlot = rendezvous(SEED, 4);
const pickSlot2 = rendezvous(SEED, 2);
let keysMade = 0;

/** A fresh client address (the X-Forwarded-For routing key) whose worker is `slot`. */
function keyFor(slot: number, workers = 4): string {
  const pick = workers === 4 ? pickSlot : pickSlot2;
  const live = Array.from({ length: workers }, (_, i) => i);
  for (;;) {
    const n = keysMade++;
    const key = `198.51.${(n >> 8) & 255}.${n & 255}`;
    if (pick(key, live) === slot) return key;
  }
}

function get(key: string, path = '/', extra = ''): string {
  return `GET ${path} HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${key}\r\n${extra}\r\n`;
}

function head(key: string, path = '/'): string {
  return `HEAD ${path} HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${key}\r\n\r\n`;
}

function post(key: string, body: Buffer, path = '/'): Buffer {
  const lines = `POST ${path} HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${key}\r\nContent-Length: ${body.length}\r\n\r\n`;
  return Buffer.concat([Buffer.from(lines, 'latin1'), body]);
}

function sha256(bytes: Buffer): string {
  return createHash('sha256').update(bytes).digest('hex');
}

/** What the fixture's handler said in its answer headers (test/fixtures/ip-app.mjs). */
function who(answer: RawAnswer): { slot: number; pid: number; url: string } {
  return {
    slot: Number(answer.headers['x-worker-slot']),
    pid: Number(answer.headers['x-worker-pid']),
    url: answer.headers['x-request-url'] ?? '',
  };
}

function json(answer: RawAnswer): Record<string, unknown> {
  return JSON.parse(answer.body.toString('utf8')) as Record<string, unknown>;
}

/** Opens a connection whose first request (routed by the primary) makes `slot` its holder. */
async function openAt(
  port: number,
  slot: number,
  workers = 4,
): Promise<{ conn: RawConnection; holderPid: number }> {
  const conn = await RawConnection.open(port);
  opened.add(conn);
  await conn.write(get(keyFor(slot, workers)));
  const first = await conn.answer();
  expect(first.status).toBe(200);
  expect(who(first).slot).toBe(slot);
  return { conn, holderPid: who(first).pid };
}

/** Connections a test opened, destroyed after it whatever happened. */
const opened = new Set<RawConnection>();
afterEach(() => {
  for (const conn of opened) conn.destroy();
  opened.clear();
});

/** `stats()` of `slot`'s worker, asked on a connection of its own. */
async function workerStats(
  port: number,
  slot: number,
  workers = 4,
): Promise<{ pid: number; handedBack: number; connections: number }> {
  const conn = await RawConnection.open(port);
  opened.add(conn);
  await conn.write(get(keyFor(slot, workers), '/stats'));
  const answer = await conn.answer();
  conn.destroy();
  const body = json(answer) as { pid: number; stats: { handedBack: number; connections: number } };
  expect(body.stats, 'stats() of the worker').toBeDefined();
  return { pid: body.pid, ...body.stats };
}

/** Asks `slot`'s worker to close its idle connections (GET /close-idle), on a connection of its own. */
async function closeIdle(port: number, slot: number, workers = 4): Promise<void> {
  const conn = await RawConnection.open(port);
  opened.add(conn);
  await conn.write(get(keyFor(slot, workers), '/close-idle', 'Connection: close\r\n'));
  await conn.answer().catch(() => undefined);
  conn.destroy();
  opened.delete(conn);
}

/** The ip-app fixture in proxy mode with `workers` workers and this file's seed. */
function startProxyApp(workers: number, env: Record<string, string> = {}): Promise<FixtureProcess> {
  return startFixture({
    fixture: 'ip-app.mjs',
    env: {
      WORKERS: String(workers),
      STICKY_OPTIONS: JSON.stringify({ proxy: true, seed: SEED }),
      ...env,
    },
  });
}

describe('proxy mode: requests for other workers are relayed on the kept-open connection', () => {
  let app: FixtureProcess;
  let port: number;

  beforeAll(async () => {
    app = await startProxyApp(4, { KEEP_ALIVE_TIMEOUT: '1000', UPGRADE: 'echo' });
    port = app.port();
  });
  afterAll(stopFixtures);

  it('carries Content-Length bodies (1 B, 64 KiB, 1 MiB) to each worker intact', async () => {
    const before = await workerStats(port, 0);
    const { conn, holderPid } = await openAt(port, 0);
    const cases = [
      { slot: 1, body: randomBytes(1) },
      { slot: 2, body: randomBytes(64 * 1024) },
      { slot: 3, body: randomBytes(1024 * 1024) },
      { slot: 0, body: randomBytes(1000) },
      { slot: 2, body: randomBytes(1024 * 1024 + 17) },
      { slot: 1, body: randomBytes(64 * 1024) },
    ];
    const pids = new Set<number>([holderPid]);
    for (const [i, { slot, body }] of cases.entries()) {
      await conn.write(post(keyFor(slot), body, `/?n=${i}`));
      const answer = await conn.answer();
      expect(answer.status, `request ${i}`).toBe(200);
      expect(who(answer), `request ${i}`).toMatchObject({ slot, url: `/?n=${i}` });
      expect(json(answer), `request ${i}`).toMatchObject({
        bytes: body.length,
        sha256: sha256(body),
      });
      pids.add(who(answer).pid);
    }
    expect(pids.size, 'every worker answered on the one connection').toBe(4);
    expect(conn.closed).toBe(false);
    // The connection is still the holder's: a request for it is served there, nothing was moved.
    await conn.write(get(keyFor(0), '/stats'));
    const stats = json(await conn.answer()) as { pid: number; stats: { handedBack: number } };
    expect(stats.pid).toBe(holderPid);
    expect(stats.stats.handedBack).toBe(before.handedBack);
  });

  it('re-frames a chunked body written in pieces with pauses, and it arrives intact', async () => {
    const { conn } = await openAt(port, 1);
    const chunks = [1, 1000, 65_536, 3, 300_000].map((n) => randomBytes(n));
    const framed = Buffer.concat([
      Buffer.from(
        `POST /chunked HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${keyFor(2)}\r\n` +
          'Transfer-Encoding: chunked\r\n\r\n',
        'latin1',
      ),
      ...chunks.flatMap((c) => [
        Buffer.from(`${c.length.toString(16)}\r\n`, 'latin1'),
        c,
        Buffer.from('\r\n', 'latin1'),
      ]),
      Buffer.from('0\r\n\r\n', 'latin1'),
    ]);
    // Cut everywhere: inside the head, inside size lines, inside data, inside the last chunk.
    const cuts = [10, 70, 120, 125, 1200, 40_000, 70_000, framed.length - 3, framed.length];
    let from = 0;
    for (const cut of cuts) {
      await conn.write(framed.subarray(from, cut));
      from = cut;
      await delay(15);
    }
    const answer = await conn.answer();
    expect(who(answer).slot).toBe(2);
    const whole = Buffer.concat(chunks);
    expect(json(answer)).toMatchObject({ bytes: whole.length, sha256: sha256(whole) });
    // The connection goes on, for the holder and for another sibling.
    await conn.write(get(keyFor(1)));
    expect(who(await conn.answer()).slot).toBe(1);
    await conn.write(get(keyFor(3)));
    expect(who(await conn.answer()).slot).toBe(3);
  });

  it.each([
    ['relayed', 2],
    ['served by the holder', 1],
  ])('keeps the trailer fields of a chunked body (%s)', async (_, slot) => {
    const { conn } = await openAt(port, 1);
    await conn.write(
      `POST /trailers HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${keyFor(slot)}\r\n` +
        'Transfer-Encoding: chunked\r\nTrailer: x-checksum\r\n\r\n' +
        '5\r\nhello\r\n0\r\nx-checksum: 42\r\n\r\n',
    );
    const answer = await conn.answer();
    expect(who(answer).slot).toBe(slot);
    expect(json(answer)).toMatchObject({ bytes: 5, trailers: { 'x-checksum': '42' } });
  });

  it('finds the end of a chunked relayed answer, and the next request is routed afresh', async () => {
    const { conn } = await openAt(port, 0);
    await conn.write(get(keyFor(3), '/stream?bytes=300000&piece=7000&chunked'));
    const answer = await conn.answer();
    expect(answer.headers['transfer-encoding']).toBe('chunked');
    expect(who(answer).slot).toBe(3);
    expect(sha256(answer.body)).toBe(answer.headers['x-sha256']);
    await conn.write(get(keyFor(1)));
    expect(who(await conn.answer()).slot).toBe(1);
    expect(conn.unread).toBe(0);
  });

  it('reads a relayed HEAD answer without a body, and the next requests are routed afresh', async () => {
    const { conn } = await openAt(port, 0);
    await conn.write(head(keyFor(1)));
    const first = await conn.answer({ head: true });
    expect(first.status).toBe(200);
    expect(Number(first.headers['content-length'])).toBeGreaterThan(0);
    expect(who(first).slot).toBe(1);
    // A second HEAD on the same channel, then a GET there: the reader must not eat its body.
    await conn.write(head(keyFor(1), '/again'));
    expect(who(await conn.answer({ head: true }))).toMatchObject({ slot: 1, url: '/again' });
    await conn.write(get(keyFor(1), '/after-head'));
    const after = await conn.answer();
    expect(who(after)).toMatchObject({ slot: 1, url: '/after-head' });
    expect(json(after)).toMatchObject({ slot: 1 });
    // A reader still waiting for a HEAD body would hold the next request on that sibling.
    await conn.write(head(keyFor(2)));
    expect(who(await conn.answer({ head: true })).slot).toBe(2);
    await conn.write(get(keyFor(3)));
    expect(who(await conn.answer()).slot).toBe(3);
    await conn.write(get(keyFor(0)));
    expect(who(await conn.answer()).slot).toBe(0);
    expect(conn.unread).toBe(0);
  });

  it.each([
    ['relayed', 1],
    ['served by the holder', 0],
  ])(
    'answers pipelined requests in order, none lost, when the first one is %s',
    async (_, firstSlot) => {
      const { conn } = await openAt(port, 0);
      const body = randomBytes(100_000);
      const requests = [
        get(keyFor(firstSlot), '/p0'),
        get(keyFor(2), '/p1'),
        get(keyFor(0), '/p2'),
        post(keyFor(3), body, '/p3'),
        head(keyFor(1), '/p4'),
        get(keyFor(2), '/slow?ms=100&p=5'),
        get(keyFor(3), '/p6'),
      ];
      await conn.write(Buffer.concat(requests.map((r) => Buffer.from(r))));
      const urls: string[] = [];
      for (const [i] of requests.entries()) {
        const answer = await conn.answer({ head: i === 4 });
        expect(answer.status, `answer ${i}`).toBe(200);
        urls.push(who(answer).url);
        if (i === 0) expect(who(answer).slot).toBe(firstSlot);
        if (i === 3)
          expect(json(answer)).toMatchObject({ bytes: body.length, sha256: sha256(body) });
      }
      expect(urls).toEqual(['/p0', '/p1', '/p2', '/p3', '/p4', '/slow?ms=100&p=5', '/p6']);
      expect(conn.unread).toBe(0);
      // Afterwards each request is routed by its own key again.
      for (const slot of [3, 1, 0, 2]) {
        await conn.write(get(keyFor(slot)));
        expect(who(await conn.answer()).slot).toBe(slot);
      }
    },
  );

  it('passes 100 Continue through: the body is sent after it, and the answer follows', async () => {
    const { conn } = await openAt(port, 0);
    const body = randomBytes(200_000);
    await conn.write(
      `POST /continue HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${keyFor(2)}\r\n` +
        `Expect: 100-continue\r\nContent-Length: ${body.length}\r\n\r\n`,
    );
    const interim = await conn.answer();
    expect(interim.status).toBe(100);
    await conn.write(body);
    const answer = await conn.answer();
    expect(answer.status).toBe(200);
    expect(who(answer).slot).toBe(2);
    expect(json(answer)).toMatchObject({ bytes: body.length, sha256: sha256(body) });
    await conn.write(get(keyFor(3)));
    expect(who(await conn.answer()).slot).toBe(3);
  });

  it('shows the serving worker the client connection’s address, port and family', async () => {
    const { conn } = await openAt(port, 3);
    const { address, port: clientPort } = conn.local;
    for (const slot of [3, 0, 1, 2, 0]) {
      await conn.write(get(keyFor(slot)));
      const answer = await conn.answer();
      expect(who(answer).slot).toBe(slot);
      expect(answer.headers, `slot ${slot}`).toMatchObject({
        'x-remote-address': address,
        'x-remote-port': String(clientPort),
        'x-remote-family': 'IPv4',
      });
      expect(json(answer).remote).toBe(address);
    }
  });

  it.each([
    ['relayed', 1],
    ['served by the holder', 0],
  ])(
    'delivers an 8 MiB answer (%s) to a client that stops reading for longer than keepAliveTimeout',
    async (_, slot) => {
      const { conn } = await openAt(port, 0);
      const size = 8 * 1024 * 1024;
      conn.socket.pause();
      await conn.write(get(keyFor(slot), `/big?bytes=${size}`));
      await delay(1_200);
      conn.socket.resume();
      const answer = await conn.answer({ timeoutMs: 10_000 });
      expect(who(answer).slot).toBe(slot);
      expect(answer.body.length).toBe(size);
      expect(sha256(answer.body)).toBe(answer.headers['x-sha256']);
      await conn.write(get(keyFor(2)));
      expect(who(await conn.answer()).slot).toBe(2);
    },
  );

  it('keeps the connection through a relayed answer slower than keepAliveTimeout, then times it out idle', async () => {
    const { conn } = await openAt(port, 0);
    await conn.write(get(keyFor(1), '/slow?ms=1200'));
    const answer = await conn.answer({ timeoutMs: 5_000 });
    expect(json(answer)).toMatchObject({ slot: 1, slept: 1200 });
    const answeredAt = Date.now();
    await conn.closedByServer(4_000);
    // Idle from the answer on: closed after the keep-alive timeout (1 s), not before.
    expect(conn.closedAt - answeredAt).toBeGreaterThanOrEqual(900);
  });

  it.each([
    ['Connection: close, relayed', 1, '1.1'],
    ['Connection: close, served by the holder', 0, '1.1'],
    ['HTTP/1.0 without keep-alive, relayed', 1, '1.0'],
    ['HTTP/1.0 without keep-alive, served by the holder', 0, '1.0'],
  ])(
    'closes the connection after answering a request that asks so (%s)',
    async (_, slot, version) => {
      const { conn } = await openAt(port, 0);
      const close = version === '1.1' ? 'Connection: close\r\n' : '';
      await conn.write(
        `GET / HTTP/${version}\r\nHost: app\r\nX-Forwarded-For: ${keyFor(slot)}\r\n${close}\r\n`,
      );
      const answer = await conn.answer();
      expect(who(answer).slot).toBe(slot);
      expect(answer.headers.connection).toBe('close');
      const answeredAt = Date.now();
      await conn.closedByServer(3_000);
      expect(
        conn.closedAt - answeredAt,
        'closed at once, not by the keep-alive timeout',
      ).toBeLessThan(500);
    },
  );

  it('leaves a connection waiting for a relayed answer alone when the holder closes idle ones', async () => {
    const { conn } = await openAt(port, 0);
    const mark = app.received.length;
    await conn.write(get(keyFor(1), '/slow?ms=300'));
    await app.waitFor('slowStart', { from: mark });
    await closeIdle(port, 0);
    const answer = await conn.answer();
    expect(json(answer)).toMatchObject({ slot: 1, slept: 300 });
    await conn.write(get(keyFor(2)));
    expect(who(await conn.answer()).slot).toBe(2);
    // Idle now: the same call closes it (so the one above did have something to spare).
    await closeIdle(port, 0);
    await conn.closedByServer(1_000);
  });

  /**
   * Uploads 32 MiB for `slot` on a new connection of worker 0, which the application reads only
   * after 500 ms; returns how much the client could send (out of its process) by 350 ms.
   */
  async function uploadWhileUnread(slot: number): Promise<number> {
    const { conn } = await openAt(port, 0);
    const total = 32 * 1024 * 1024;
    const piece = randomBytes(1024 * 1024);
    // The head with the first piece: the body follows it closely, as a proxy sends it.
    const head = Buffer.from(
      `POST /hold?ms=500 HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${keyFor(slot)}\r\n` +
        `Content-Length: ${total}\r\n\r\n`,
    );
    let sent = 0;
    const sending = (async () => {
      await conn.write(Buffer.concat([head, piece]));
      sent += piece.length;
      while (sent < total) {
        await conn.write(piece);
        sent += piece.length;
      }
    })();
    await delay(350);
    const early = sent;
    await sending;
    const answer = await conn.answer({ timeoutMs: 10_000 });
    expect(json(answer)).toMatchObject({ slot, bytes: total });
    conn.destroy();
    return early;
  }

  it.each([
    // Timing decides whether the sibling reads the body's start with the channel's first bytes:
    // a few tries.
    ['relayed', 1, 3],
    ['served by the holder', 0, 1],
  ])('holds back an upload (%s) the application does not read yet', async (_, slot, tries) => {
    for (let i = 0; i < tries; i++) {
      // What left the client while nobody read: what sockets and their buffers hold, a few MiB.
      expect(
        await uploadWhileUnread(slot),
        `try ${i}: bytes sent before any was read`,
      ).toBeLessThan(12 * 1024 * 1024);
    }
  });

  it('closes a connection’s channels when the client closes it (no channel is left behind)', async () => {
    const siblings = [1, 2, 3];
    const counts = async () =>
      (await Promise.all(siblings.map((slot) => workerStats(port, slot)))).map(
        (s) => s.connections,
      );
    const before = await counts();
    const conns = await Promise.all([0, 1].map(() => openAt(port, 0)));
    for (const { conn } of conns) {
      for (const slot of siblings) {
        await conn.write(get(keyFor(slot)));
        expect(who(await conn.answer()).slot).toBe(slot);
      }
    }
    // Each client connection has a channel to each sibling: a connection there.
    expect((await counts()).map((n, i) => n - (before[i] ?? 0))).toEqual([2, 2, 2]);
    for (const { conn } of conns) conn.destroy();
    await expect.poll(counts).toEqual(before);
  });

  it('moves the connection through the primary for an upgrade to another worker', async () => {
    const before = await workerStats(port, 0);
    const { conn, holderPid } = await openAt(port, 0);
    // A relay first, so the connection has a channel open when it moves.
    await conn.write(get(keyFor(1)));
    expect(who(await conn.answer()).slot).toBe(1);
    await conn.write(
      `GET /ws HTTP/1.1\r\nHost: app\r\nX-Forwarded-For: ${keyFor(2)}\r\n` +
        'Connection: Upgrade\r\nUpgrade: echo\r\n\r\n',
    );
    const switched = await conn.answer();
    expect(switched.status).toBe(101);
    expect(who(switched)).toMatchObject({ slot: 2, url: '/ws' });
    expect(who(switched).pid).not.toBe(holderPid);
    await conn.write('ping through the upgrade');
    await conn.received('ping through the upgrade'.length);
    expect(conn.rest().toString()).toBe('ping through the upgrade');
    const after = await workerStats(port, 0);
    expect(after.handedBack - before.handedBack, 'the holder moved it').toBe(1);
  });
});

describe('proxy mode: a relaying sibling dies', () => {
  afterAll(stopFixtures);

  it('closes the client connection when the sibling dies mid-answer; the rest goes on', async () => {
    const app = await startProxyApp(2);
    const port = app.port();
    const [pid0, pid1] = [0, 1].map((slot) =>
      Number(app.events('workerUp', (l) => l.slot === slot)[0]?.pid),
    );
    // Another connection of the same holder, with a channel to the sibling, idle meanwhile.
    const other = await openAt(port, 0, 2);
    await other.conn.write(get(keyFor(1, 2)));
    expect(who(await other.conn.answer()).pid).toBe(pid1);

    const { conn, holderPid } = await openAt(port, 0, 2);
    expect(holderPid).toBe(pid0);
    const mark = app.received.length;
    await conn.write(get(keyFor(1, 2), `/partial?bytes=${1024 * 1024}&sent=65536`));
    await app.waitFor('crashing', { from: mark });
    await conn.closedByServer(3_000);
    // What came before the end: the head and part of the body, never a complete answer.
    const got = conn.rest().toString('latin1');
    expect(got).toMatch(/^HTTP\/1\.1 200 /);
    expect(got.length).toBeLessThan(1024 * 1024);

    // The primary and the holder live on; the sibling's slot is forked again.
    const respawned = await app.waitFor('workerUp', { from: mark, match: (l) => l.slot === 1 });
    expect(isAlive(app.pid)).toBe(true);
    expect(isAlive(pid0 as number)).toBe(true);
    const fresh = await openAt(port, 0, 2);
    expect(fresh.holderPid).toBe(pid0);
    await expect
      .poll(
        async () => {
          await fresh.conn.write(get(keyFor(1, 2)));
          return who(await fresh.conn.answer()).pid;
        },
        { timeout: 3_000 },
      )
      .toBe(Number(respawned.line.pid));
    // The idle connection's channel went with the dead worker: its next relay finds the new one.
    await other.conn.write(get(keyFor(1, 2)));
    expect(who(await other.conn.answer()).pid).toBe(Number(respawned.line.pid));
  });
});

describe('proxy mode: a sibling leaves', () => {
  afterAll(stopFixtures);

  it('serves a request for a worker that has just left instead of dropping the connection', async () => {
    const app = await startProxyApp(2);
    const port = app.port();
    // The window (until the holder hears the slot is gone) is short: a few tries.
    for (let i = 0; i < 3; i++) {
      const { conn } = await openAt(port, 0, 2);
      const mark = app.received.length;
      // The sibling answers, then leaves (app.close()): its slot is no longer live.
      await conn.write(get(keyFor(1, 2), '/leave'));
      expect(who(await conn.answer()).slot).toBe(1);
      // At once, as a busy proxy would: the key's next choice (or the leaving worker) answers.
      await conn.write(get(keyFor(1, 2), `/next?try=${i}`));
      const next = await conn.answer();
      expect(next.status, `try ${i}`).toBe(200);
      expect(who(next).url).toBe(`/next?try=${i}`);
      conn.destroy();
      // The slot's new worker takes requests before the next try.
      const up = await app.waitFor('workerUp', { from: mark, match: (l) => l.slot === 1 });
      await expect
        .poll(async () => {
          const probe = await openAt(port, 1, 2).catch(() => undefined);
          probe?.conn.destroy();
          return probe?.holderPid;
        })
        .toBe(Number(up.line.pid));
    }
  });
});

describe('proxy mode: shutdown with a relayed answer under way', () => {
  afterEach(stopFixtures);

  async function start(): Promise<FixtureProcess> {
    return startProxyApp(2, { KEEP_ALIVE_TIMEOUT: '30000' });
  }

  it('lets a slow relayed answer finish before the connection closes', async () => {
    const app = await start();
    const { conn } = await openAt(app.port(), 0, 2);
    const mark = app.received.length;
    await conn.write(get(keyFor(1, 2), '/slow?ms=300'));
    await app.waitFor('slowStart', { from: mark });
    app.signal('SIGTERM');
    const answer = await conn.answer({ timeoutMs: 3_000 });
    expect(json(answer)).toMatchObject({ slot: 1, slept: 300 });
    await conn.closedByServer(3_000);
    // The primary re-raises the signal once every worker is gone.
    expect(await app.waitForExit(5_000)).toEqual({ code: null, signal: 'SIGTERM' });
  });

  it.each([
    ['relayed', 1],
    ['served by the holder', 0],
  ])(
    'lets an 8 MiB answer (%s) to a client that stops reading finish before the connection closes',
    async (_, slot) => {
      const app = await start();
      const { conn } = await openAt(app.port(), 0, 2);
      const size = 8 * 1024 * 1024;
      await conn.write(get(keyFor(slot, 2), `/big?bytes=${size}`));
      await conn.received(1);
      // The client reads nothing for 300 ms: most of the answer waits in the cluster meanwhile.
      conn.socket.pause();
      app.signal('SIGTERM');
      await delay(300);
      conn.socket.resume();
      const answer = await conn.answer({ timeoutMs: 5_000 });
      expect(answer.body.length).toBe(size);
      expect(sha256(answer.body)).toBe(answer.headers['x-sha256']);
      await conn.closedByServer(3_000);
      await app.waitForExit(5_000);
    },
  );
});
