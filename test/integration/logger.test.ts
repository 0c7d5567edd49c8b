// The `logger` option in a real cluster (test/fixtures/ip-app.mjs, LOGGER=1: each call prints a
// `log` line): a worker that crashes is an `error` naming its slot and pid, its respawn an
// `info`; without a logger the same crash leaves the primary's stdout to the application and its
// stderr empty, and NODE_DEBUG=sticky-mesh is where the lines then go.
import { afterEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { getWorker, request } from '../helpers/http.js';

const SOURCE = '127.0.0.2';

/** Crashes the worker that serves SOURCE (GET /crash); resolves with its slot and pid. */
async function crashOne(app: FixtureProcess): Promise<{ slot: number; pid: number; from: number }> {
  const port = app.port();
  const { slot, pid } = await getWorker({ port, source: SOURCE });
  const from = app.received.length;
  await request({ port, source: SOURCE, path: '/crash' }).catch(() => undefined);
  await app.waitFor('workerExit', { from, match: (e) => e.pid === pid });
  // Back in its slot: the respawn was logged (or not) by now.
  await app.waitFor('workerUp', { from, match: (e) => e.slot === slot });
  return { slot, pid, from };
}

/** The `log` lines printed since index `from`, as [level, msg]. */
function logLines(app: FixtureProcess, from = 0): [string, string][] {
  return app.received
    .filter((r) => r.index >= from && r.line.event === 'log')
    .map((r) => [String(r.line.level), String(r.line.msg)]);
}

describe('the logger option', () => {
  afterEach(stopFixtures);

  it('logs a crashed worker at error (slot and pid) and its respawn at info', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', LOGGER: '1', STICKY_OPTIONS: JSON.stringify({ respawnDelay: 50 }) },
    });
    const startup = logLines(app);
    const ups = app
      .workerPids()
      .map((pid) => ['info', expect.stringMatching(`worker pid ${pid} is up`)]);
    expect(startup, app.transcript()).toEqual(
      expect.arrayContaining([
        [
          'info',
          expect.stringMatching(/^sticky-mesh: listening on 127\.0\.0\.1:\d+; starting 2 workers$/),
        ],
        ...ups,
        ['info', 'sticky-mesh: all 2 workers are ready'],
      ]),
    );
    expect(
      startup.filter(([level]) => level !== 'info'),
      app.transcript(),
    ).toEqual([]);

    const { slot, pid, from } = await crashOne(app);
    const lines = logLines(app, from);
    const newPid = app.events('workerUp', (e) => e.slot === slot).at(-1)?.pid;
    expect(lines, app.transcript()).toEqual([
      ['error', `sticky-mesh: slot ${slot}: worker pid ${pid} crashed (exit code 1)`],
      ['info', `sticky-mesh: slot ${slot}: respawning in 50 ms (unplanned exit 1 in a row)`],
      ['info', `sticky-mesh: slot ${slot}: worker pid ${newPid} is up`],
    ]);
    expect(app.stderr, app.transcript()).toBe('');
  });

  it('without a logger, the same crash writes nothing to stderr and nothing but the app’s lines to stdout', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ respawnDelay: 50 }), NODE_DEBUG: '' },
    });
    const { slot } = await crashOne(app);
    expect(app.events('workerRespawn', (e) => e.slot === slot)).toHaveLength(1);
    expect(app.stderr, app.transcript()).toBe('');
    expect(logLines(app)).toEqual([]);
    // Every stdout line is one of the fixture's own JSON lines.
    const stray = app.stdout.split('\n').filter((l) => l !== '' && !l.startsWith('{"event":'));
    expect(stray, app.transcript()).toEqual([]);
  });

  it('without a logger, NODE_DEBUG=sticky-mesh shows the lines on stderr, level included', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        STICKY_OPTIONS: JSON.stringify({ respawnDelay: 50 }),
        NODE_DEBUG: 'sticky-mesh',
      },
    });
    const { slot, pid } = await crashOne(app);
    expect(app.stderr, app.transcript()).toContain(
      `STICKY-MESH ${app.pid}: error: sticky-mesh: slot ${slot}: worker pid ${pid} crashed (exit code 1)`,
    );
  });

  it('a failing factory: the worker logs why, the primary that it exited before it was ready', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '1',
        LOGGER: '1',
        FACTORY: 'throw',
        STICKY_OPTIONS: JSON.stringify({ respawnDelay: 1000 }),
      },
      until: 'workerExit',
    });
    const [exit] = app.events('workerExit');
    await app.waitFor('log', {
      match: (e) => e.level === 'info' && /respawning/.test(String(e.msg)),
    });
    const lines = app.events('log').map((e) => [e.level, e.msg, e.self]);
    expect(lines, app.transcript()).toEqual(
      expect.arrayContaining([
        [
          'error',
          `sticky-mesh: the server factory failed: Error: fixture factory fails on purpose (slot 0, pid ${exit?.pid})`,
          exit?.pid,
        ],
        [
          'error',
          `sticky-mesh: slot 0: worker pid ${exit?.pid} exited before it was ready (exit code 1): ` +
            'its factory failed, it exited, or it was not ready within readyTimeout',
          app.pid,
        ],
      ]),
    );
  });
});
