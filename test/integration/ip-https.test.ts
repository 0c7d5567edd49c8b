import { afterAll, describe, expect, it } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, type Reply, request } from '../helpers/http.js';
import { hasTool, useSelfSignedCert } from '../helpers/system.js';

describe.skipIf(!hasTool('openssl'))('IP mode with an HTTPS factory (needs openssl)', () => {
  const tlsFiles = useSelfSignedCert();
  afterAll(stopFixtures);

  it('keeps each client address on one worker over TLS', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        HTTPS_CERT: tlsFiles.cert,
        HTTPS_KEY: tlsFiles.key,
        STICKY_OPTIONS: JSON.stringify({ seed: 7 }),
      },
    });
    const port = app.port();
    const sources = loopbackSources(20);
    const seen = new Map<string, Reply[]>(sources.map((s) => [s, []]));
    for (let round = 0; round < 3; round++) {
      const replies = await Promise.all(
        sources.map((source) => request({ port, source, tls: true }).catch((err: unknown) => err)),
      );
      replies.forEach((reply, i) => {
        if (reply instanceof Error) {
          throw new Error(
            `HTTPS request from ${sources[i]} failed: ${reply.message}\n${app.transcript()}`,
          );
        }
        seen.get(sources[i] as string)?.push(reply as Reply);
      });
    }
    const what = `${[...seen]
      .map(([s, rs]) => `${s} -> ${rs.map((r) => `${r.status} ${r.text}`).join(', ')}`)
      .join('\n')}\n${app.transcript()}`;

    const all = [...seen.values()].flat();
    expect(
      all.every((r) => r.status === 200 && r.body !== undefined),
      what,
    ).toBe(true);
    expect(
      all.every((r) => 'encrypted' in r.socket && r.socket.encrypted === true),
      what,
    ).toBe(true);
    for (const [source, replies] of seen) {
      const places = new Set(replies.map((r) => `${r.body?.slot}/${r.body?.pid}`));
      expect(places.size, `${source} reached more than one worker\n${what}`).toBe(1);
    }
    const slots = new Set(all.map((r) => r.body?.slot));
    expect([...slots].sort(), `not every worker got clients\n${what}`).toEqual([0, 1]);
  });
});

describe('IP mode with advanced IPC serialization (what @socket.io/cluster-adapter needs for binary)', () => {
  afterAll(stopFixtures);

  it('routes and delivers as with JSON IPC', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ seed: 7, serialization: 'advanced' }) },
    });
    const port = app.port();
    const sources = loopbackSources(12);
    const first = await Promise.all(sources.map((source) => request({ port, source })));
    const second = await Promise.all(sources.map((source) => request({ port, source })));
    const slots = first.map((r) => r.body?.slot);
    expect(
      second.map((r) => r.body?.slot),
      app.transcript(),
    ).toEqual(slots);
    expect(new Set(slots)).toEqual(new Set([0, 1]));
  });
});
