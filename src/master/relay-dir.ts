import { mkdtempSync, rmSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { debug } from '../debug.js';

/**
 * A private directory (mode 0700) for the workers' relay sockets, removed when the pool is idle
 * or the process exits; '' (no relays: requests for another worker move their connection) where
 * none can be made or its socket paths would be too long for a Unix socket.
 */
export function makeRelayDir(): string {
  try {
    const dir = mkdtempSync(path.join(os.tmpdir(), 'sticky-mesh-'));
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
