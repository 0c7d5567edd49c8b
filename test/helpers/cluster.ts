/**
 * Runs a clustered fixture program as a child process and follows the JSON lines it prints.
 *
 * The program is spawned `detached`, so it leads its own process group and its workers join it:
 * teardown SIGKILLs the whole group, then every pid the program ever printed, and waits until
 * each one is gone; then removes every relay directory (`relayDir`) a line named. Nothing is left
 * running or behind, also when a test fails half way.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { rmSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { isAlive, waitUntilGone } from './proc.js';

/** One line printed by a fixture: `event` plus whatever fields that event carries. */
export interface FixtureEvent {
  readonly event: string;
  readonly [field: string]: unknown;
}

/** A printed line with the moment (Date.now) the test process read it. */
export interface ReceivedEvent {
  readonly line: FixtureEvent;
  readonly receivedAt: number;
  readonly index: number;
}

export interface ExitStatus {
  readonly code: number | null;
  readonly signal: NodeJS.Signals | null;
}

export interface StartOptions {
  /** File name under test/fixtures. */
  readonly fixture: string;
  /** Extra environment for the program (merged over process.env). */
  readonly env?: Record<string, string>;
  /** Event to wait for before start() resolves; default 'ready'. `null` waits for nothing. */
  readonly until?: string | null;
  /** ms; default 15000. */
  readonly timeoutMs?: number;
  /**
   * Network namespace to run the program in (test/helpers/netns.ts): spawned as
   * `ip netns exec <netns> node <fixture>`, which execs node, so the child pid is still node's.
   */
  readonly netns?: string;
}

type Matcher = (line: FixtureEvent) => boolean;

const fixturesDir = fileURLToPath(new URL('../fixtures/', import.meta.url));
const running = new Set<FixtureProcess>();

export class FixtureProcess {
  readonly child: ChildProcess;
  readonly pid: number;
  readonly received: ReceivedEvent[] = [];
  readonly exited: Promise<ExitStatus>;
  stdout = '';
  stderr = '';
  exitStatus: ExitStatus | undefined;
  private readonly waiters = new Set<() => void>();
  private partial = '';

  constructor(
    readonly name: string,
    env: Record<string, string>,
    netns?: string,
  ) {
    const script = fixturesDir + name;
    this.child = spawn(
      netns === undefined ? process.execPath : 'ip',
      netns === undefined ? [script] : ['netns', 'exec', netns, process.execPath, script],
      {
        cwd: fileURLToPath(new URL('../../', import.meta.url)),
        env: { ...process.env, ...env },
        stdio: ['ignore', 'pipe', 'pipe'],
        detached: true,
      },
    );
    if (this.child.pid === undefined) throw new Error(`could not spawn ${name}`);
    this.pid = this.child.pid;
    this.exited = new Promise((resolve) => {
      this.child.once('exit', (code, signal) => {
        this.exitStatus = { code, signal };
        this.wake();
        resolve(this.exitStatus);
      });
    });
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => this.onStdout(chunk));
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
  }

  /** Every line so far whose event is `event` (and that `match` accepts). */
  events(event: string, match: Matcher = () => true): FixtureEvent[] {
    return this.received.map((r) => r.line).filter((l) => l.event === event && match(l));
  }

  /** Every pid any line mentioned: the primary, workers, respawned workers. */
  pidsSeen(): number[] {
    const pids = new Set<number>([this.pid]);
    for (const { line } of this.received) {
      for (const key of ['pid', 'self']) {
        const value = line[key];
        if (typeof value === 'number' && Number.isInteger(value) && value > 0) pids.add(value);
      }
    }
    return [...pids];
  }

  /** Worker pids announced by `workerUp`, in order. */
  workerPids(): number[] {
    return this.events('workerUp').map((l) => Number(l.pid));
  }

  /** Port from the `listening` line. */
  port(): number {
    const line = this.events('listening')[0];
    if (line === undefined || typeof line.port !== 'number') {
      throw new Error(`${this.name} has not printed a listening line\n${this.transcript()}`);
    }
    return line.port;
  }

  /**
   * Resolves with the first line at index >= `from` whose event is `event` and that `match`
   * accepts. Rejects after `timeoutMs`, or when the program exits first, with everything seen.
   */
  waitFor(
    event: string,
    options: { match?: Matcher; from?: number; timeoutMs?: number } = {},
  ): Promise<ReceivedEvent> {
    const { match = () => true, from = 0, timeoutMs = 10_000 } = options;
    const find = () =>
      this.received.find((r) => r.index >= from && r.line.event === event && match(r.line));
    return new Promise((resolve, reject) => {
      const check = () => {
        const found = find();
        if (found !== undefined) {
          finish();
          resolve(found);
        } else if (this.exitStatus !== undefined) {
          finish();
          reject(this.failure(`exited (${describeExit(this.exitStatus)}) before "${event}"`));
        }
      };
      const timer = setTimeout(() => {
        finish();
        reject(this.failure(`no "${event}" line within ${timeoutMs} ms`));
      }, timeoutMs);
      const finish = () => {
        clearTimeout(timer);
        this.waiters.delete(check);
      };
      this.waiters.add(check);
      check();
    });
  }

  /** Resolves with the exit status; rejects with the transcript if it takes over `timeoutMs`. */
  async waitForExit(timeoutMs: number): Promise<ExitStatus> {
    let timer: NodeJS.Timeout | undefined;
    const timeout = new Promise<never>((_, reject) => {
      timer = setTimeout(
        () => reject(this.failure(`still running ${timeoutMs} ms later`)),
        timeoutMs,
      );
    });
    try {
      return await Promise.race([this.exited, timeout]);
    } finally {
      clearTimeout(timer);
    }
  }

  signal(signal: NodeJS.Signals): void {
    this.child.kill(signal);
  }

  /** Everything the program printed so far, for failure messages. */
  transcript(): string {
    const status = this.exitStatus === undefined ? 'running' : describeExit(this.exitStatus);
    return [
      `--- ${this.name} (pid ${this.pid}, ${status}) stdout ---`,
      this.stdout.trimEnd() || '(nothing)',
      '--- stderr ---',
      this.stderr.trimEnd() || '(nothing)',
    ].join('\n');
  }

  /** SIGKILL the process group and every pid seen; resolves once all of them are gone. */
  async stop(): Promise<void> {
    running.delete(this);
    const pids = this.pidsSeen();
    try {
      process.kill(-this.pid, 'SIGKILL');
    } catch {
      // group already gone
    }
    for (const pid of pids) {
      if (isAlive(pid)) {
        try {
          process.kill(pid, 'SIGKILL');
        } catch {
          // exited meanwhile
        }
      }
    }
    await this.exited;
    const left = await waitUntilGone(pids, 5_000);
    if (left.length > 0) throw new Error(`pids still alive after SIGKILL: ${left.join(', ')}`);
    // A primary killed so cannot remove its relay directory: the workers said where it is.
    for (const { line } of this.received) {
      const dir = line.relayDir;
      if (typeof dir === 'string' && path.basename(dir).startsWith('sticky-mesh-')) {
        rmSync(dir, { recursive: true, force: true });
      }
    }
  }

  private onStdout(chunk: string): void {
    this.stdout += chunk;
    const text = this.partial + chunk;
    const lines = text.split('\n');
    this.partial = lines.pop() ?? '';
    const now = Date.now();
    for (const raw of lines) {
      if (raw.trim() === '') continue;
      let parsed: unknown;
      try {
        parsed = JSON.parse(raw);
      } catch {
        continue; // not one of ours (a stray log line); it stays in the transcript
      }
      if (typeof parsed === 'object' && parsed !== null && 'event' in parsed) {
        this.received.push({
          line: parsed as FixtureEvent,
          receivedAt: now,
          index: this.received.length,
        });
      }
    }
    this.wake();
  }

  private wake(): void {
    for (const waiter of [...this.waiters]) waiter();
  }

  private failure(what: string): Error {
    return new Error(`${this.name} ${what}\n${this.transcript()}`);
  }
}

export function describeExit(status: ExitStatus): string {
  return status.signal === null ? `code ${status.code}` : `signal ${status.signal}`;
}

/**
 * Starts a fixture program and (by default) waits for its `ready` line. The process is
 * registered for stopFixtures(), so a test cannot forget it.
 */
export async function startFixture(options: StartOptions): Promise<FixtureProcess> {
  const fixture = new FixtureProcess(options.fixture, options.env ?? {}, options.netns);
  running.add(fixture);
  const until = options.until === undefined ? 'ready' : options.until;
  if (until !== null) await fixture.waitFor(until, { timeoutMs: options.timeoutMs ?? 15_000 });
  return fixture;
}

/** Stops every fixture started and not yet stopped. For afterEach / afterAll. */
export async function stopFixtures(): Promise<void> {
  const all = [...running];
  const results = await Promise.allSettled(all.map((f) => f.stop()));
  const failed = results.filter((r): r is PromiseRejectedResult => r.status === 'rejected');
  if (failed.length > 0) throw failed[0]?.reason;
}
