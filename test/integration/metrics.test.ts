// The `metrics` option on real clusters: the primary's endpoint serves the whole machine (its
// own counters per slot, every process's default metrics with its slot, what the application
// registered in its workers, the store's write-to-visible time at each worker), app.metrics()
// gives the same, and a worker that cannot answer (blocked, restarting) never stalls a scrape.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { getWorker, loopbackSources, request, workerOfFirst } from '../helpers/http.js';
import { type Exposition, parseExposition } from '../helpers/prom-text.js';
import { callSessionApp } from '../helpers/session-app.js';

afterEach(stopFixtures);

interface Scrape {
  status: number;
  contentType: string | undefined;
  text: string;
  /** ms from sending the request to the end of the answer. */
  took: number;
}

function get(port: number, path = '/metrics', method = 'GET'): Promise<Scrape> {
  const started = Date.now();
  return new Promise((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, path, method, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () =>
        resolve({
          status: res.statusCode ?? 0,
          contentType: res.headers['content-type'],
          text,
          took: Date.now() - started,
        }),
      );
    });
    req.setTimeout(15_000, () => req.destroy(new Error('no answer in 15 s')));
    req.on('error', reject);
    req.end();
  });
}

async function metricsPort(app: FixtureProcess): Promise<number> {
  const line = await app.waitFor('metricsListening');
  return Number(line.line.port);
}

async function scrape(app: FixtureProcess): Promise<Exposition & { took: number; text: string }> {
  const s = await get(await metricsPort(app));
  expect(s.status, s.text).toBe(200);
  return { ...parseExposition(s.text), took: s.took, text: s.text };
}

const slotsOf = (m: Exposition, name: string) =>
  [...new Set(m.find(name).map((s) => s.labels.slot))].sort();

describe('metrics of a cluster', () => {
  it('counts every connection of each slot, with every process and the app metric labelled by slot', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '3',
        APP_METRIC: '1',
        METRICS_ON_SIGNAL: 'SIGUSR2',
        STICKY_OPTIONS: JSON.stringify({ metrics: { port: 0 } }),
      },
    });
    const port = app.port();
    // 60 clients, 3 requests each, a new connection per request.
    const sources = loopbackSources(60);
    const served = new Map<number, number>();
    for (let round = 0; round < 3; round++) {
      const replies = await Promise.all(sources.map((source) => getWorker({ port, source })));
      for (const r of replies) served.set(r.slot, (served.get(r.slot) ?? 0) + 1);
    }
    expect([...served.keys()].sort(), 'every slot got clients').toEqual([0, 1, 2]);
    const m = await scrape(app);
    const what = `served ${JSON.stringify([...served])}\n${m.text}`;
    for (const [slot, n] of served) {
      expect(m.sum('sticky_mesh_connections_routed_total', { slot: String(slot) }), what).toBe(n);
      expect(m.sum('fixture_requests_total', { slot: String(slot) }), what).toBe(n);
    }
    expect(m.sum('sticky_mesh_metrics_workers_answered'), what).toBe(3);
    expect(m.sum('sticky_mesh_slot_state', { state: 'ready' }), what).toBe(3);
    expect(m.sum('sticky_mesh_connections_refused_total'), what).toBe(0);
    // prom-client's default metrics, one series per process.
    for (const name of [
      'process_cpu_user_seconds_total',
      'process_resident_memory_bytes',
      'nodejs_heap_size_used_bytes',
      'process_start_time_seconds',
    ]) {
      expect(slotsOf(m, name), `${name}\n${what}`).toEqual(['0', '1', '2', 'primary']);
    }
    expect(m.types.get('sticky_mesh_store_visible_seconds')).toBe('histogram');
    expect(m.types.get('nodejs_eventloop_lag_seconds')).toBe('gauge');

    // app.metrics() in the primary: the same families.
    const from = app.received.length;
    app.signal('SIGUSR2');
    const line = await app.waitFor('metrics', { from });
    const viaApi = parseExposition(String(line.line.text));
    expect([...viaApi.types.keys()].sort()).toEqual([...m.types.keys()].sort());
    expect(viaApi.sum('sticky_mesh_connections_routed_total')).toBe(3 * sources.length);
  });

  it('answers only GET and HEAD on its path', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '1', STICKY_OPTIONS: JSON.stringify({ metrics: { port: 0, path: '/m' } }) },
    });
    const port = await metricsPort(app);
    const ok = await get(port, '/m?x=1');
    expect(ok.status).toBe(200);
    expect(ok.contentType).toBe('text/plain; version=0.0.4; charset=utf-8');
    expect(ok.text).toContain('# TYPE sticky_mesh_connections_routed_total counter');
    const head = await get(port, '/m', 'HEAD');
    expect([head.status, head.text]).toEqual([200, '']);
    expect((await get(port, '/metrics')).status).toBe(404);
    expect((await get(port, '/m', 'POST')).status).toBe(405);
  });

  it("fills each worker's write-to-visible histogram with every other worker's session writes", async () => {
    const app = await startFixture({
      fixture: 'session-app.mjs',
      env: { WORKERS: '3', STICKY_OPTIONS: JSON.stringify({ metrics: { port: 0 } }) },
    });
    // Clients spread over the slots (X-Forwarded-For is the key): each logs in, then counts.
    const clients = Array.from({ length: 12 }, (_, i) => `10.0.${i}.7`);
    const writers = new Set<number>();
    for (const client of clients) {
      const login = await callSessionApp(app, 'POST', '/login?user=u', { client });
      writers.add(login.body.slot);
      for (let i = 0; i < 3; i++) {
        await callSessionApp(app, 'POST', '/inc', { client, cookie: login.cookie });
      }
    }
    expect(writers.size, 'writes came from more than one worker').toBeGreaterThan(1);
    // Proxy mode: a request without X-Forwarded-For is refused with 400.
    const bare = await request({ port: app.port(), path: '/me' });
    expect(bare.status).toBe(400);
    const m = await scrape(app);
    const writes = clients.length * 4;
    expect(m.sum('sticky_mesh_store_writes_total'), m.text).toBe(writes);
    expect(m.sum('sticky_mesh_store_sessions'), m.text).toBe(clients.length);
    expect(m.sum('sticky_mesh_store_bytes'), m.text).toBeGreaterThan(clients.length * 20);
    // Each write reached the two workers that did not make it, before they answered the scrape
    // (the hub forwards it before acknowledging it; the scrape's request comes after on IPC).
    expect(m.sum('sticky_mesh_store_visible_seconds_count'), m.text).toBe(writes * 2);
    expect(slotsOf(m, 'sticky_mesh_store_visible_seconds_count')).toEqual(['0', '1', '2']);
    const within = m.sum('sticky_mesh_store_visible_seconds_bucket', { le: '1' });
    expect(within, 'every write visible within a second on loopback').toBe(writes * 2);
    // Every connection's head was read (and timed) by the primary; one of them was refused.
    const routed = m.sum('sticky_mesh_connections_routed_total');
    expect(routed, m.text).toBe(clients.length * 4);
    expect(m.sum('sticky_mesh_head_read_seconds_count', { outcome: 'ok' }), m.text).toBe(
      routed + 1,
    );
    expect(m.sum('sticky_mesh_connections_refused_total', { reason: '400' }), m.text).toBe(1);
    expect(m.sum('sticky_mesh_connections_refused_total'), m.text).toBe(1);
  });
});

describe('metrics, misconfigured', () => {
  it('reports an endpoint port already taken as an error, and the cluster serves on', async () => {
    const taken = http.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const port = (taken.address() as { port: number }).port;
      const app = await startFixture({
        fixture: 'ip-app.mjs',
        env: { WORKERS: '1', STICKY_OPTIONS: JSON.stringify({ metrics: { port } }) },
      });
      const error = await app.waitFor('error');
      expect(error.line).toMatchObject({ code: 'ERR_STICKY_METRICS_FAILED' });
      expect(String(error.line.message)).toContain(`127.0.0.1:${port}`);
      expect((await request({ port: app.port() })).status).toBe(200);
    } finally {
      await new Promise((resolve) => taken.close(resolve));
    }
  });

  it('rejects app.metrics() without the option, and serves no endpoint', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '1', METRICS_ON_SIGNAL: 'SIGUSR2' },
    });
    app.signal('SIGUSR2');
    const line = await app.waitFor('metrics');
    expect(line.line).toMatchObject({ code: 'ERR_STICKY_METRICS_FAILED' });
    expect(app.events('metricsListening')).toEqual([]);
  });
});

describe('metrics during a rolling reload', () => {
  it("asks a slot's draining worker and its successor alike, and counts every replacement", async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        RELOAD_ON_SIGNAL: 'SIGUSR1',
        STICKY_OPTIONS: JSON.stringify({ metrics: { port: 0, timeout: 2000 } }),
      },
    });
    const port = app.port();
    const mport = await metricsPort(app);
    const { slot, clients } = await workerOfFirst(port, loopbackSources(20));
    // A request in flight keeps that slot's old worker draining for a while after the switch.
    const from = app.received.length;
    const slow = request({ port, source: clients[0] as string, path: '/slow?ms=2500' });
    await app.waitFor('slowStart', { from });
    app.signal('SIGUSR1');
    const scrapes: { answered: number; generation: number; took: number }[] = [];
    let done = false;
    const finished = app.waitFor('reloadDone', { from, timeoutMs: 20_000 }).finally(() => {
      done = true;
    });
    while (!done) {
      const s = await get(mport);
      expect(s.status, s.text).toBe(200);
      // Valid exposition every time: no series twice, though two workers report for one slot.
      const m = parseExposition(s.text);
      scrapes.push({
        answered: m.sum('sticky_mesh_metrics_workers_answered'),
        generation: m.sum('sticky_mesh_slot_generation', { slot: String(slot) }),
        took: s.took,
      });
      await new Promise((r) => setTimeout(r, 50));
    }
    await finished;
    expect((await slow).status).toBe(200);
    const what = JSON.stringify(scrapes);
    expect(
      scrapes.some((s) => s.answered === 3 && s.generation === 2),
      what,
    ).toBe(true);
    expect(Math.max(...scrapes.map((s) => s.took)), what).toBeLessThan(2000);
    const m = await scrape(app);
    for (const s of ['0', '1']) {
      expect(
        m.sum('sticky_mesh_worker_restarts_total', { slot: s, reason: 'reload' }),
        m.text,
      ).toBe(1);
      expect(m.sum('sticky_mesh_slot_generation', { slot: s }), m.text).toBe(2);
    }
    expect(m.sum('sticky_mesh_metrics_workers_answered'), m.text).toBe(2);
    expect(m.sum('sticky_mesh_metrics_workers_missed_total'), m.text).toBe(0);
  });
});

describe('a scrape while a worker cannot answer', () => {
  it('leaves a blocked worker out after metrics.timeout, counts it, and serves the rest', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '3',
        // The blocked worker is not taken out while the test runs.
        STICKY_OPTIONS: JSON.stringify({
          metrics: { port: 0, timeout: 400 },
          unresponsiveTimeout: 60_000,
        }),
      },
    });
    const port = app.port();
    const { slot: victim, clients } = await workerOfFirst(port, loopbackSources(30));
    const from = app.received.length;
    const blocked = request({
      port,
      source: clients[0] as string,
      path: '/block?ms=4000',
      timeoutMs: 15_000,
    });
    await app.waitFor('blockStart', { from });
    const m = await scrape(app);
    const what = `victim slot ${victim}, took ${m.took} ms\n${m.text}`;
    expect(m.took, what).toBeGreaterThanOrEqual(400);
    expect(m.took, what).toBeLessThan(400 + 1500);
    expect(m.sum('sticky_mesh_metrics_workers_answered'), what).toBe(2);
    expect(m.sum('sticky_mesh_metrics_workers_missed_total', { slot: String(victim) }), what).toBe(
      1,
    );
    expect(m.sum('sticky_mesh_metrics_workers_missed_total'), what).toBe(1);
    // Its process series are missing from this scrape; the primary's own metrics are all there.
    const others = ['0', '1', '2'].filter((s) => s !== String(victim));
    expect(slotsOf(m, 'process_cpu_user_seconds_total'), what).toEqual([...others, 'primary']);
    expect(slotsOf(m, 'sticky_mesh_connections_routed_total'), what).toEqual(['0', '1', '2']);
    expect(m.sum('sticky_mesh_slot_state', { slot: String(victim), state: 'ready' }), what).toBe(1);

    // Once its loop runs again it answers; the count of misses stays.
    expect((await blocked).status).toBe(200);
    const after = await scrape(app);
    expect(after.sum('sticky_mesh_metrics_workers_answered'), after.text).toBe(3);
    expect(after.sum('sticky_mesh_metrics_workers_missed_total'), after.text).toBe(1);
    expect(after.took, after.text).toBeLessThan(400);
  });

  it("answers at once while a crashed worker's slot waits to be re-forked, and counts the crash", async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '3',
        STICKY_OPTIONS: JSON.stringify({ metrics: { port: 0, timeout: 5000 }, respawnDelay: 3000 }),
      },
    });
    const port = app.port();
    const { slot: victim, clients } = await workerOfFirst(port, loopbackSources(30));
    const from = app.received.length;
    await request({ port, source: clients[0] as string, path: '/crash' }).catch(() => undefined);
    await app.waitFor('workerRespawn', { from, match: (l) => l.slot === victim });
    const m = await scrape(app);
    const what = `victim slot ${victim}, took ${m.took} ms\n${m.text}`;
    // The dead worker is not asked: no wait for it, and no miss.
    expect(m.took, what).toBeLessThan(1000);
    expect(m.sum('sticky_mesh_metrics_workers_answered'), what).toBe(2);
    expect(m.sum('sticky_mesh_metrics_workers_missed_total'), what).toBe(0);
    expect(m.sum('sticky_mesh_slot_state', { slot: String(victim), state: 'down' }), what).toBe(1);
    expect(
      m.sum('sticky_mesh_worker_restarts_total', { slot: String(victim), reason: 'crash' }),
      what,
    ).toBe(1);
    // Re-forked: a new generation in the slot, asked again once ready.
    await app.waitFor('workerUp', { from, match: (l) => l.slot === victim, timeoutMs: 10_000 });
    const after = await scrape(app);
    expect(after.sum('sticky_mesh_slot_generation', { slot: String(victim) }), after.text).toBe(2);
    expect(after.sum('sticky_mesh_metrics_workers_answered'), after.text).toBe(3);
  });
});
