import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { describeExit, startFixture, stopFixtures } from '../helpers/cluster.js';
import { type Reply, request } from '../helpers/http.js';
import { isAlive } from '../helpers/proc.js';

/**
 * Two workers with shutdownTimeout 8 s that would keep an idle keep-alive connection for a minute:
 * only the drain can close it early.
 */
function startWithLongKeepAlive() {
  return startFixture({
    fixture: 'ip-app.mjs',
    env: {
      WORKERS: '2',
      KEEP_ALIVE_TIMEOUT: '60000',
      STICKY_OPTIONS: JSON.stringify({ shutdownTimeout: 8000 }),
    },
  });
}

describe('IP mode shutdown', () => {
  afterEach(stopFixtures);

  it('finishes a request in flight on SIGTERM, then the primary and every worker exit', async () => {
    const app = await startFixture({ fixture: 'ip-app.mjs', env: { WORKERS: '2' } });
    const workers = app.workerPids();
    const from = app.received.length;
    const slow = request({
      port: app.port(),
      source: '127.0.0.5',
      path: '/slow?ms=1500',
      timeoutMs: 10_000,
    });
    const arrived = await app.waitFor('slowStart', { from });
    app.signal('SIGTERM');

    const reply = await slow.catch((err: unknown) => {
      throw new Error(`the slow request failed: ${err}\n${app.transcript()}`);
    });
    expect(reply.status, app.transcript()).toBe(200);
    expect(reply.body, app.transcript()).toMatchObject({ pid: arrived.line.pid, slept: 1500 });

    const exit = await app.waitForExit(10_000);
    const what = `exit: ${describeExit(exit)}\n${app.transcript()}`;
    expect(exit, `the primary should re-raise SIGTERM\n${what}`).toEqual({
      code: null,
      signal: 'SIGTERM',
    });
    expect([app.pid, ...workers].filter(isAlive), `still running\n${what}`).toEqual([]);
    for (const pid of workers) {
      expect(
        app.events('workerExit', (l) => l.pid === pid),
        what,
      ).toMatchObject([{ planned: true }]);
    }
  });

  it('kills a worker whose request outlives shutdownTimeout, then the primary exits', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ shutdownTimeout: 500 }) },
    });
    const workers = app.workerPids();
    const from = app.received.length;
    const slow = request({
      port: app.port(),
      source: '127.0.0.5',
      path: '/slow?ms=20000',
      timeoutMs: 10_000,
    }).catch((err: unknown) => err);
    const arrived = await app.waitFor('slowStart', { from });
    const started = Date.now();
    app.signal('SIGTERM');

    const exit = await app.waitForExit(5_000);
    const what = `exit after ${Date.now() - started} ms: ${describeExit(exit)}\n${app.transcript()}`;
    expect(exit, what).toEqual({ code: null, signal: 'SIGTERM' });
    expect([app.pid, ...workers].filter(isAlive), `still running\n${what}`).toEqual([]);
    expect(
      app.events('workerExit', (l) => l.pid === arrived.line.pid),
      what,
    ).toMatchObject([{ signal: 'SIGKILL', planned: true }]);
    expect(await slow, 'the request cut off by the kill fails').toBeInstanceOf(Error);
  });

  it('keeps a keep-alive connection on one worker, and on SIGTERM closes it while idle (a handed-off socket, the worker server never listened) instead of waiting for shutdownTimeout', async () => {
    const app = await startWithLongKeepAlive();
    const workers = app.workerPids();
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const replies: Reply[] = [];
      for (let i = 0; i < 20; i++) {
        replies.push(await request({ port: app.port(), source: '127.0.0.7', agent }));
      }
      const what = `${replies.map((r) => `${r.status} ${r.text} (client port ${r.socket.localPort})`).join('\n')}\n${app.transcript()}`;
      expect(new Set(replies.map((r) => r.socket)).size, `more than one connection\n${what}`).toBe(
        1,
      );
      expect(
        replies.every((r) => r.status === 200),
        what,
      ).toBe(true);
      expect(new Set(replies.map((r) => r.body?.pid)).size, `more than one worker\n${what}`).toBe(
        1,
      );

      const socket = (replies[0] as Reply).socket;
      expect(socket.destroyed, 'the agent dropped the idle connection by itself').toBe(false);
      let socketClosedAfter: number | undefined;
      const signalledAt = Date.now();
      socket.once('close', () => {
        socketClosedAfter = Date.now() - signalledAt;
      });
      app.signal('SIGTERM');

      const exit = await app.waitForExit(12_000);
      const exitedAfter = Date.now() - signalledAt;
      const seen = `exit ${describeExit(exit)} after ${exitedAfter} ms; client socket closed after ${socketClosedAfter ?? 'never'} ms\n${app.transcript()}`;
      expect(exit.signal, seen).toBe('SIGTERM');
      expect(exitedAfter, `shutdown waited for the idle connection\n${seen}`).toBeLessThan(4_000);
      await expect.poll(() => socketClosedAfter, { timeout: 2_000 }).toBeDefined();
      expect([app.pid, ...workers].filter(isAlive), seen).toEqual([]);
    } finally {
      agent.destroy();
    }
  });

  it('on SIGTERM closes an idle keep-alive connection at once even while another request on the same worker still runs', async () => {
    const app = await startWithLongKeepAlive();
    const port = app.port();
    const source = '127.0.0.9';
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    try {
      const idle = await request({ port, source, agent });
      const from = app.received.length;
      // Same source, so the same worker, on a second connection.
      const slow = request({ port, source, path: '/slow?ms=1500', timeoutMs: 10_000 });
      const arrived = await app.waitFor('slowStart', { from });
      expect(arrived.line.pid, app.transcript()).toBe(idle.body?.pid);

      let idleClosedAfter: number | undefined;
      const signalledAt = Date.now();
      idle.socket.once('close', () => {
        idleClosedAfter = Date.now() - signalledAt;
      });
      app.signal('SIGTERM');
      const reply = await slow.catch((err: unknown) => {
        throw new Error(`the slow request failed: ${err}\n${app.transcript()}`);
      });
      const repliedAfter = Date.now() - signalledAt;
      const seen = `idle connection closed after ${idleClosedAfter ?? 'never'} ms; slow reply ${reply.status} after ${repliedAfter} ms\n${app.transcript()}`;
      expect(reply.status, seen).toBe(200);
      expect(
        idleClosedAfter ?? Number.POSITIVE_INFINITY,
        `the idle connection stayed open while the other request ran\n${seen}`,
      ).toBeLessThan(repliedAfter);
      const exit = await app.waitForExit(12_000);
      expect(exit.signal, seen).toBe('SIGTERM');
    } finally {
      agent.destroy();
    }
  });

  it('close() called twice resolves both calls once every worker exited, then the primary can end', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', CLOSE_ON_SIGNAL: 'SIGUSR2' },
    });
    const port = app.port();
    const workers = app.workerPids();
    app.signal('SIGUSR2');

    const closed = await app.waitFor('closed', { timeoutMs: 15_000 });
    const what = app.transcript();
    expect(closed.line.workersAlive, `workers alive when close() resolved\n${what}`).toEqual([]);
    expect(workers.filter(isAlive), what).toEqual([]);
    for (const pid of workers) {
      const exit = app.received.find((r) => r.line.event === 'workerExit' && r.line.pid === pid);
      expect(
        exit?.index ?? Number.POSITIVE_INFINITY,
        `no workerExit for ${pid} before close() resolved\n${what}`,
      ).toBeLessThan(closed.index);
      expect(exit?.line, what).toMatchObject({ planned: true });
    }
    await expect(request({ port, source: '127.0.0.8', timeoutMs: 2_000 })).rejects.toThrow(
      /ECONNREFUSED/,
    );

    // Nothing of the library holds the event loop once closed.
    const exit = await app.waitForExit(3_000);
    expect(exit, app.transcript()).toEqual({ code: 0, signal: null });
    expect(
      app.events('close'),
      `the close event should fire once\n${app.transcript()}`,
    ).toHaveLength(1);
    // Regression for a peer that forked one more worker while closing.
    expect(app.events('workerStart'), app.transcript()).toHaveLength(2);
  });
});
