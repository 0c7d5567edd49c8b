// @socket.io/cluster-adapter set up wrong fails silently (issue 19): without setupPrimary() in
// the primary a broadcast reaches only the sender's worker, and with JSON serialization a Buffer
// reaches the other workers as {"type":"Buffer","data":[...]}. The primary recognises the
// adapter's messages and warns once, naming the fix (test/fixtures/cluster-adapter-app.mjs: one
// worker sends a Buffer to the others every 100 ms); set up right, it warns about nothing.
import { afterEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';

const NO_RELAY = 'WARN_STICKY_ADAPTER_NO_RELAY';
const JSON_BUFFER = 'WARN_STICKY_ADAPTER_JSON_BUFFER';

const start = (setupPrimary: boolean, serialization: 'json' | 'advanced') =>
  startFixture({
    fixture: 'cluster-adapter-app.mjs',
    env: { SETUP_PRIMARY: setupPrimary ? '1' : '0', SERIALIZATION: serialization },
  });

/** Waits until 2 s of the workers' traffic have passed since ready (20 sends). */
async function runFor2s(app: FixtureProcess): Promise<void> {
  await new Promise((resolve) => setTimeout(resolve, 2_000));
  expect(app.exitStatus, app.transcript()).toBeUndefined();
}

const warnings = (app: FixtureProcess, code: string) =>
  app.events('warning', (e) => e.code === code);

describe('@socket.io/cluster-adapter set up wrong is warned about', () => {
  afterEach(stopFixtures);

  it('without setupPrimary(): broadcasts stay in their worker, and the primary says to call it', async () => {
    const app = await start(false, 'advanced');
    await runFor2s(app);
    const context = app.transcript();
    expect(app.events('got'), context).toEqual([]);
    expect(warnings(app, NO_RELAY), context).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/call setupPrimary\(\)/) }),
    ]);
    // Node prints it on stderr: the default logger is quiet, this warning is not.
    expect(
      app.stderr.match(new RegExp(`\\[${NO_RELAY}\\] StickyMeshWarning`, 'g')),
      context,
    ).toHaveLength(1);
    expect(warnings(app, JSON_BUFFER), context).toEqual([]);
  });

  it("with JSON serialization: a Buffer arrives as an object, and the primary says to use 'advanced'", async () => {
    const app = await start(true, 'json');
    await runFor2s(app);
    const context = app.transcript();
    const got = app.events('got');
    expect(got.length, context).toBeGreaterThan(0);
    expect(got[0], context).toMatchObject({
      isBuffer: false,
      json: '{"type":"Buffer","data":[1,2,3]}',
    });
    expect(warnings(app, JSON_BUFFER), context).toEqual([
      expect.objectContaining({ message: expect.stringMatching(/serialization: 'advanced'/) }),
    ]);
    expect(app.stderr.match(new RegExp(`\\[${JSON_BUFFER}\\]`, 'g')), context).toHaveLength(1);
    expect(warnings(app, NO_RELAY), context).toEqual([]);
  });

  it("with setupPrimary() and serialization: 'advanced' the Buffer arrives whole, and nothing is warned", async () => {
    const app = await start(true, 'advanced');
    await runFor2s(app);
    const context = app.transcript();
    const got = app.events('got');
    expect(got.length, context).toBeGreaterThan(0);
    expect(
      got.every((e) => e.isBuffer === true),
      context,
    ).toBe(true);
    expect(app.events('warning'), context).toEqual([]);
    expect(app.stderr, context).not.toMatch(/StickyMeshWarning/);
  });
});
