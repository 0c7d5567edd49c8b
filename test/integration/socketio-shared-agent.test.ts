/**
 * Socket.io long-polling clients behind a reverse proxy: many clients, one upstream keep-alive
 * pool. Every polling exchange is an HTTP request, and the requests of different clients are
 * interleaved on shared connections, told apart only by their X-Forwarded-For. Under sticky-mesh's
 * proxy mode each client's requests must all reach the worker that holds its engine.io session;
 * under Node's round-robin cluster (the negative control: same app, same clients) they do not, and
 * engine.io answers "Session ID unknown".
 */
import { afterEach, describe, expect, it } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { freePort } from '../helpers/proxies.js';
import { APP_ENV, CLIENTS, ROUND_TRIPS, runAll } from '../helpers/socketio-shared-agent.js';

afterEach(stopFixtures);

describe('socket.io polling clients on one shared keep-alive agent, behind a proxy', () => {
  it('sticky-mesh proxy mode: every client stays on its worker, zero "Session ID unknown"', async ({
    annotate,
  }) => {
    const app = await startFixture({ fixture: 'socketio-app.mjs', env: APP_ENV });
    const outcome = await runAll(app);
    await annotate(outcome.summary);
    const context = `${outcome.summary}\n${app.transcript()}`;

    // Zero "Session ID unknown" (or any other refusal) on any worker, zero client-side failures.
    expect(outcome.serverErrors, context).toEqual([]);
    expect(
      outcome.failed.map((r) => r.forwardedFor),
      context,
    ).toEqual([]);
    expect(outcome.runs, context).toHaveLength(CLIENTS);
    for (const run of outcome.runs) {
      expect(run.hello, context).toBeDefined();
      expect(run.acks, context).toHaveLength(ROUND_TRIPS);
      // Every round trip was answered by the worker that greeted the client.
      for (const ack of run.acks) expect(ack.pid, context).toBe(run.hello?.pid);
      // It stayed connected through several heartbeats.
      expect(run.pings, `${run.forwardedFor}\n${context}`).toBeGreaterThanOrEqual(3);
    }
    // The clients really shared connections, as behind a proxy's upstream keep-alive pool.
    expect(outcome.agent.reusedForAnotherClient, context).toBeGreaterThan(0);
    // One engine.io session per client, none opened twice.
    expect(app.events('connection'), context).toHaveLength(CLIENTS);
    expect(new Set(outcome.runs.map((r) => r.hello?.slot)).size, context).toBeGreaterThan(1);
  });

  it('negative control: the same clients under round-robin cluster get "Session ID unknown"', async ({
    annotate,
  }) => {
    const port = await freePort();
    const app = await startFixture({
      fixture: 'socketio-rr.mjs',
      env: { ...APP_ENV, PORT: String(port) },
    });
    expect(app.port()).toBe(port);
    const outcome = await runAll(app);
    await annotate(outcome.summary);
    const context = `${outcome.summary}\n${app.transcript()}`;

    // Requests of different clients did share connections: that is what breaks round-robin.
    expect(outcome.agent.reusedForAnotherClient, context).toBeGreaterThan(0);
    expect(outcome.sharedConnections, context).toBeGreaterThan(0);
    expect(outcome.sessionUnknown, context).toBeGreaterThan(0);
    // ... because requests reached a worker other than the one holding their session.
    expect(outcome.misrouted, context).toBeGreaterThan(0);
    expect(outcome.failed.length, context).toBeGreaterThan(0);
  });
});
