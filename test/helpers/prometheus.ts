/**
 * A private Prometheus server for the system tests: started as a child process on a free
 * 127.0.0.1 port, with a throwaway configuration and storage directory, scraping the given
 * targets on loopback. Every server started is stopped (and its directory removed) by
 * `stopPrometheusServers()` (a suite's afterAll) and, as a last resort, killed when the test
 * process exits.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { freePort } from './redis.js';
import { hasTool } from './system.js';

const servers = new Set<PrometheusServer>();

/** Whether the Prometheus tests can run (under REQUIRE_SYSTEM_TESTS=1 a missing one throws). */
export function hasPrometheus(): boolean {
  return hasTool('prometheus');
}

/** One element of an instant query's vector result. */
export interface VectorSample {
  readonly metric: Record<string, string>;
  readonly value: number;
}

function getJson(port: number, path: string): Promise<{ status: number; body: unknown }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false }, (res) => {
      let text = '';
      res.setEncoding('utf8');
      res.on('data', (chunk: string) => {
        text += chunk;
      });
      res.on('end', () => {
        let body: unknown = text;
        try {
          body = JSON.parse(text);
        } catch {
          // not JSON (the readiness endpoint answers plain text)
        }
        resolve({ status: res.statusCode ?? 0, body });
      });
    });
    req.setTimeout(5_000, () => req.destroy(new Error(`GET ${path}: no answer in 5 s`)));
    req.on('error', reject);
  });
}

export class PrometheusServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly dir = mkdtempSync(join(tmpdir(), 'sticky-mesh-prometheus-'));
  /** What prometheus printed, for failure messages. */
  log = '';

  constructor(readonly port: number) {
    servers.add(this);
  }

  /**
   * Writes a configuration scraping `targets` (host:port on loopback, path `/metrics`) every
   * `intervalMs`, spawns prometheus and resolves once it reports ready.
   */
  async start(targets: readonly string[], intervalMs = 1000, timeoutMs = 20_000): Promise<void> {
    const config = join(this.dir, 'prometheus.yml');
    writeFileSync(
      config,
      [
        'global:',
        `  scrape_interval: ${intervalMs}ms`,
        `  scrape_timeout: ${intervalMs}ms`,
        'scrape_configs:',
        '  - job_name: sticky-mesh',
        '    static_configs:',
        `      - targets: [${targets.map((t) => `'${t}'`).join(', ')}]`,
        '',
      ].join('\n'),
    );
    const child = spawn(
      'prometheus',
      [
        `--config.file=${config}`,
        `--storage.tsdb.path=${join(this.dir, 'data')}`,
        `--web.listen-address=127.0.0.1:${this.port}`,
        '--log.level=warn',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    const append = (chunk: Buffer) => {
      this.log += chunk.toString('utf8');
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    child.once('error', (err) => {
      this.log += `spawn error: ${err.message}\n`;
    });
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline && this.running) {
      const ready = await getJson(this.port, '/-/ready').catch(() => undefined);
      if (ready?.status === 200) return;
      await delay(100);
    }
    await this.stop();
    throw new Error(`prometheus on port ${this.port} did not become ready\n${this.log}`);
  }

  get running(): boolean {
    const c = this.child;
    return c !== undefined && c.exitCode === null && c.signalCode === null;
  }

  /** An instant query through the HTTP API (`/api/v1/query`); `time` in seconds, default now. */
  async query(expr: string, time?: number): Promise<VectorSample[]> {
    const params = new URLSearchParams({ query: expr });
    if (time !== undefined) params.set('time', String(time));
    const { status, body } = await getJson(this.port, `/api/v1/query?${params}`);
    const answer = body as {
      status?: string;
      data?: {
        resultType: string;
        result: { metric: Record<string, string>; value: [number, string] }[];
      };
      error?: string;
    };
    if (status !== 200 || answer.status !== 'success' || answer.data?.resultType !== 'vector') {
      throw new Error(`query ${expr}: ${status} ${JSON.stringify(body)}`);
    }
    return answer.data.result.map((r) => ({ metric: r.metric, value: Number(r.value[1]) }));
  }

  /** For the test process's exit: SIGKILL and remove the directory, synchronously. */
  killNow(): void {
    if (this.running) this.child?.kill('SIGKILL');
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Stops the server (SIGTERM, then SIGKILL after 5 s), waits for it, removes its directory. */
  async stop(): Promise<void> {
    const child = this.child;
    if (child && this.running) {
      child.kill('SIGTERM');
      const timer = setTimeout(() => {
        if (this.running) child.kill('SIGKILL');
      }, 5_000);
      await this.exited;
      clearTimeout(timer);
    }
    servers.delete(this);
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** A Prometheus server on a free loopback port scraping `targets`, ready. */
export async function startPrometheus(
  targets: readonly string[],
  intervalMs = 1000,
): Promise<PrometheusServer> {
  const server = new PrometheusServer(await freePort());
  await server.start(targets, intervalMs);
  return server;
}

/** Stops every server started and not yet stopped. For afterAll / afterEach. */
export async function stopPrometheusServers(): Promise<void> {
  await Promise.all([...servers].map((s) => s.stop()));
}

process.once('exit', () => {
  for (const s of servers) s.killNow();
});
