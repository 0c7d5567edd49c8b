// A real Prometheus server (the Debian package) scrapes the metrics endpoint of a cluster under
// load, every second, on loopback: it accepts the exposition (its `up` is 1), the connection
// counters of every slot rise in its database, and the store's write-to-visible histogram is
// filled, all read back through Prometheus's HTTP query API.
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import {
  hasPrometheus,
  type PrometheusServer,
  startPrometheus,
  stopPrometheusServers,
} from '../helpers/prometheus.js';
import { callSessionApp } from '../helpers/session-app.js';

const available = hasPrometheus();
const WORKERS = 3;

afterAll(async () => {
  await stopPrometheusServers();
  await stopFixtures();
});

/** Logs clients in and counts in their sessions until `running.on` is false. */
async function load(app: FixtureProcess, clients: string[], running: { on: boolean }) {
  while (running.on) {
    for (const client of clients) {
      if (!running.on) return;
      const login = await callSessionApp(app, 'POST', '/login?user=load', { client });
      await callSessionApp(app, 'POST', '/inc', { client, cookie: login.cookie });
    }
  }
}

/** Clients (X-Forwarded-For keys) that reach every slot, a few per slot. */
async function clientsOfEverySlot(app: FixtureProcess): Promise<string[]> {
  const bySlot = new Map<number, string[]>();
  for (
    let i = 0;
    i < 200 && [...bySlot.values()].filter((c) => c.length >= 3).length < WORKERS;
    i++
  ) {
    const client = `10.1.${i}.9`;
    const { body } = await callSessionApp(app, 'GET', '/me', { client });
    bySlot.set(body.slot, [...(bySlot.get(body.slot) ?? []), client]);
  }
  expect([...bySlot.keys()].sort(), 'clients found for every slot').toHaveLength(WORKERS);
  return [...bySlot.values()].flatMap((c) => c.slice(0, 3));
}

const bySlot = (samples: { metric: Record<string, string>; value: number }[]) =>
  Object.fromEntries(samples.map((s) => [s.metric.slot ?? '', s.value]));

describe.skipIf(!available)('metrics scraped by a real Prometheus', () => {
  it('sees the connection counters of every slot rise and the write-to-visible histogram filled', async () => {
    const app = await startFixture({
      fixture: 'session-app.mjs',
      env: {
        WORKERS: String(WORKERS),
        STICKY_OPTIONS: JSON.stringify({ metrics: { port: 0 } }),
      },
    });
    const mport = Number((await app.waitFor('metricsListening')).line.port);
    const prometheus: PrometheusServer = await startPrometheus([`127.0.0.1:${mport}`], 1000);
    const clients = await clientsOfEverySlot(app);
    const running = { on: true };
    const loading = load(app, clients, running);
    try {
      const what = () => `prometheus log:\n${prometheus.log}\n${app.transcript()}`;
      // Scraped, and the exposition accepted.
      await vi.waitFor(
        async () => {
          const up = await prometheus.query('up{job="sticky-mesh"}');
          expect(
            up.map((s) => s.value),
            what(),
          ).toEqual([1]);
        },
        { timeout: 15_000, interval: 250 },
      );
      const routed = 'sticky_mesh_connections_routed_total{job="sticky-mesh"}';
      await vi.waitFor(
        async () =>
          expect(Object.keys(bySlot(await prometheus.query(routed))).sort()).toHaveLength(WORKERS),
        { timeout: 10_000, interval: 250 },
      );
      const first = bySlot(await prometheus.query(routed));
      // Three more scrapes under load.
      await delay(3500);
      let later: Record<string, number> = {};
      await vi.waitFor(
        async () => {
          later = bySlot(await prometheus.query(routed));
          for (const slot of Object.keys(first)) {
            expect(
              later[slot],
              `slot ${slot}: ${JSON.stringify({ first, later })}`,
            ).toBeGreaterThan(first[slot] as number);
          }
        },
        { timeout: 10_000, interval: 500 },
      );
      const rising = await prometheus.query(`rate(${routed}[5s]) > 0`);
      expect(Object.keys(bySlot(rising)).sort(), JSON.stringify(rising)).toEqual(['0', '1', '2']);

      // The store's histogram at each worker, filled by the other workers' writes.
      const counts = bySlot(
        await prometheus.query('sticky_mesh_store_visible_seconds_count{job="sticky-mesh"}'),
      );
      expect(Object.keys(counts).sort(), JSON.stringify(counts)).toEqual(['0', '1', '2']);
      for (const n of Object.values(counts)) expect(n).toBeGreaterThan(0);
      const p99 = await prometheus.query(
        'histogram_quantile(0.99, sum by (le) (rate(sticky_mesh_store_visible_seconds_bucket[10s])))',
      );
      expect(p99).toHaveLength(1);
      expect(Number.isFinite(p99[0]?.value), JSON.stringify(p99)).toBe(true);
      expect(p99[0]?.value).toBeLessThan(1);
      // Default metrics of every process, labelled by slot.
      const cpu = await prometheus.query('process_cpu_user_seconds_total{job="sticky-mesh"}');
      expect(Object.keys(bySlot(cpu)).sort()).toEqual(['0', '1', '2', 'primary']);
    } finally {
      running.on = false;
      await loading.catch(() => undefined);
      await prometheus.stop();
    }
  });
});
