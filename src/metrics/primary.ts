import type { Worker } from 'node:cluster';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { debug } from '../debug.js';
import { StickyMeshError } from '../errors.js';
import type { Balancer } from '../master/balancer.js';
import type { WorkerPool } from '../master/pool.js';
import type { MetricsReportMessage } from '../protocol/messages.js';
import type { Hub } from '../replication/transports/ipc/hub.js';
import { checkMetrics, type MetricJson, render, without, withSlot } from './exposition.js';
import type { ResolvedMetricsOptions } from './options.js';
import { type PrimaryRegistry, type PrimaryStats, primaryRegistry } from './primary-registry.js';
import { loadPromClient, type Prom, type Registry } from './prom.js';
import { WorkerScrapes } from './scrape.js';

/** `app.metrics()` without the `metrics` option. */
export function metricsOff(): StickyMeshError {
  return new StickyMeshError(
    'ERR_STICKY_METRICS_FAILED',
    'sticky-mesh: metrics() needs the metrics option (and the prom-client package)',
  );
}

/**
 * The `metrics` option in the primary: the machine's metrics as one Prometheus text, from the
 * primary's own registries and every ready worker's report (each asked at every scrape, over
 * IPC, with a deadline: see scrape.ts), served on an HTTP endpoint of its own. Throws
 * `ERR_STICKY_METRICS_FAILED` without prom-client.
 */
export class PrimaryMetrics {
  private readonly prom: Prom;
  private readonly mesh: PrimaryRegistry;
  /** prom-client's default process and Node.js metrics of the primary (`slot="primary"`). */
  private readonly process: Registry;
  /** Names this library reports: the application's registries' series of these are dropped. */
  private readonly names: Set<string>;
  private readonly scrapes = new WorkerScrapes();
  private server: http.Server | undefined;

  constructor(
    private readonly options: ResolvedMetricsOptions,
    pool: WorkerPool,
    balancer: Balancer,
    hub: Hub,
    stats: () => PrimaryStats,
  ) {
    this.prom = loadPromClient();
    const source = {
      stats,
      refusals: () => balancer.refusals,
      queued: (slot: number) => pool.handoff(slot)?.queued ?? 0,
      table: () => hub.table,
    };
    this.mesh = primaryRegistry(this.prom, source, hub.transport?.kind);
    this.process = new this.prom.Registry();
    this.prom.collectDefaultMetrics({ register: this.process });
    this.names = new Set(
      [this.mesh.registry, this.process].flatMap((r) => r.getMetricsAsArray().map((m) => m.name)),
    );
    pool.on('forked', (worker, slot) => this.scrapes.track(worker, slot));
    pool.on('workerUp', ({ pid }) => this.scrapes.up(pid));
    balancer.onHeadRead = (outcome, seconds) =>
      this.mesh.headRead(outcome.replace('-', '_'), seconds);
  }

  /** A worker's MetricsReport. */
  receive(worker: Worker, msg: MetricsReportMessage): void {
    this.scrapes.receive(worker, msg);
  }

  /**
   * The machine's metrics in the Prometheus text format: the primary's, and those of every
   * worker that answered within `timeout` (each series with its `slot`); a worker that did not
   * is left out and counted in `sticky_mesh_metrics_workers_missed_total`.
   */
  async text(): Promise<string> {
    const [gathered, app, processMetrics] = await Promise.all([
      this.scrapes.gather(this.options.timeout),
      this.appMetrics(),
      this.process.getMetricsAsJSON(),
    ]);
    for (const slot of gathered.missed) this.mesh.missed(slot);
    this.mesh.answered(gathered.reports.length);
    const primary = (await this.mesh.registry.getMetricsAsJSON()) as unknown[] as MetricJson[];
    const own = withSlot(checkMetrics([...processMetrics, ...app]), 'primary');
    const workers = gathered.reports.map((r) => withSlot(checkMetrics(r.metrics), String(r.slot)));
    return render(this.prom, [primary, own, ...workers]);
  }

  /** The Content-Type of what `text()` returns. */
  get contentType(): string {
    return this.prom.register.contentType;
  }

  /**
   * Binds the endpoint; `listening` gets its address, `failed` an `ERR_STICKY_METRICS_FAILED`
   * if it cannot bind.
   */
  listen(listening: (address: AddressInfo) => void, failed: (err: StickyMeshError) => void): void {
    const server = http.createServer((req, res) => this.serve(req, res));
    this.server = server;
    server.once('error', (err) =>
      failed(
        new StickyMeshError(
          'ERR_STICKY_METRICS_FAILED',
          `sticky-mesh: the metrics endpoint could not listen on ${this.options.host}:${this.options.port}: ${err.message}`,
          { cause: err },
        ),
      ),
    );
    server.listen({ port: this.options.port, host: this.options.host }, () => {
      listening(server.address() as AddressInfo);
    });
  }

  /** Closes the endpoint and ends the scrapes in progress. Idempotent. */
  close(): Promise<void> {
    this.scrapes.close();
    const server = this.server;
    this.server = undefined;
    if (!server?.listening) return Promise.resolve();
    return new Promise<void>((resolve) => {
      server.close(() => resolve());
      server.closeAllConnections();
    });
  }

  /** The primary's prom-client default registry (what the application registered there). */
  private async appMetrics(): Promise<MetricJson[]> {
    try {
      const all = (await this.prom.register.getMetricsAsJSON()) as unknown[] as MetricJson[];
      return without(all, this.names);
    } catch (err) {
      debug('metrics: prom-client default registry failed: %s', (err as Error).message);
      return [];
    }
  }

  private serve(req: http.IncomingMessage, res: http.ServerResponse): void {
    const path = (req.url ?? '/').split('?')[0];
    if (path !== this.options.path) {
      res.writeHead(404, { 'content-type': 'text/plain' }).end('not found\n');
      return;
    }
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD', 'content-type': 'text/plain' }).end();
      return;
    }
    this.text().then(
      (text) => {
        res.writeHead(200, { 'content-type': this.contentType });
        res.end(req.method === 'HEAD' ? undefined : text);
      },
      (err: Error) => {
        debug('metrics: scrape failed: %s', err.message);
        res.writeHead(500, { 'content-type': 'text/plain' }).end(`${err.message}\n`);
      },
    );
  }
}
