// The chat example with METRICS_PORT: its primary serves the machine's metrics, and they count
// what the chat served.
import { readdirSync, rmSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import { parseExposition } from '../helpers/prom-text.js';

let started: FixtureProcess | undefined;

afterEach(async () => {
  await stopFixtures();
  // The example prints no relay directory (sessionAffinity makes one): a primary killed by the
  // teardown could not remove its own, named after its pid.
  if (started) {
    const prefix = `sticky-mesh-relay-${started.pid}-`;
    for (const name of readdirSync(tmpdir()).filter((n) => n.startsWith(prefix))) {
      rmSync(join(tmpdir(), name), { recursive: true, force: true });
    }
    started = undefined;
  }
});

function fetchText(port: number, path: string): Promise<{ status: number; text: string }> {
  return new Promise((resolve, reject) => {
    http
      .get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
        let text = '';
        res.setEncoding('utf8');
        res.on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () => resolve({ status: res.statusCode ?? 0, text }));
      })
      .on('error', reject);
  });
}

describe('examples/socketio with METRICS_PORT', () => {
  it('serves the metrics of the primary and both workers, counting the chat page loads', async () => {
    const app = await startFixture({
      fixture: '../../examples/socketio/server.js',
      env: { PORT: '0', WORKERS: '2', METRICS_PORT: '0' },
      until: null,
    });
    started = app;
    let chatPort = 0;
    let metricsPort = 0;
    await vi.waitFor(
      () => {
        const chat = /chat on http:\/\/localhost:(\d+) with 2 workers/.exec(app.stdout);
        const metrics = /metrics on http:\/\/127\.0\.0\.1:(\d+)\/metrics/.exec(app.stdout);
        expect(chat && metrics, app.transcript()).toBeTruthy();
        chatPort = Number(chat?.[1]);
        metricsPort = Number(metrics?.[1]);
      },
      { timeout: 15_000, interval: 50 },
    );
    const sources = loopbackSources(20);
    for (const source of sources) {
      const page = await request({ port: chatPort, source, path: '/' });
      expect(page.status).toBe(200);
    }
    const scrape = await fetchText(metricsPort, '/metrics');
    expect(scrape.status).toBe(200);
    const m = parseExposition(scrape.text);
    expect(m.sum('sticky_mesh_connections_routed_total'), scrape.text).toBe(sources.length);
    expect(m.sum('sticky_mesh_metrics_workers_answered'), scrape.text).toBe(2);
    const slots = new Set(m.find('process_cpu_user_seconds_total').map((s) => s.labels.slot));
    expect([...slots].sort()).toEqual(['0', '1', 'primary']);
    // Drained and closed on SIGTERM, the endpoint with it.
    app.signal('SIGTERM');
    await app.waitForExit(15_000);
    await expect(fetchText(metricsPort, '/metrics')).rejects.toThrow(/ECONNREFUSED/);
  });
});
