// Rolling reload with Socket.io (issue 17): an engine.io session still polling on a worker that
// a reload replaced keeps being routed there until the drain runs out (IP mode, with and without
// session-id affinity); the chat example with 50 clients and express sessions in a
// ReplicatedStore goes through a reload of all 4 workers with no failed HTTP request, every
// session readable afterwards and every client back on its slot.
import http from 'node:http';
import { io, type Socket } from 'socket.io-client';
import { afterEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources } from '../helpers/http.js';
import { startLoad } from '../helpers/load.js';
import { explain } from '../helpers/socketio.js';
import { sleep, waitUntil } from '../helpers/wait.js';

afterEach(stopFixtures);

interface Hello {
  pid: number;
  slot: number;
}

/** A Socket.io client from one source address and what it saw, with times. */
interface Client {
  readonly source: string;
  readonly socket: Socket;
  readonly agent: http.Agent;
  readonly hellos: (Hello & { at: number })[];
  readonly disconnects: { reason: string; at: number }[];
  /** Connect and transport errors, with when they came. */
  readonly errors: { text: string; at: number }[];
  readonly pings: number[];
}

function connect(port: number, source: string, keepAlive: boolean, transports: string[]): Client {
  const agent = new http.Agent({ keepAlive, localAddress: source });
  const socket = io(`http://127.0.0.1:${port}`, {
    agent: agent as never,
    transports: transports as ('polling' | 'websocket')[],
    forceNew: true,
    reconnectionDelay: 100,
    reconnectionDelayMax: 500,
  });
  const client: Client = {
    source,
    socket,
    agent,
    hellos: [],
    disconnects: [],
    errors: [],
    pings: [],
  };
  socket.on('hello', (h: Hello) => client.hellos.push({ ...h, at: Date.now() }));
  socket.on('disconnect', (reason) => client.disconnects.push({ reason, at: Date.now() }));
  socket.on('connect_error', (err) =>
    client.errors.push({ text: `connect_error ${explain(err)}`, at: Date.now() }),
  );
  socket.io.on('error', (err) =>
    client.errors.push({ text: `transport ${explain(err)}`, at: Date.now() }),
  );
  socket.io.on('ping', () => client.pings.push(Date.now()));
  return client;
}

function closeAll(clients: readonly Client[]): void {
  for (const c of clients) {
    c.socket.close();
    c.agent.destroy();
  }
}

describe('rolling reload with engine.io sessions still polling', () => {
  const SHUTDOWN_TIMEOUT = 5000;

  it.each([
    ['IP mode', {}],
    ['IP mode with session-id affinity', { sessionAffinity: true }],
  ])(
    '%s: they stay on the replaced worker until its drain runs out, then reconnect on their slot',
    async (_name, extra) => {
      const app = await startFixture({
        fixture: 'socketio-app.mjs',
        env: {
          WORKERS: '2',
          TRANSPORTS: 'polling',
          PING_INTERVAL: '300',
          PING_TIMEOUT: '5000',
          STICKY_OPTIONS: JSON.stringify({
            proxy: false,
            seed: 7,
            shutdownTimeout: SHUTDOWN_TIMEOUT,
            closeJitter: 300,
            ...extra,
          }),
        },
      });
      const port = app.port();
      const sources = loopbackSources(8, 60);
      // Half poll on a new connection each time (every poll goes through the primary), half keep
      // their connections open.
      const clients = sources.map((source, i) => connect(port, source, i % 2 === 0, ['polling']));
      try {
        const connected = await waitUntil(() => clients.every((c) => c.hellos.length > 0), 10_000);
        expect(connected, app.transcript()).toBe(true);
        const from = app.received.length;
        process.kill(app.pid, 'SIGHUP');
        await app.waitFor('reload', { from, match: (l) => l.step === 'done', timeoutMs: 40_000 });
        const reconnected = await waitUntil(
          () => clients.every((c) => c.hellos.length >= 2),
          5_000,
        );
        const switches = app.events('reload', (l) => l.step === 'switch');
        const what = [
          ...clients.map(
            (c) =>
              `${c.source}: hellos ${JSON.stringify(c.hellos)} disconnects ${JSON.stringify(c.disconnects)} errors ${JSON.stringify(c.errors)}`,
          ),
          app.transcript(),
        ].join('\n');
        expect(reconnected, what).toBe(true);
        const switchedAt = (slot: number) =>
          app.received.find(
            (r) => r.line.event === 'reload' && r.line.step === 'switch' && r.line.slot === slot,
          )?.receivedAt ?? 0;
        // When the replaced worker of `slot` ends the sessions it kept (its drain's last call,
        // a second before shutdownTimeout), less the time its switch line took to arrive here.
        const lastCall = (slot: number) => switchedAt(slot) + SHUTDOWN_TIMEOUT - 1000 - 300;
        // engine.io refused nothing while the sessions were kept ("Session ID unknown" is what a
        // misrouted poll gets). A request racing the server's own end of a polling session (in
        // flight as the session closed) may be refused after the last call: that session had
        // ended anyway, and its client opens a new one.
        const refused = app.received.filter(
          (r) => r.line.event === 'connectionError' && r.receivedAt < lastCall(Number(r.line.slot)),
        );
        expect(refused, what).toEqual([]);
        for (const c of clients) {
          const [first, second] = c.hellos as [Hello & { at: number }, Hello & { at: number }];
          const sw = switches.find((l) => l.slot === first.slot);
          expect(sw, what).toBeDefined();
          // Kept on the replaced worker: still pinged well into its drain, and let go only when
          // the drain ran out (a second before shutdownTimeout).
          const during = c.pings.filter(
            (t) => t > switchedAt(first.slot) + 500 && t < switchedAt(first.slot) + 3000,
          );
          expect(during.length, `${c.source}\n${what}`).toBeGreaterThan(2);
          const lost = c.disconnects[0];
          expect(lost, what).toBeDefined();
          expect(lost?.at ?? 0, `${c.source}\n${what}`).toBeGreaterThan(lastCall(first.slot) - 200);
          // Back on its slot, on the new worker.
          expect(second.slot, what).toBe(first.slot);
          expect(second.pid, what).toBe(sw?.pid);
          expect(
            c.errors.filter((e) => e.at < lastCall(first.slot)),
            what,
          ).toEqual([]);
        }
      } finally {
        closeAll(clients);
      }
    },
    60_000,
  );
});

describe('the chat example through a rolling reload', () => {
  const WORKERS = 4;

  it('50 Socket.io clients, express sessions in a ReplicatedStore, HTTP load: no request fails, every session is readable, every client is back on its slot', async () => {
    const app: FixtureProcess = await startFixture({
      fixture: '../../examples/socketio/server.js',
      env: { PORT: '0', WORKERS: String(WORKERS), PING_INTERVAL: '1000', PING_TIMEOUT: '5000' },
      until: null,
    });
    const line = new RegExp(`chat on http://localhost:(\\d+) with ${WORKERS} workers`);
    expect(await waitUntil(() => line.test(app.stdout), 15_000), app.transcript()).toBe(true);
    const port = Number(line.exec(app.stdout)?.[1]);
    const upBefore = [...app.stdout.matchAll(/worker (\d+) up \(pid (\d+)\)/g)].map((m) =>
      Number(m[2]),
    );
    expect(upBefore).toHaveLength(WORKERS);

    // 50 users with a session each (a name), from their own addresses.
    const sources = loopbackSources(50, 100);
    const cookies = new Map<string, string>();
    await Promise.all(
      sources.map(async (source, i) => {
        const agent = new http.Agent({ localAddress: source });
        const r = await httpRequest(
          port,
          agent,
          'POST',
          '/name',
          '',
          JSON.stringify({ name: `user ${i}` }),
        );
        agent.destroy();
        expect(r.status).toBe(200);
        const cookie = /connect\.sid=[^;]+/.exec(String(r.headers['set-cookie'] ?? ''))?.[0];
        expect(cookie).toBeDefined();
        cookies.set(source, cookie as string);
      }),
    );
    // Their Socket.io clients, polling first then WebSocket, as browsers connect.
    const clients = sources.map((source) => connect(port, source, false, ['polling', 'websocket']));
    try {
      const connected = await waitUntil(() => clients.every((c) => c.hellos.length > 0), 15_000);
      expect(connected, app.transcript()).toBe(true);
      const firstSlot = new Map(clients.map((c) => [c.source, c.hellos[0]?.slot]));
      const keepAlive = startLoad({
        port,
        sources: loopbackSources(8, 200),
        keepAlive: true,
        maxSeconds: 90,
        path: '/whoami',
      });
      const oneShot = startLoad({
        port,
        sources: loopbackSources(8, 210),
        keepAlive: false,
        maxSeconds: 90,
        path: '/whoami',
      });
      await sleep(500);
      const reloadAt = Date.now();
      const seen = app.stdout.length;
      process.kill(app.pid, 'SIGHUP');
      const done = await waitUntil(
        () =>
          app.stdout.slice(seen).includes('reload: done') ||
          app.stdout.slice(seen).includes('reload failed'),
        60_000,
      );
      const doneAt = Date.now();
      // Every client back within this long after the reload ended.
      const BACK_WITHIN_MS = 5_000;
      const back = await waitUntil(
        () => clients.every((c) => c.hellos.some((h) => h.at > reloadAt && c.socket.connected)),
        BACK_WITHIN_MS,
      );
      const [ka, os1] = await Promise.all([keepAlive.stop(), oneShot.stop()]);
      const upAfter = [...app.stdout.slice(seen).matchAll(/worker (\d+) up \(pid (\d+)\)/g)].map(
        (m) => Number(m[2]),
      );
      const what = [
        `keep-alive: ${ka.requests} answered ${ka.summary}`,
        `one-shot: ${os1.requests} answered ${os1.summary}`,
        ...clients
          .filter((c) => !c.hellos.some((h) => h.at > reloadAt))
          .map(
            (c) =>
              `${c.source}: ${JSON.stringify(c.hellos)} ${JSON.stringify(c.disconnects)} ${JSON.stringify(c.errors)}`,
          ),
        app.transcript(),
      ].join('\n');
      expect(done, what).toBe(true);
      expect(app.stdout.slice(seen), what).toContain('reload: done');
      // Every worker replaced.
      expect(upAfter, what).toHaveLength(WORKERS);
      for (const pid of upAfter) expect(upBefore, what).not.toContain(pid);
      // No HTTP request failed.
      for (const r of [ka, os1]) {
        expect(r.errors + r.timeouts + r.non2xx, what).toBe(0);
        expect(r.requests, what).toBeGreaterThan(50);
      }
      // Every client connected again, on its slot, on a new worker.
      expect(back, `not back within ${BACK_WITHIN_MS} ms of the reload's end\n${what}`).toBe(true);
      for (const c of clients) {
        const last = c.hellos[c.hellos.length - 1] as Hello;
        expect(last.slot, what).toBe(firstSlot.get(c.source));
        expect(upAfter, what).toContain(last.pid);
      }
      // Every session still there: each user's name, read through the new workers.
      for (const source of sources) {
        const agent = new http.Agent({ localAddress: source });
        const r = await httpRequest(port, agent, 'GET', '/whoami', cookies.get(source) as string);
        agent.destroy();
        const body = JSON.parse(r.text) as { name: string | null; pid: number };
        expect(body.name, `${source}\n${what}`).toBe(`user ${sources.indexOf(source)}`);
        expect(upAfter, what).toContain(body.pid);
      }
      expect(doneAt - reloadAt, what).toBeLessThan(60_000);
    } finally {
      closeAll(clients);
    }
  }, 120_000);
});

function httpRequest(
  port: number,
  agent: http.Agent,
  method: 'GET' | 'POST',
  path: string,
  cookie: string,
  body?: string,
): Promise<{ status: number; headers: http.IncomingHttpHeaders; text: string }> {
  return new Promise((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port,
        method,
        path,
        agent,
        headers: {
          ...(cookie ? { cookie } : {}),
          ...(body ? { 'content-type': 'application/json' } : {}),
        },
      },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => {
          text += c;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, text }));
      },
    );
    req.on('error', reject);
    req.setTimeout(10_000, () => req.destroy(new Error('timed out')));
    req.end(body);
  });
}
