import { afterEach, describe, expect, it } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import { type RunningProxy, startHaproxy, startNginx } from '../helpers/proxies.js';
import { hasTool } from '../helpers/system.js';

const SOURCES = loopbackSources(30);
let proxies: RunningProxy[] = [];

afterEach(async () => {
  await Promise.all(proxies.map((p) => p.stop()));
  proxies = [];
  await stopFixtures();
});

/** Three rounds of one request per source through `port`; each source's slots. */
async function slotsBySource(port: number, headers: Record<string, string> = {}) {
  const seen = new Map<string, Set<number | undefined>>();
  for (let round = 0; round < 3; round++) {
    const replies = await Promise.all(SOURCES.map((source) => request({ port, source, headers })));
    replies.forEach((r, i) => {
      const source = SOURCES[i] as string;
      expect(r.status, `${source}: ${r.text}`).toBe(200);
      const set = seen.get(source) ?? new Set();
      set.add(r.body?.slot);
      seen.set(source, set);
    });
  }
  return seen;
}

describe.skipIf(!hasTool('nginx'))(
  'behind a real nginx with an upstream keep-alive pool (needs nginx)',
  () => {
    it('pins every client to one worker by X-Forwarded-For, and uses every worker', async () => {
      const app = await startFixture({
        fixture: 'ip-app.mjs',
        env: { WORKERS: '4', STICKY_OPTIONS: JSON.stringify({ proxy: true, seed: 7 }) },
      });
      const nginx = await startNginx(app.port());
      proxies.push(nginx);
      const seen = await slotsBySource(nginx.port);
      for (const [source, slots] of seen)
        expect([...slots], `${source}\n${nginx.output()}`).toHaveLength(1);
      expect(new Set([...seen.values()].map((s) => [...s][0]))).toEqual(new Set([0, 1, 2, 3]));
    });

    it('with trustedProxies: 1 ignores what clients write into X-Forwarded-For', async () => {
      const app = await startFixture({
        fixture: 'ip-app.mjs',
        env: {
          WORKERS: '4',
          STICKY_OPTIONS: JSON.stringify({ proxy: true, trustedProxies: 1, seed: 7 }),
        },
      });
      const nginx = await startNginx(app.port());
      proxies.push(nginx);
      // Every client claims to be the same address; nginx appends the real one on the right.
      const seen = await slotsBySource(nginx.port, { 'x-forwarded-for': '6.6.6.6' });
      for (const [source, slots] of seen) expect([...slots], source).toHaveLength(1);
      expect(new Set([...seen.values()].map((s) => [...s][0])).size).toBeGreaterThan(1);
    });
  },
);

describe.skipIf(!hasTool('haproxy'))('behind a real HAProxy in TCP mode (needs haproxy)', () => {
  it('pins every client by the address in send-proxy and send-proxy-v2 headers', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '4', STICKY_OPTIONS: JSON.stringify({ proxyProtocol: true, seed: 7 }) },
    });
    const haproxy = await startHaproxy(app.port());
    proxies.push(haproxy);
    const v1 = await slotsBySource(haproxy.ports[0] as number);
    const v2 = await slotsBySource(haproxy.ports[1] as number);
    for (const source of SOURCES) {
      expect([...(v1.get(source) ?? [])], `${source}\n${haproxy.output()}`).toHaveLength(1);
      expect([...(v2.get(source) ?? [])], source).toEqual([...(v1.get(source) ?? [])]);
    }
    expect(new Set([...v1.values()].map((s) => [...s][0]))).toEqual(new Set([0, 1, 2, 3]));
  });
});
