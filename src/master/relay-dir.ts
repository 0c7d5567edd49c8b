import { mkdtempSync, readdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { debug } from '../debug.js';

/** Relay directories are named `sticky-mesh-relay-<primary pid>-<random>` in the temp dir. */
const PREFIX = 'sticky-mesh-relay-';

/**
 * A private directory (mode 0700) for the workers' relay sockets, removed when the pool is idle
 * or the process exits; '' (no relays: requests for another worker move their connection) where
 * none can be made or its socket paths would be too long for a Unix socket. A primary that was
 * killed (SIGKILL) cannot remove its own: each new one removes those of primaries that are gone.
 */
export function makeRelayDir(): string {
  try {
    removeOrphans();
    const dir = mkdtempSync(path.join(os.tmpdir(), `${PREFIX}${process.pid}-`));
    if (Buffer.byteLength(path.join(dir, '0000.sock')) > 100) {
      removeRelayDir(dir);
      return '';
    }
    process.once('exit', () => removeRelayDir(dir));
    return dir;
  } catch (err) {
    debug('no relay directory: %s', (err as Error).message);
    return '';
  }
}

export function removeRelayDir(dir: string): void {
  if (dir) rmSync(dir, { recursive: true, force: true });
}

/** Removes this user's relay directories whose primary process no longer exists. */
function removeOrphans(): void {
  const tmp = os.tmpdir();
  const uid = process.getuid?.();
  for (const name of readdirSync(tmp)) {
    if (!name.startsWith(PREFIX)) continue;
    const pid = Number.parseInt(name.slice(PREFIX.length), 10);
    if (!Number.isInteger(pid) || pid <= 0 || pid === process.pid || alive(pid)) continue;
    try {
      const dir = path.join(tmp, name);
      if (uid === undefined || statSync(dir).uid === uid) removeRelayDir(dir);
    } catch (err) {
      debug('relay directory %s left: %s', name, (err as Error).message);
    }
  }
}

function alive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    // EPERM: it exists, as another user's.
    return (err as NodeJS.ErrnoException).code === 'EPERM';
  }
}
