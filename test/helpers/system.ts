import { execFileSync } from 'node:child_process';
import { afterAll, beforeAll } from 'vitest';

/**
 * Whether a system program the tests need is installed. Tests that need one are skipped, by
 * name, when it is missing, except under REQUIRE_SYSTEM_TESTS=1 (CI), where a missing program
 * is an error: a skipped test must never pass silently there.
 */
export function hasTool(name: string): boolean {
  let found = true;
  try {
    execFileSync('sh', ['-c', `command -v ${name}`], { stdio: 'ignore' });
  } catch {
    found = false;
  }
  if (!found && process.env.REQUIRE_SYSTEM_TESTS === '1') {
    throw new Error(`REQUIRE_SYSTEM_TESTS=1 but "${name}" is not installed (see .ci/run)`);
  }
  return found;
}

/** A throwaway self-signed certificate for localhost (needs openssl), and how to remove it. */
export async function selfSignedCert(): Promise<{
  cert: string;
  key: string;
  remove(): Promise<void>;
}> {
  const { execFile } = await import('node:child_process');
  const { mkdtemp, rm } = await import('node:fs/promises');
  const { tmpdir } = await import('node:os');
  const { join } = await import('node:path');
  const { promisify } = await import('node:util');
  const dir = await mkdtemp(join(tmpdir(), 'sticky-mesh-tls-'));
  const cert = join(dir, 'cert.pem');
  const key = join(dir, 'key.pem');
  await promisify(execFile)('openssl', [
    'req',
    '-x509',
    '-newkey',
    'rsa:2048',
    '-nodes',
    '-days',
    '2',
    '-subj',
    '/CN=localhost',
    '-keyout',
    key,
    '-out',
    cert,
  ]);
  return { cert, key, remove: () => rm(dir, { recursive: true, force: true }) };
}

/**
 * Registers hooks that make a throwaway certificate before the suite's tests and remove it after
 * them; the returned object holds its paths once the suite runs.
 */
export function useSelfSignedCert(): { cert: string; key: string } {
  const files = { cert: '', key: '' };
  let remove: (() => Promise<void>) | undefined;
  beforeAll(async () => {
    const made = await selfSignedCert();
    files.cert = made.cert;
    files.key = made.key;
    remove = made.remove;
  });
  afterAll(async () => {
    await remove?.();
  });
  return files;
}
