// Two sticky clusters on this machine replicating over multicast on the loopback interface: the
// primary owns the socket, the workers are fed over IPC. (The multi-host version, with real
// hosts in network namespaces, is test/system/multicast-hosts.test.ts.)
import net from 'node:net';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { sessionAppCaller, sessionAppStats } from '../helpers/session-app.js';

afterAll(stopFixtures);

const SECRET = 'integration secret, 32 bytes long!';

function cluster(
  port: number,
  extra: Record<string, unknown> = {},
  env: Record<string, string> = {},
): Promise<FixtureProcess> {
  return startFixture({
    fixture: 'session-app.mjs',
    env: {
      ...env,
      WORKERS: '2',
      STICKY_OPTIONS: JSON.stringify({
        multicast: {
          secret: SECRET,
          ipv4: '127.0.0.1',
          multicastPort: port,
          heartbeatInterval: 100,
          joinTimeout: 300,
          failureTimeout: 800,
          ...extra,
        },
      }),
    },
  });
}

const call = sessionAppCaller();

describe('multicast between two clusters on one machine (loopback)', () => {
  it('a login on one cluster is read on the other; logout is honoured on both', async () => {
    const a = await cluster(46201);
    const b = await cluster(46201);
    const { cookie } = await call(a, 'POST', '/login?user=ann');
    for (const client of ['10.0.0.1', '10.0.0.2', '10.0.0.3']) {
      await vi.waitFor(
        async () => {
          const me = await call(b, 'GET', '/me', cookie, client);
          expect(me.body.user).toBe('ann');
        },
        { timeout: 2000, interval: 20 },
      );
    }
    await call(b, 'POST', '/logout', cookie);
    await vi.waitFor(
      async () => {
        const me = await call(a, 'GET', '/me', cookie, '10.0.0.9');
        expect(me.body.user).toBe(null);
      },
      { timeout: 2000, interval: 20 },
    );
    const s = (await sessionAppStats(a)).multicast as {
      peers: unknown[];
      rejected: { auth: number };
    };
    expect(s.peers).toHaveLength(1);
  });

  it('a cluster started later gets every existing session before it serves', async () => {
    const a = await cluster(46202);
    const r = await call(a, 'POST', '/bulk?n=3000&prefix=early-');
    expect(r.body.written).toBe(3000);
    const b = await cluster(46202);
    // The first request on b already sees everything: the port is bound only after the sync.
    for (const sid of ['early-0', 'early-1499', 'early-2999']) {
      const has = await call(b, 'GET', `/has?sid=${sid}`, undefined, `10.1.0.${sid.length}`);
      expect(has.body.found, sid).toBe(true);
    }
    const da = await call(a, 'GET', '/digest');
    const db = await call(b, 'GET', '/digest', undefined, '10.9.9.9');
    expect(db.body.sessions).toBe(3000);
    expect(db.body.digest).toBe(da.body.digest);
  });

  it('a cluster with another secret neither receives nor injects', async () => {
    const a = await cluster(46203);
    const evil = await cluster(46203, { secret: 'some other secret entirely, 32b' });
    const { cookie } = await call(a, 'POST', '/login?user=ann');
    await call(evil, 'POST', '/login?user=mallory');
    await new Promise((r) => setTimeout(r, 400));
    expect((await call(evil, 'GET', '/me', cookie)).body.user).toBe(null);
    expect((await call(a, 'GET', '/digest')).body.sessions).toBe(1);
    const s = (await sessionAppStats(a)).multicast as {
      peers: unknown[];
      rejected: { auth: number };
    };
    expect(s.peers).toHaveLength(0);
    expect(s.rejected.auth).toBeGreaterThan(0);
  });

  it("a worker's store with multicast options works under sticky({ multicast }) and fails clearly without it", async () => {
    const storeOptions = JSON.stringify({ multicast: { secret: SECRET, ipv4: '127.0.0.1' } });
    const ok = await cluster(46204, {}, { STORE_OPTIONS: storeOptions });
    await call(ok, 'POST', '/login?user=ann');
    const bad = await startFixture({
      fixture: 'session-app.mjs',
      until: null,
      env: { WORKERS: '1', STORE_OPTIONS: storeOptions, STICKY_OPTIONS: '{}' },
    });
    await vi.waitFor(() => expect(bad.stderr).toMatch(/belong in sticky\(\{ multicast/), {
      timeout: 10_000,
      interval: 50,
    });
    expect(bad.stderr).toContain('ERR_STICKY_INVALID_OPTION');
  });

  it('a transport that cannot open its sockets fails listen() with ERR_STICKY_TRANSPORT_FAILED', async () => {
    const taken = net.createServer();
    await new Promise<void>((resolve) => taken.listen(0, '127.0.0.1', resolve));
    try {
      const syncPort = (taken.address() as net.AddressInfo).port;
      const app = await startFixture({
        fixture: 'session-app.mjs',
        until: null,
        env: {
          WORKERS: '1',
          STICKY_OPTIONS: JSON.stringify({
            multicast: { secret: SECRET, ipv4: '127.0.0.1', multicastPort: 46205, syncPort },
          }),
        },
      });
      const status = await app.waitForExit(10_000);
      expect(status.code).not.toBe(0);
      expect(app.stderr).toContain('ERR_STICKY_TRANSPORT_FAILED');
      expect(app.stderr).toContain('EADDRINUSE');
      expect(app.events('listening')).toHaveLength(0);
    } finally {
      taken.close();
    }
  });
});
