// The primary's relay directory (src/master/relay-dir.ts): private, removed with the pool, and
// those of primaries killed before they could remove theirs are removed by the next one.
import { existsSync, mkdirSync, rmSync, statSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { makeRelayDir, removeRelayDir } from '../../src/master/relay-dir.js';

const made: string[] = [];
afterEach(() => {
  for (const dir of made.splice(0)) rmSync(dir, { recursive: true, force: true });
});

/** A pid no process has: past the kernel's usual pid_max, so never alive. */
const GONE = 4_194_304 + 17;

describe('relay directory', () => {
  it('is private, named after its primary, and removed on request', () => {
    const dir = makeRelayDir();
    made.push(dir);
    expect(path.basename(dir)).toMatch(new RegExp(`^sticky-mesh-relay-${process.pid}-`));
    expect(statSync(dir).mode & 0o777).toBe(0o700);
    removeRelayDir(dir);
    expect(existsSync(dir)).toBe(false);
  });

  it("removes the directories of primaries that are gone, and leaves a live one's", () => {
    const orphan = path.join(os.tmpdir(), `sticky-mesh-relay-${GONE}-orphan`);
    const live = path.join(os.tmpdir(), `sticky-mesh-relay-${process.ppid}-live`);
    for (const dir of [orphan, live]) {
      mkdirSync(path.join(dir, 'x'), { recursive: true });
      made.push(dir);
    }
    made.push(makeRelayDir());
    expect(existsSync(orphan)).toBe(false);
    expect(existsSync(live)).toBe(true);
  });
});
