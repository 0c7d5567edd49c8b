import { afterEach, describe, expect, it } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, type Reply, request } from '../helpers/http.js';
import { type RunningProxy, startHaproxy, startNginx } from '../helpers/proxies.js';
import { hasTool, useSelfSignedCert } from '../helpers/system.js';

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

describe.skipIf(!hasTool('haproxy') || !hasTool('openssl'))(
  'behind a real HAProxy in TCP mode, TLS terminated in the workers (needs haproxy, openssl)',
  () => {
    const tlsFiles = useSelfSignedCert();

    it('pins every client by send-proxy and send-proxy-v2 through to an https factory', async () => {
      const app = await startFixture({
        fixture: 'ip-app.mjs',
        env: {
          WORKERS: '4',
          HTTPS_CERT: tlsFiles.cert,
          HTTPS_KEY: tlsFiles.key,
          STICKY_OPTIONS: JSON.stringify({ proxyProtocol: true, seed: 7 }),
        },
      });
      const haproxy = await startHaproxy(app.port());
      proxies.push(haproxy);
      const versions = [
        { name: 'v1', port: haproxy.ports[0] as number },
        { name: 'v2', port: haproxy.ports[1] as number },
      ] as const;

      // replies[version][source]: one entry per round, a Reply or the error the request threw.
      const replies = new Map<string, Map<string, (Reply | Error)[]>>(
        versions.map((v) => [v.name, new Map(SOURCES.map((s) => [s, []]))]),
      );
      for (let round = 0; round < 3; round++) {
        const jobs = versions.flatMap((v) =>
          SOURCES.map(async (source) => {
            const outcome = await request({
              port: v.port,
              source,
              tls: true,
              timeoutMs: 10_000,
            }).catch((err: unknown) => (err instanceof Error ? err : new Error(String(err))));
            replies.get(v.name)?.get(source)?.push(outcome);
          }),
        );
        await Promise.all(jobs);
      }

      // Check everything, then report every problem at once with all replies and both logs.
      const problems: string[] = [];
      const slotOf = new Map<string, number | undefined>(); // source -> slot, through v1
      for (const { name } of versions) {
        for (const source of SOURCES) {
          const rs = replies.get(name)?.get(source) ?? [];
          if (rs.length !== 3) problems.push(`${name} ${source}: ${rs.length} replies, want 3`);
          const slots = new Set<number | undefined>();
          for (const r of rs) {
            if (r instanceof Error) {
              problems.push(`${name} ${source}: request failed: ${r.message}`);
              continue;
            }
            if (r.status !== 200) problems.push(`${name} ${source}: status ${r.status}`);
            if (r.body === undefined) problems.push(`${name} ${source}: body is not JSON`);
            if (!('encrypted' in r.socket && r.socket.encrypted === true))
              problems.push(`${name} ${source}: reply did not come over TLS`);
            // The worker's TCP peer is HAProxy, not the client: only check it is a loopback peer.
            if (!/^(::ffff:)?127\.|^::1$/.test(r.body?.remote ?? ''))
              problems.push(
                `${name} ${source}: remote ${r.body?.remote} is not HAProxy's loopback`,
              );
            slots.add(r.body?.slot);
          }
          const slot = [...slots][0];
          if (slots.size !== 1 || !Number.isInteger(slot))
            problems.push(`${name} ${source}: reached slots ${JSON.stringify([...slots])}`);
          if (name === 'v1') slotOf.set(source, slot);
          else if (slot !== slotOf.get(source))
            problems.push(
              `${source}: slot ${slot} through v2 but ${slotOf.get(source)} through v1`,
            );
        }
      }
      const used = [...new Set(slotOf.values())].sort();
      if (JSON.stringify(used) !== '[0,1,2,3]')
        problems.push(`slots used through v1: ${JSON.stringify(used)}, want [0,1,2,3]`);

      const show = (r: Reply | Error) =>
        r instanceof Error ? `error ${r.message}` : `${r.status} ${r.text}`;
      const context = () =>
        [
          ...[...replies].flatMap(([version, bySource]) =>
            [...bySource].map(
              ([source, rs]) => `${version} ${source} -> ${rs.map(show).join(' | ')}`,
            ),
          ),
          '--- haproxy output ---',
          haproxy.output().trimEnd() || '(nothing)',
          app.transcript(),
        ].join('\n');
      const summary = () =>
        `${problems.length} problem(s), first: ${problems.slice(0, 3).join('; ')}\n${context()}`;
      expect(problems, problems.length > 0 ? summary() : '').toEqual([]);
    });
  },
);
