import { execFileSync } from 'node:child_process';

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
