// ready(): one awaitable way to know the cluster serves and where. The primary's failures are
// checked here in-process (a failed bind forks nothing); the rest runs in
// test/integration/ready.test.ts.
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { StickyPrimary } from '../../src/master/primary.js';
import { Readiness } from '../../src/readiness.js';
import { type StickyCluster, sticky } from '../../src/sticky.js';
import type { StickyWorker } from '../../src/worker/worker.js';

const factory = () => http.createServer();

function occupiedPort(): Promise<net.Server> {
  return new Promise((resolve) => {
    const server = net.createServer();
    server.listen(0, '127.0.0.1', () => resolve(server));
  });
}

describe('ready() in the primary', () => {
  it('rejects with ERR_STICKY_LISTEN_FAILED when the port cannot be bound, and the error is not unhandled', async () => {
    const taken = await occupiedPort();
    const { port } = taken.address() as net.AddressInfo;
    const app = sticky(1, factory) as StickyPrimary;
    try {
      app.listen(port, '127.0.0.1');
      await expect(app.ready()).rejects.toMatchObject({ code: 'ERR_STICKY_LISTEN_FAILED' });
      expect(app.stats().state).toBe('closed');
      // A later call answers the same way.
      await expect(app.ready()).rejects.toMatchObject({ code: 'ERR_STICKY_LISTEN_FAILED' });
      // Its listener for the startup error is gone once settled.
      expect(app.listenerCount('error')).toBe(0);
    } finally {
      await app.close();
      taken.close();
    }
  });

  it('rejects with ERR_STICKY_CLOSED when close() comes before ready', async () => {
    const app = sticky(1, factory);
    const ready = app.ready();
    const shutdown = new Promise<void>((resolve) => app.once('shutdown', resolve));
    await app.close();
    await shutdown;
    await expect(ready).rejects.toMatchObject({ code: 'ERR_STICKY_CLOSED' });
    expect(app.ready()).toBe(ready);
  });

  it('address() is null before listen()', async () => {
    const app = sticky(1, factory);
    expect(app.address()).toBeNull();
    await app.close();
  });
});

// Type-checked by `npm run lint` (tsc over test/): what the README writes on the union and in the
// factory compiles; it used to be `never` (on) and missing members (slot, genid).
describe('StickyCluster', () => {
  it('takes what both roles have, and the factory gets the worker', async () => {
    const seen: StickyWorker[] = [];
    const app: StickyCluster = sticky({ num: 1 }, (worker) => {
      seen.push(worker);
      const slot: number = worker.slot;
      const genid: (req?: unknown) => string = worker.genid;
      worker.on('shutdown', () => undefined);
      return http.createServer((_req, res) => res.end(`${slot} ${genid()}`));
    });
    const shutdowns: string[] = [];
    app.on('shutdown', () => shutdowns.push(app.role));
    app.once('ready', () => undefined);
    app.on('close', () => undefined);
    const ready: Promise<net.AddressInfo> = app.ready();
    const address: net.AddressInfo | null = app.address();
    expect(address).toBeNull();
    await app.close();
    await expect(ready).rejects.toMatchObject({ code: 'ERR_STICKY_CLOSED' });
    expect(shutdowns).toEqual(['primary']);
    expect(seen).toEqual([]); // the factory runs only in workers
  });
});

describe('Readiness', () => {
  const address = { address: '127.0.0.1', family: 'IPv4', port: 1 };

  it('keeps an outcome that came before anyone asked, and settles once', async () => {
    const r = new Readiness();
    r.resolve(address);
    r.reject(new Error('late'));
    await expect(r.wait()).resolves.toEqual(address);
  });

  it('leaves no unhandled rejection when nobody asks', async () => {
    const unhandled: unknown[] = [];
    const onUnhandled = (reason: unknown) => unhandled.push(reason);
    process.on('unhandledRejection', onUnhandled);
    try {
      new Readiness().reject(new Error('nobody asked'));
      await new Promise((resolve) => setTimeout(resolve, 20));
      expect(unhandled).toEqual([]);
    } finally {
      process.off('unhandledRejection', onUnhandled);
    }
  });

  it('runs whenSettled callbacks once, at once when already settled', () => {
    const r = new Readiness();
    const calls: string[] = [];
    r.whenSettled(() => calls.push('before'));
    r.reject(new Error('x'));
    r.whenSettled(() => calls.push('after'));
    r.resolve(address);
    expect(calls).toEqual(['before', 'after']);
    void r.wait().catch(() => undefined);
  });
});
