import net from 'node:net';
import { afterAll, describe, expect, it } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { getWorker, rawExchange } from '../helpers/http.js';

afterAll(stopFixtures);

describe('worker servers keep their own protections', () => {
  it('enforces headersTimeout on handed-off sockets (a slow client does not hold a worker forever)', async () => {
    // Node arms these checks when a server starts listening; a worker's server never does.
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', HEADERS_TIMEOUT: '400' },
    });
    const started = Date.now();
    const exchange = await rawExchange({
      port: app.port(),
      source: '127.0.0.7',
      send: 'GET / HTTP/1.1\r\nHost: localhost\r\nX-Slow: ',
      timeoutMs: 4_000,
    });
    const elapsed = Date.now() - started;
    expect(exchange.ending, `after ${elapsed} ms got ${JSON.stringify(exchange.data)}`).not.toBe(
      'timeout',
    );
    expect(exchange.data).toMatch(/^HTTP\/1\.1 408 /);
  });

  it('reports a port that is already taken as ERR_STICKY_LISTEN_FAILED and forks no worker', async () => {
    const blocker = net.createServer();
    await new Promise<void>((resolve) => blocker.listen(0, '127.0.0.1', resolve));
    const port = (blocker.address() as net.AddressInfo).port;
    try {
      const app = await startFixture({
        fixture: 'ip-app.mjs',
        env: { WORKERS: '2', PORT: String(port) },
        until: 'error',
      });
      const [error] = app.events('error');
      expect(error).toMatchObject({ code: 'ERR_STICKY_LISTEN_FAILED' });
      expect(String(error?.message)).toMatch(/EADDRINUSE/);
      expect(app.events('workerStart')).toEqual([]);
      expect(app.events('workerUp')).toEqual([]);
    } finally {
      blocker.close();
    }
  });
});

describe('worker supervision timers', () => {
  it('kills and re-forks a worker that is not ready within readyTimeout', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '1',
        FACTORY: 'hang',
        STICKY_OPTIONS: JSON.stringify({ readyTimeout: 300, respawnDelay: 50 }),
      },
      until: 'listening',
    });
    await app.waitFor('workerRespawn', { timeoutMs: 5_000 });
    const [exit] = app.events('workerExit');
    expect(exit, app.transcript()).toMatchObject({ slot: 0, signal: 'SIGKILL', planned: false });
    expect(app.events('workerUp')).toEqual([]);
  });

  it('resets the crash count after respawnResetAfter of uptime, and not before', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '1',
        STICKY_OPTIONS: JSON.stringify({ respawnDelay: 20, respawnResetAfter: 1_000 }),
      },
    });
    const crash = async () => {
      const from = app.received.length;
      await rawExchange({
        port: app.port(),
        source: '127.0.0.9',
        send: 'GET /crash HTTP/1.1\r\nHost: x\r\n\r\n',
        timeoutMs: 2_000,
      });
      await app.waitFor('workerUp', { from, timeoutMs: 5_000 });
    };
    await crash(); // uptime < 1 s before it: first crash in a row
    await crash(); // again right after becoming ready: second in a row
    await new Promise((resolve) => setTimeout(resolve, 1_200));
    await crash(); // after a stable second: counts as the first again
    const attempts = app.events('workerRespawn').map((e) => e.attempt);
    const delays = app.events('workerRespawn').map((e) => e.delay);
    expect(attempts, app.transcript()).toEqual([1, 2, 1]);
    expect(delays).toEqual([20, 40, 20]);
  });
});

describe('a worker that leaves on its own', () => {
  it('close() in a worker drains it, and the primary replaces it at once on the same slot without counting a crash', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ seed: 7, respawnDelay: 5_000 }) },
    });
    const port = app.port();
    const first = await getWorker({ port, source: '127.0.0.20' });
    const from = app.received.length;
    await getWorker({ port, source: '127.0.0.20', path: '/leave' });
    const exit = await app.waitFor('workerExit', { from, timeoutMs: 5_000 });
    expect(exit.line, app.transcript()).toMatchObject({
      slot: first.slot,
      pid: first.pid,
      code: 0,
      planned: true,
    });
    // Replaced at once (respawnDelay is 5 s and does not apply), on the same slot.
    const up = await app.waitFor('workerUp', { from, timeoutMs: 5_000 });
    expect(up.line).toMatchObject({
      slot: first.slot,
      slotStats: {
        generation: 2,
        restarts: 0,
        replaced: { crash: 0, unresponsive: 0, planned: 1, reload: 0 },
      },
    });
    expect(app.events('workerRespawn')).toEqual([
      expect.objectContaining({ slot: first.slot, attempt: 0, delay: 0 }),
    ]);
    const after = await getWorker({ port, source: '127.0.0.20' });
    expect(after).toMatchObject({ slot: first.slot, pid: up.line.pid });
  });
});

describe('observability', () => {
  it('publishes each handoff and each worker lifecycle step on diagnostics channels', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', DIAGNOSTICS: '1' },
    });
    const reply = await getWorker({ port: app.port(), source: '127.0.0.33' });
    await app.waitFor('diag', { match: (l) => l.channel === 'sticky-mesh:connection' });
    const diag = app.events('diag');
    expect(diag, app.transcript()).toContainEqual(
      expect.objectContaining({
        channel: 'sticky-mesh:connection',
        message: { slot: reply.slot, key: '127.0.0.33' },
      }),
    );
    const ups = diag.filter((l) => l.channel === 'sticky-mesh:worker');
    expect(ups.map((l) => (l.message as { event: string; slot: number }).slot).sort()).toEqual([
      0, 1,
    ]);
    expect(ups.every((l) => (l.message as { event: string }).event === 'up')).toBe(true);
  });
});
