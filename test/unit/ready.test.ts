// ready(): one awaitable way to know the cluster serves and where. The primary's failures are
// checked here in-process (a failed bind forks nothing); the rest runs in
// test/integration/ready.test.ts.
import http from 'node:http';
import net from 'node:net';
import { describe, expect, it } from 'vitest';
import type { StickyPrimary } from '../../src/master/primary.js';
import { Readiness } from '../../src/readiness.js';
import { sticky } from '../../src/sticky.js';

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
