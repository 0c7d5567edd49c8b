/** Process and socket inspection through /proc and `ss`, for assertions about whole process trees. */
import { execFile } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** True while `pid` runs. A zombie (exited, not yet reaped by an init that never reaps) is gone. */
export function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch {
    return false;
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // "pid (comm) S ...": the state letter follows the last ')'.
    const state = stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3);
    return state !== 'Z' && state !== 'X';
  } catch {
    return false;
  }
}

/** Polls until none of `pids` is alive or `timeoutMs` passes; returns those still alive. */
export async function waitUntilGone(pids: readonly number[], timeoutMs: number): Promise<number[]> {
  const deadline = Date.now() + timeoutMs;
  let alive = pids.filter(isAlive);
  while (alive.length > 0 && Date.now() < deadline) {
    await delay(20);
    alive = alive.filter(isAlive);
  }
  return alive;
}

export interface ListeningSocket {
  readonly local: string;
  readonly port: number;
  readonly pids: number[];
  readonly raw: string;
}

/** Every listening TCP socket on the host (`ss -ltnpH`), with the pids that hold it. */
export async function listeningTcpSockets(): Promise<ListeningSocket[]> {
  const { stdout } = await run('ss', ['-ltnpH']);
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((raw) => {
      const columns = raw.trim().split(/\s+/);
      const local = columns[3] ?? '';
      const port = Number(local.slice(local.lastIndexOf(':') + 1));
      const pids = [...raw.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
      return { local, port, pids, raw };
    });
}

export interface EstablishedSocket {
  readonly local: string;
  readonly localPort: number;
  readonly peer: string;
  readonly pids: number[];
}

/** Every established TCP connection on the host (`ss -tnpH state established`). */
export async function establishedTcpSockets(): Promise<EstablishedSocket[]> {
  const { stdout } = await run('ss', ['-tnpH', 'state', 'established']);
  return parseEstablished(stdout);
}

/**
 * The output of `ss -tnpH state established`, parsed (run it elsewhere, in a network namespace
 * with `ip netns exec`, and parse it here).
 */
export function parseEstablished(stdout: string): EstablishedSocket[] {
  return stdout
    .split('\n')
    .filter((line) => line.trim() !== '')
    .map((raw) => {
      // With a state filter ss drops the State column: Recv-Q Send-Q Local Peer Process
      const columns = raw.trim().split(/\s+/);
      const local = columns[2] ?? '';
      const peer = columns[3] ?? '';
      const localPort = Number(local.slice(local.lastIndexOf(':') + 1));
      const pids = [...raw.matchAll(/pid=(\d+)/g)].map((m) => Number(m[1]));
      return { local, localPort, peer, pids };
    });
}
