/**
 * A private redis-server for the tests: started as a child process (not daemonized) on a free
 * 127.0.0.1 port, without persistence (`--save '' --appendonly no`, a throwaway `--dir`), so a
 * restart brings it back empty on the same port: the product must repopulate it from the
 * machines' replicas. Every server started is killed by `stopRedisServers()` (a suite's afterAll)
 * and, as a last resort, when the test process exits.
 */
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { hasTool } from './system.js';

const run = promisify(execFile);
const servers = new Set<RedisServer>();

/** Whether the redis-server tests can run (under REQUIRE_SYSTEM_TESTS=1 a missing one throws). */
export function hasRedis(): boolean {
  return hasTool('redis-server');
}

/** A free TCP port on 127.0.0.1 (free when asked: redis-server may still lose a race for it). */
export function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

/** Sends PING over plain TCP; resolves whether `+PONG` came back within `timeoutMs`. */
export function ping(port: number, timeoutMs = 500): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    let data = '';
    const done = (ok: boolean) => {
      clearTimeout(timer);
      socket.destroy();
      resolve(ok);
    };
    const timer = setTimeout(() => done(false), timeoutMs);
    socket.on('connect', () => socket.write('PING\r\n'));
    socket.on('data', (chunk) => {
      data += chunk.toString('latin1');
      if (data.includes('\r\n')) done(data.startsWith('+PONG'));
    });
    socket.on('error', () => done(false));
  });
}

export class RedisServer {
  private child: ChildProcess | undefined;
  private exited: Promise<void> = Promise.resolve();
  private readonly dir = mkdtempSync(join(tmpdir(), 'sticky-mesh-redis-'));
  /** What redis-server printed (all runs), for failure messages. */
  log = '';

  constructor(readonly port: number) {
    servers.add(this);
  }

  get url(): string {
    return `redis://127.0.0.1:${this.port}`;
  }

  get pid(): number | undefined {
    return this.child?.pid;
  }

  get running(): boolean {
    return (
      this.child !== undefined && this.child.exitCode === null && this.child.signalCode === null
    );
  }

  /** Spawns redis-server and resolves once it answers PING (rejects with its output if not). */
  async start(timeoutMs = 10_000): Promise<void> {
    if (this.running) return;
    const child = spawn(
      'redis-server',
      [
        '--port',
        String(this.port),
        '--bind',
        '127.0.0.1',
        '--save',
        '',
        '--appendonly',
        'no',
        '--dir',
        this.dir,
        '--daemonize',
        'no',
        '--protected-mode',
        'no',
        '--loglevel',
        'warning',
      ],
      { stdio: ['ignore', 'pipe', 'pipe'] },
    );
    this.child = child;
    const append = (chunk: Buffer) => {
      this.log += chunk.toString('utf8');
    };
    child.stdout?.on('data', append);
    child.stderr?.on('data', append);
    this.exited = new Promise((resolve) => {
      if (child.exitCode !== null || child.signalCode !== null) resolve();
      else child.once('exit', () => resolve());
    });
    child.once('error', (err) => {
      this.log += `spawn error: ${err.message}\n`;
    });
    const deadline = Date.now() + timeoutMs;
    while (Date.now() < deadline) {
      if (!this.running) break;
      if (await ping(this.port, 200)) return;
      await delay(20);
    }
    await this.stop();
    throw new Error(`redis-server on port ${this.port} did not answer PING\n${this.log}`);
  }

  /** Kills the server (SIGKILL by default: a crash) and waits until it has exited. */
  async stop(signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    const child = this.child;
    if (child && this.running) {
      try {
        child.kill(signal);
      } catch {
        // already gone
      }
      const timer = setTimeout(() => {
        if (this.running) child.kill('SIGKILL');
      }, 3000);
      await this.exited;
      clearTimeout(timer);
    }
  }

  /**
   * Stops the server and starts it again on the same port, `downMs` later. Without persistence
   * it comes back empty.
   */
  async restart(downMs = 0, signal: NodeJS.Signals = 'SIGKILL'): Promise<void> {
    await this.stop(signal);
    if (downMs > 0) await delay(downMs);
    await this.start();
  }

  /** Runs `redis-cli -p <port> <args...>` and resolves with its output (trimmed). */
  async cli(...args: string[]): Promise<string> {
    const { stdout } = await run('redis-cli', [
      '-h',
      '127.0.0.1',
      '-p',
      String(this.port),
      ...args,
    ]);
    return stdout.trim();
  }

  /** Stops the server for good and removes its directory. */
  async dispose(): Promise<void> {
    servers.delete(this);
    await this.stop();
    rmSync(this.dir, { recursive: true, force: true });
  }

  /** Synchronous last resort (process exit): kill, no waiting. */
  killNow(): void {
    if (this.running) {
      try {
        this.child?.kill('SIGKILL');
      } catch {
        // already gone
      }
    }
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/** Starts a redis-server on a free port (a few tries: another process may take the port first). */
export async function startRedisServer(): Promise<RedisServer> {
  let lastError: unknown;
  for (let attempt = 0; attempt < 5; attempt++) {
    const server = new RedisServer(await freePort());
    try {
      await server.start();
      return server;
    } catch (err) {
      lastError = err;
      await server.dispose();
    }
  }
  throw lastError;
}

/** Stops every server started and not yet disposed. For afterAll / afterEach. */
export async function stopRedisServers(): Promise<void> {
  await Promise.all([...servers].map((s) => s.dispose()));
}

process.once('exit', () => {
  for (const server of servers) server.killNow();
});
