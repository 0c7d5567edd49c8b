// `await app.ready()` in a real cluster (test/fixtures/ready-app.mjs): the primary's resolves
// once the port is bound and every worker serves, with the address (`app.address()` works right
// after); each worker's resolves too, with the primary's address; a worker whose factory throws
// sees its ready() rejected with ERR_STICKY_FACTORY_FAILED before the process ends.
import { afterEach, describe, expect, it } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { getWorker } from '../helpers/http.js';

describe('ready()', () => {
  afterEach(stopFixtures);

  it('resolves in the primary with the bound address once every worker is ready, and in each worker', async () => {
    const app = await startFixture({
      fixture: 'ready-app.mjs',
      env: { WORKERS: '2' },
      until: null,
    });
    const primary = await app.waitFor('awaited', {
      match: (l) => l.role === 'primary',
      timeoutMs: 15_000,
    });
    const port = primary.line.port;
    expect(typeof port, app.transcript()).toBe('number');
    expect(port).toBeGreaterThan(0);
    expect(primary.line.addressPort, app.transcript()).toBe(port);
    // Every worker was up before the primary's ready() resolved.
    const ups = app.received.filter((r) => r.line.event === 'workerUp');
    expect(ups.map((r) => r.line.slot).sort()).toEqual([0, 1]);
    expect(ups.every((r) => r.index < primary.index)).toBe(true);
    // Each worker's own ready() resolved with the primary's address.
    for (const slot of [0, 1]) {
      const worker = await app.waitFor('awaited', {
        match: (l) => l.role === 'worker' && l.slot === slot,
      });
      expect(worker.line.port, app.transcript()).toBe(port);
    }
    // And the port serves.
    const reply = await getWorker({ port: port as number });
    expect([0, 1]).toContain(reply.slot);
  });

  it("rejects a worker's ready() with ERR_STICKY_FACTORY_FAILED when its factory throws", async () => {
    const app = await startFixture({
      fixture: 'ready-app.mjs',
      env: { WORKERS: '1', FACTORY: 'throw' },
      until: null,
    });
    const rejected = await app.waitFor('rejected', { match: (l) => l.role === 'worker' });
    expect(rejected.line.code, app.transcript()).toBe('ERR_STICKY_FACTORY_FAILED');
    // The worker still ends (the primary sees it go), as a factory failure always did.
    await app.waitFor('workerExit', { match: (l) => l.pid === rejected.line.pid });
    expect(app.events('awaited')).toEqual([]);
  });
});
