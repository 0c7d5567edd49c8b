// Session replication between machines: every host is a network namespace on a shared bridge
// (test/helpers/netns.ts), running a 2-worker sticky cluster of test/fixtures/session-app.mjs
// with `multicast` on its own address. The test reaches each cluster through a Unix socket the
// fixture forwards to its port (the namespaces are unreachable from here otherwise).
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { DAY_LONG_SESSIONS, fastClock } from '../helpers/fast-clock.js';
import { createLan, hasIptables, hasNetns, type Lan } from '../helpers/netns.js';
import { type Answer, sessionAppCaller, sessionAppStats } from '../helpers/session-app.js';

const SECRET = 'system test secret: 32 bytes or more';
const available = hasNetns();
const dir = mkdtempSync(join(tmpdir(), 'sticky-mesh-netns-'));
let lan: Lan | undefined;
let sockets = 0;

interface Host {
  proc: FixtureProcess;
  /** The Unix socket the fixture forwards to its port (CONTROL_SOCKET). */
  socketPath: string;
}

// Each test starts its own hosts: stop them all after it (also when it failed).
afterEach(stopFixtures);
afterAll(async () => {
  await stopFixtures();
  await lan?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function host(
  index: number,
  port: number,
  extra: Record<string, unknown> = {},
  env: Record<string, string> = {},
): Promise<Host> {
  const l = lan as Lan;
  const h = l.hosts[index] as Lan['hosts'][number];
  const socketPath = join(dir, `h${index}-${sockets++}.sock`);
  const v6 = extra.use === 'v6';
  const proc = await startFixture({
    fixture: 'session-app.mjs',
    netns: h.ns,
    timeoutMs: 30_000,
    env: {
      ...env,
      WORKERS: '2',
      CONTROL_SOCKET: socketPath,
      STICKY_OPTIONS: JSON.stringify({
        multicast: {
          secret: SECRET,
          ...(v6 ? { ipv6: h.ipv6 } : { ipv4: h.ipv4 }),
          multicastPort: port,
          heartbeatInterval: 200,
          failureTimeout: 1500,
          joinTimeout: 600,
          ...extra,
        },
      }),
    },
  });
  await proc.waitFor('control');
  return { proc, socketPath };
}

const call = sessionAppCaller({ timeoutMs: 20_000 });

/** Both workers' views: clients chosen so that each worker answers one. */
async function everyWorker(h: Host, path: string, cookie?: string): Promise<Answer[]> {
  const seen = new Map<number, Answer>();
  for (let i = 1; seen.size < 2 && i < 64; i++) {
    const { body } = await call(h, 'GET', path, cookie, `10.5.0.${i}`);
    if (!seen.has(body.slot)) seen.set(body.slot, body);
  }
  expect(seen.size, 'both workers answered').toBe(2);
  return [...seen.values()];
}

/** What the primary's stats say of the multicast transport (and of its hub). */
interface MulticastStats {
  sessions: { versionsAhead: number };
  multicast: {
    nodeId: string;
    peers: { id: string }[];
    rejected: Record<string, number>;
    nacksSent: number;
    retransmits: number;
    readOnMiss: { asked: number; found: number; unknown: number; cached: number };
  };
}

const stats = (h: Host) => sessionAppStats<MulticastStats>(h.proc);

async function digests(hosts: Host[]): Promise<string[]> {
  const out: string[] = [];
  for (const h of hosts) {
    for (const a of await everyWorker(h, '/digest')) out.push(`${a.sessions}:${a.digest}`);
  }
  return out;
}

describe.skipIf(!available)('multicast replication between hosts (network namespaces)', () => {
  beforeAll(async () => {
    lan = await createLan(5, { ipv6: true });
  }, 60_000);

  it('a login on host 1 is visible on hosts 2 and 3 within 1 s; logout anywhere is honoured everywhere; a host joining later serves all 10,000 sessions', async () => {
    const port = 47001;
    const [h1, h2, h3] = [await host(0, port), await host(1, port), await host(2, port)];
    const { cookie } = await call(h1, 'POST', '/login?user=ann');
    const wrote = Date.now();
    for (const h of [h2, h3]) {
      await vi.waitFor(
        async () => {
          for (const a of await everyWorker(h, '/me', cookie)) expect(a.user).toBe('ann');
        },
        { timeout: 5000, interval: 10 },
      );
    }
    expect(Date.now() - wrote, 'visible on every worker of hosts 2 and 3').toBeLessThan(1000);

    await call(h3, 'POST', '/logout', cookie);
    for (const h of [h1, h2, h3]) {
      await vi.waitFor(
        async () => {
          for (const a of await everyWorker(h, '/me', cookie)) expect(a.user).toBe(null);
        },
        { timeout: 1000, interval: 10 },
      );
    }

    expect((await call(h1, 'POST', '/bulk?n=10000&prefix=early-')).body.written).toBe(10000);
    await vi.waitFor(async () => expect(new Set(await digests([h1, h2, h3])).size).toBe(1), {
      timeout: 15_000,
      interval: 200,
    });
    const [reference] = await digests([h1]);
    expect(reference?.startsWith('10000:')).toBe(true);
    const h4 = await host(3, port);
    // Its first requests already see everything: it binds its port only once it is synced.
    for (const sid of ['early-0', 'early-5000', 'early-9999']) {
      expect((await call(h4, 'GET', `/has?sid=${sid}`)).body.found, sid).toBe(true);
    }
    expect(new Set(await digests([h4]))).toEqual(new Set([reference]));
  }, 90_000);

  it('a host whose clock runs 2 h ahead: what it saves is still logged out on the others, and the logouts stick', async () => {
    const port = 47009;
    // Envelopes are dropped when their sender's clock is further off than maxClockSkew (60 s by
    // default: a host two hours ahead would be cut off from the group, counted as `stale`);
    // here the group tolerates the skew, so that the versions of its writes are what is tested.
    const skew = { maxClockSkew: 3 * 3_600_000 };
    const fast = await host(0, port, skew, fastClock(2 * 3_600_000));
    const [h2, h3] = [
      await host(1, port, skew, DAY_LONG_SESSIONS),
      await host(2, port, skew, DAY_LONG_SESSIONS),
    ];
    const hosts = [fast, h2, h3];
    const sees = async (h: Host, cookie: string, expected: Partial<Answer>) =>
      vi.waitFor(
        async () => {
          for (const a of await everyWorker(h, '/me', cookie)) expect(a).toMatchObject(expected);
        },
        { timeout: 5000, interval: 10 },
      );
    // A login on the fast host, saved again there; a login elsewhere, saved last by the fast one.
    const { cookie: a } = await call(fast, 'POST', '/login?user=ann');
    await call(fast, 'POST', '/inc', a);
    const { cookie: b } = await call(h2, 'POST', '/login?user=bob');
    await sees(fast, b as string, { user: 'bob' });
    await call(fast, 'POST', '/inc', b);
    for (const [cookie, user, at] of [
      [a, 'ann', h2],
      [b, 'bob', h3],
    ] as const) {
      await sees(at, cookie as string, { user, count: 1 });
      await call(at, 'POST', '/logout', cookie);
    }
    for (const h of hosts) {
      for (const cookie of [a, b]) await sees(h, cookie as string, { user: null });
    }
    expect((await stats(h2)).sessions.versionsAhead).toBeGreaterThan(0);
    await vi.waitFor(async () => expect(new Set(await digests(hosts)).size).toBe(1), {
      timeout: 10_000,
      interval: 200,
    });
  }, 60_000);

  it.skipIf(!hasIptables())(
    'a host cut off longer than tombstoneTtl does not bring back a session logged out meanwhile',
    async () => {
      const port = 47011;
      const l = lan as Lan;
      // Tombstones kept 2 s in every replica (so this runs in seconds).
      const ttl = 2000;
      const short = { STORE_OPTIONS: JSON.stringify({ tombstoneTtl: ttl, sweepInterval: 250 }) };
      const [h1, h2, h3] = [
        await host(0, port, {}, short),
        await host(1, port, {}, short),
        await host(2, port, {}, short),
      ];
      const hosts = [h1, h2, h3];
      const sees = async (h: Host, cookie: string | undefined, user: string | null) =>
        vi.waitFor(
          async () => {
            for (const a of await everyWorker(h, '/me', cookie)) expect(a.user).toBe(user);
          },
          { timeout: 5000, interval: 20 },
        );
      const { cookie: ended } = await call(h1, 'POST', '/login?user=ann');
      const { cookie: kept } = await call(h1, 'POST', '/login?user=bob');
      await sees(h3, ended, 'ann');
      await sees(h3, kept, 'bob');
      try {
        // h3 hears nobody and nobody hears h3, until the others dropped it.
        await l.dropUdp(100, { at: [2] });
        await l.dropUdp(100, { at: [0, 1], from: 2 });
        await vi.waitFor(
          async () => expect((await stats(h1)).multicast.peers.map((p) => p.id)).toHaveLength(1),
          { timeout: 5000, interval: 100 },
        );
        await call(h2, 'POST', '/logout', ended);
        const { cookie: cut } = await call(h3, 'POST', '/login?user=carl');
        // The logout's tombstone is forgotten on h1 and h2 meanwhile.
        await delay(ttl + 1500);
        await sees(h3, ended, 'ann');
        await l.clearDrops();
        await vi.waitFor(
          async () => expect((await stats(h1)).multicast.peers.map((p) => p.id)).toHaveLength(2),
          { timeout: 5000, interval: 100 },
        );
        await vi.waitFor(async () => expect(new Set(await digests(hosts)).size).toBe(1), {
          timeout: 15_000,
          interval: 200,
        });
        for (const h of hosts) {
          await sees(h, ended, null);
          await sees(h, kept, 'bob');
          await sees(h, cut, 'carl');
        }
      } finally {
        await l.clearDrops();
      }
    },
    90_000,
  );

  it("kill -9 of one host's primary: the others drop it after the failure timeout and lose nothing", async () => {
    const port = 47002;
    const [h1, h2, h3] = [await host(0, port), await host(1, port), await host(2, port)];
    await call(h2, 'POST', '/bulk?n=500&prefix=from-h2-');
    await vi.waitFor(async () => expect(new Set(await digests([h1, h2, h3])).size).toBe(1), {
      timeout: 10_000,
      interval: 100,
    });
    const h2id = (await stats(h2)).multicast.nodeId;
    expect((await stats(h1)).multicast.peers.map((p) => p.id)).toContain(h2id);
    const [before] = await digests([h1]);
    h2.proc.signal('SIGKILL');
    const killedAt = Date.now();
    for (const h of [h1, h3]) {
      await vi.waitFor(
        async () => expect((await stats(h)).multicast.peers.map((p) => p.id)).not.toContain(h2id),
        { timeout: 5000, interval: 100 },
      );
    }
    expect(Date.now() - killedAt).toBeGreaterThanOrEqual(1000);
    expect(new Set(await digests([h1, h3]))).toEqual(new Set([before]));
    expect(before?.startsWith('500:')).toBe(true);
  }, 60_000);

  it.skipIf(!hasIptables())(
    'with 10% of UDP dropped on every host, all hosts hold identical state within 10 s after writes stop',
    async () => {
      const port = 47003;
      const hosts = [await host(0, port), await host(1, port), await host(2, port)];
      const l = lan as Lan;
      await l.dropUdp(10);
      try {
        const cookies: string[] = [];
        await Promise.all(
          hosts.map(async (h, i) => {
            await call(h, 'POST', `/bulk?n=1500&prefix=lossy-${i}-`);
            for (let k = 0; k < 30; k++) {
              const r = await call(
                h,
                'POST',
                `/login?user=u${i}-${k}`,
                undefined,
                `10.7.${i}.${k}`,
              );
              cookies.push(r.cookie as string);
            }
          }),
        );
        // Some logouts on other hosts than the login's.
        for (const [n, cookie] of cookies.entries()) {
          if (n % 3 === 0) await call(hosts[(n + 1) % 3] as Host, 'POST', '/logout', cookie);
        }
        const stopped = Date.now();
        await vi.waitFor(async () => expect(new Set(await digests(hosts)).size).toBe(1), {
          timeout: 10_000,
          interval: 250,
        });
        expect(Date.now() - stopped).toBeLessThan(10_000);
        const [d] = await digests([hosts[0] as Host]);
        expect(d?.startsWith(`${3 * 1500 + 90 - 30}:`), d).toBe(true);
        // Loss happened and was repaired by retransmission (not only by luck).
        let nacks = 0;
        let retransmits = 0;
        for (const h of hosts) {
          const s = (await stats(h)).multicast;
          nacks += s.nacksSent;
          retransmits += s.retransmits;
        }
        expect(nacks).toBeGreaterThan(0);
        expect(retransmits).toBeGreaterThan(0);
      } finally {
        await l.clearDrops();
      }
    },
    90_000,
  );

  it.skipIf(!hasIptables())(
    'read on miss: a login is read on another host by the very next request, also where none of its datagrams arrive (negative control: readOnMissWait 0)',
    async () => {
      const l = lan as Lan;
      // Host 2 receives nothing host 1 sends: it can learn of host 1's logins only by asking
      // (host 3, which holds them, answers).
      const moved = async (port: number, extra: Record<string, unknown>) => {
        const hosts = [
          await host(0, port, extra),
          await host(1, port, extra),
          await host(2, port, extra),
        ];
        await l.dropUdp(100, { at: [1], from: 0 });
        try {
          const users: (string | null | undefined)[] = [];
          for (let k = 0; k < 5; k++) {
            const login = await call(hosts[0] as Host, 'POST', `/login?user=moved-${k}`);
            const me = await call(hosts[1] as Host, 'GET', '/me', login.cookie);
            users.push(me.body.user);
          }
          return { users, misses: (await stats(hosts[1] as Host)).multicast.readOnMiss };
        } finally {
          await l.clearDrops();
          await stopFixtures();
        }
      };
      const on = await moved(47006, {});
      expect(on.users).toEqual(['moved-0', 'moved-1', 'moved-2', 'moved-3', 'moved-4']);
      expect(on.misses).toMatchObject({ asked: 5, found: 5 });
      const off = await moved(47007, { readOnMissWait: 0 });
      expect(off.users).toEqual([null, null, null, null, null]);
      expect(off.misses.asked).toBe(0);
    },
    90_000,
  );

  it.skipIf(!hasIptables())(
    'with 10% of UDP dropped, a login on one host is read on another by the very next request',
    async () => {
      const port = 47008;
      const hosts = [await host(0, port), await host(1, port), await host(2, port)];
      const l = lan as Lan;
      await l.dropUdp(10);
      try {
        for (let k = 0; k < 30; k++) {
          const login = await call(hosts[k % 3] as Host, 'POST', `/login?user=hop-${k}`);
          const me = await call(hosts[(k + 1) % 3] as Host, 'GET', '/me', login.cookie);
          expect(me.body.user, `login ${k} on host ${(k % 3) + 1}`).toBe(`hop-${k}`);
        }
      } finally {
        await l.clearDrops();
      }
    },
    90_000,
  );

  it('a host with another secret neither receives nor injects anything', async () => {
    const port = 47004;
    const [h1, h2] = [await host(0, port), await host(1, port)];
    const evil = await host(4, port, { secret: 'not the cluster secret, but long' });
    const { cookie } = await call(h1, 'POST', '/login?user=ann');
    await call(evil, 'POST', '/login?user=mallory');
    await call(evil, 'POST', '/bulk?n=50&prefix=forged-');
    await vi.waitFor(
      async () => {
        for (const a of await everyWorker(h2, '/me', cookie)) expect(a.user).toBe('ann');
      },
      { timeout: 2000, interval: 20 },
    );
    await new Promise((r) => setTimeout(r, 500));
    for (const a of await everyWorker(evil, '/me', cookie)) expect(a.user).toBe(null);
    for (const h of [h1, h2]) {
      for (const a of await everyWorker(h, '/digest')) expect(a.sessions).toBe(1);
      const s = await stats(h);
      expect(s.multicast.peers).toHaveLength(1);
      expect(s.multicast.rejected.auth).toBeGreaterThan(0);
    }
  }, 60_000);

  it('replicates over IPv6 multicast too', async () => {
    const port = 47005;
    const [h1, h2] = [await host(0, port, { use: 'v6' }), await host(1, port, { use: 'v6' })];
    const { cookie } = await call(h1, 'POST', '/login?user=ann');
    await vi.waitFor(
      async () => {
        for (const a of await everyWorker(h2, '/me', cookie)) expect(a.user).toBe('ann');
      },
      { timeout: 2000, interval: 20 },
    );
    const s = await stats(h2);
    expect(s.multicast.peers).toHaveLength(1);
  }, 60_000);
});
