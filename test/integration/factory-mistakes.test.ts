// A new user's likely mistakes with the factory, and a factory that fails the same way at every
// start (issue 19, findings 1 and 2). Before: a factory returning the Express app was "ready"
// and every request hung; the Express app in place of the factory, a factory without `return`,
// or one that always throws, made a respawn loop for ever, two stack traces a round, no `error`;
// `server.listen()` in the factory bound a port in the worker without a word. Now each mistake
// is named with what to write instead, and a startup that cannot succeed ends in one `error`.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import { STARTUP_ATTEMPTS } from '../../src/master/startup.js';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { getWorker, loopbackSources, request } from '../helpers/http.js';
import { isAlive, waitUntilGone } from '../helpers/proc.js';

const FIXTURE = 'factory-mistakes.mjs';
const dirs: string[] = [];
afterEach(async () => {
  await stopFixtures();
  for (const dir of dirs.splice(0)) rmSync(dir, { recursive: true, force: true });
});

function tempDir(): string {
  const dir = mkdtempSync(path.join(os.tmpdir(), 'sticky-mesh-factory-'));
  dirs.push(dir);
  return dir;
}

/** The pids of every worker the program forked (each printed `workerStart`). */
function workerPids(app: FixtureProcess): number[] {
  return app.events('workerStart').map((l) => Number(l.pid));
}

/**
 * Starts MISTAKE with two workers and waits for the primary's `error`; checks what every startup
 * failure must end with: one error, after every worker is gone, none forked after it, nothing
 * printed by the library on stderr. Returns the error line.
 */
async function startupError(mistake: string) {
  const app = await startFixture({
    fixture: FIXTURE,
    env: { MISTAKE: mistake },
    until: 'listening',
  });
  const listening = app.received.find((r) => r.line.event === 'listening')?.receivedAt ?? 0;
  const error = await app.waitFor('error', { timeoutMs: 15_000 });
  const what = app.transcript();
  // Bounded: a few rounds of respawnDelay 50 ms (capped at 400) and forks, not for ever.
  expect(error.receivedAt - listening, what).toBeLessThan(10_000);
  expect(error.line.workers, `workers still in cluster.workers at the error\n${what}`).toBe(0);
  const pids = workerPids(app);
  expect(await waitUntilGone(pids, 1_000), what).toEqual([]);
  // Every slot failed the same way STARTUP_ATTEMPTS times before the primary stopped.
  for (const slot of [0, 1]) {
    const starts = app.events('workerStart', (l) => l.slot === slot).length;
    expect(starts, what).toBeGreaterThanOrEqual(STARTUP_ATTEMPTS);
  }
  // The primary closes and, with nothing else to do, its process ends: no hang, no respawn.
  await app.waitFor('close', { timeoutMs: 5_000 });
  const exit = await app.waitForExit(5_000);
  expect(exit, what).toEqual({ code: 0, signal: null });
  expect(workerPids(app), what).toEqual(pids);
  expect(app.events('error'), what).toHaveLength(1);
  expect(app.events('ready'), what).toEqual([]);
  // The failed workers printed nothing: no stack trace per worker and round.
  expect(app.stderr, what).toBe('');
  return error.line;
}

describe('the factory returns something that is not a server', () => {
  afterEach(stopFixtures);

  it.each([
    [
      'the Express app',
      'return-app',
      'the server factory returned an Express app, not a server: return `http.createServer(app)`',
    ],
    [
      'nothing (no `return`)',
      'no-return',
      'the server factory returned undefined (did it forget `return`?): it must return the ' +
        'server, e.g. `return http.createServer(app)`',
    ],
    [
      'server.listen(0)',
      'listen',
      'the server factory returned a server on which listen() was called: the primary owns the ' +
        "port and hands each connection to the worker's server, so return the server without " +
        'calling listen() (`return http.createServer(app)`)',
    ],
  ])(
    '%s: the primary emits ERR_STICKY_STARTUP_FAILED naming it, with what to write',
    async (_name, mistake, text) => {
      const error = await startupError(mistake);
      expect(error).toMatchObject({
        code: 'ERR_STICKY_STARTUP_FAILED',
        message:
          'sticky-mesh: no worker can start (the same failure 3 times in a row in each of the 2 ' +
          `slots; not respawning): ${text}`,
        cause: { code: 'ERR_STICKY_FACTORY_FAILED', message: `sticky-mesh: ${text}` },
      });
    },
  );

  it('the Express app in place of the factory: sticky() throws in the primary, no worker is forked', async () => {
    const app = await startFixture({
      fixture: FIXTURE,
      env: { MISTAKE: 'pass-app' },
      until: 'thrown',
    });
    const exit = await app.waitForExit(5_000);
    const what = app.transcript();
    expect(app.events('thrown'), what).toEqual([
      {
        event: 'thrown',
        code: 'ERR_STICKY_INVALID_ARGUMENT',
        message:
          'sticky-mesh: sticky() got an Express app in place of the factory: write ' +
          '`sticky(() => http.createServer(app))`',
        self: app.pid,
      },
    ]);
    expect(exit, what).toEqual({ code: 2, signal: null });
    expect(app.events('workerStart'), what).toEqual([]);
  });
});

describe('a factory that throws at every start', () => {
  afterEach(stopFixtures);

  it("ends in one error naming the factory's error, its stack from the worker as the cause's", async () => {
    const error = await startupError('throw');
    expect(error).toMatchObject({
      code: 'ERR_STICKY_STARTUP_FAILED',
      message:
        'sticky-mesh: no worker can start (the same failure 3 times in a row in each of the 2 ' +
        'slots; not respawning): the server factory failed: Error: the fixture factory fails ' +
        'the same way every time',
      cause: {
        code: 'ERR_STICKY_FACTORY_FAILED',
        thrown: { message: 'the fixture factory fails the same way every time' },
      },
    });
    const stack = String((error.cause as { thrown: { stack: string } }).thrown.stack);
    expect(stack).toMatch(
      /^Error: the fixture factory fails the same way every time\n\s+at (StickyWorker\.)?factory \(.*factory-mistakes\.mjs:\d+:\d+\)/,
    );
  });

  it('without an error listener: the primary exits with code 1 and the message once on stderr', async () => {
    const app = await startFixture({
      fixture: FIXTURE,
      env: { MISTAKE: 'throw', NO_ERROR_LISTENER: '1' },
      until: 'listening',
    });
    const exit = await app.waitForExit(15_000);
    const what = app.transcript();
    expect(exit, what).toEqual({ code: 1, signal: null });
    // Node's own report of an uncaught 'error' event (its caret's indentation varies by version).
    expect(app.stderr, what).toMatch(/Unhandled 'error' event\n *\^\n\nStickyMeshError: /);
    expect(app.stderr, what).toContain(
      '\nStickyMeshError: sticky-mesh: no worker can start (the same failure 3 times in a row in ' +
        'each of the 2 slots; not respawning): the server factory failed: Error: the fixture ' +
        'factory fails the same way every time\n',
    );
    // One report: the factory's frame once (in the cause), not a stack trace per worker.
    expect(app.stderr.match(/at (StickyWorker\.)?factory \(/g), what).toHaveLength(1);
    expect(app.stderr.split('\n').length, what).toBeLessThan(40);
    expect(await waitUntilGone(workerPids(app), 1_000), what).toEqual([]);
  });
});

describe('respawning is kept where it can help', () => {
  afterEach(stopFixtures);

  it('a factory that fails only in the first worker of each slot: the cluster comes up', async () => {
    const app = await startFixture({
      fixture: FIXTURE,
      env: { MISTAKE: 'throw-once', MARKER_DIR: tempDir() },
    });
    const what = app.transcript();
    expect(app.events('workerExit').length, what).toBeGreaterThanOrEqual(2);
    expect(new Set(app.events('workerUp').map((l) => l.slot)), what).toEqual(new Set([0, 1]));
    expect(app.events('error'), what).toEqual([]);
    const reply = await request({ port: app.port() });
    expect(reply.status, what).toBe(200);
  });

  it('workers that crash after the cluster was ready are respawned, also while their starts fail', async () => {
    const modeFile = path.join(tempDir(), 'mode');
    writeFileSync(modeFile, '');
    const app = await startFixture({ fixture: FIXTURE, env: { MODE_FILE: modeFile } });
    const port = app.port();
    // A client of each slot.
    const replies = await Promise.all(
      loopbackSources(20).map(async (source) => ({
        source,
        reply: await getWorker({ port, source }),
      })),
    );
    const bySlot = new Map(replies.map(({ source, reply }) => [reply.slot, source]));
    expect([...bySlot.keys()].sort(), app.transcript()).toEqual([0, 1]);
    // From now on every new worker's factory throws, the same way each time; then both crash.
    writeFileSync(modeFile, 'throw');
    const from = app.received.length;
    for (const source of bySlot.values()) {
      await request({ port, source, path: '/crash', timeoutMs: 2_000 }).catch(() => undefined);
    }
    // Each slot fails to start more times in a row than STARTUP_ATTEMPTS, and is still respawned.
    for (const slot of [0, 1]) {
      await app.waitFor('workerRespawn', {
        from,
        match: (l) => l.slot === slot && Number(l.attempt) >= STARTUP_ATTEMPTS + 2,
        timeoutMs: 15_000,
      });
    }
    const what = app.transcript();
    expect(app.events('error'), what).toEqual([]);
    expect(app.events('close'), what).toEqual([]);
    expect(isAlive(app.pid), what).toBe(true);
  });
});
