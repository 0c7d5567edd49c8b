// The README's examples that bind fixed ports or name a fixed interface address run as printed,
// each in a network namespace of its own made by the test (so nothing can collide with them and
// their traffic stays inside): the Metrics example serves its app on port 3000 and the machine's
// metrics, the user's counter among them, on 9464; express-session-multicast's example, run with
// multicastStore, opens its multicast socket on 10.1.0.81 and announces itself on 228.0.0.5:4000;
// examples/socketio/README.md's cluster adapter example listens on 3000.
// The README's other complete examples run in test/integration/readme-run.test.ts.
import { rmSync } from 'node:fs';
import os from 'node:os';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources } from '../helpers/http.js';
import { createNamespace, hasNetns, type Namespace } from '../helpers/netns.js';
import { parseEstablished } from '../helpers/proc.js';
import {
  completeBlockAfter,
  extractSnippets,
  RUN_DIR,
  readRepoFile,
  writeProgram,
} from '../helpers/snippets.js';

const available = hasNetns();
const readme = readRepoFile('README.md');
const snippets = extractSnippets('README.md', readme);
const HTTP_GET = new URL('../fixtures/http-get.mjs', import.meta.url).pathname;
const SOCKETIO_README = 'examples/socketio/README.md';
const socketioReadme = readRepoFile(SOCKETIO_README);
const socketioSnippets = extractSnippets(SOCKETIO_README, socketioReadme);

describe.skipIf(!available)('the README examples that need a network of their own run', () => {
  let ns: Namespace | undefined;

  afterEach(async () => {
    try {
      await stopFixtures();
    } finally {
      await ns?.destroy();
      ns = undefined;
    }
  });
  afterAll(() => rmSync(RUN_DIR, { recursive: true, force: true }));

  /** GET `url` from inside the namespace; rejects (with what it saw) unless it answers 200. */
  async function getInside(url: string, app: FixtureProcess): Promise<string> {
    if (ns === undefined) throw new Error('no namespace');
    const { stdout } = await ns.exec([process.execPath, HTTP_GET, url]).catch((error: unknown) => {
      throw new Error(`GET ${url}: ${(error as Error).message}\n${app.transcript()}`);
    });
    const reply = JSON.parse(stdout) as { status: number; text: string };
    if (reply.status !== 200) {
      throw new Error(`GET ${url}: ${reply.status} ${reply.text}\n${app.transcript()}`);
    }
    return reply.text;
  }

  /**
   * The pid of the worker that holds the server end of the connection from `source` to port 3000
   * (`ss` inside the namespace): not the primary, which accepts it and hands it over.
   */
  function workerHolding(source: string, app: FixtureProcess): Promise<number> {
    return vi.waitFor(
      async () => {
        if (ns === undefined) throw new Error('no namespace');
        const { stdout } = await ns.exec(['ss', '-tnpH', 'state', 'established']);
        // The example listens on `::`, so ss shows the peer IPv4-mapped: [::ffff:127.0.0.2]:port.
        const held = parseEstablished(stdout).filter(
          (s) =>
            s.localPort === 3000 &&
            s.peer.replace(/^\[::ffff:(.*)\]/, '$1').replace(/:\d+$/, '') === source,
        );
        const pids = [...new Set(held.flatMap((s) => s.pids))].filter((pid) => pid !== app.pid);
        if (held.length !== 1 || pids.length !== 1) {
          throw new Error(`connection from ${source} held by ${JSON.stringify(held)}`);
        }
        return pids[0] as number;
      },
      { timeout: 10_000, interval: 50 },
    );
  }

  it.skipIf(os.availableParallelism() < 2)(
    'Socket.io cluster adapter: a chat from a client of one worker reaches a client of another (needs 2 cores: one worker per core)',
    async () => {
      ns = await createNamespace();
      const netns = ns.name;
      const block = completeBlockAfter(
        socketioSnippets,
        socketioReadme,
        '## Broadcasts between workers: the cluster adapter',
        'js',
      );
      const app = await startFixture({
        fixture: writeProgram(block, 'socketio-cluster-adapter.mjs'),
        until: null,
        netns,
      });
      // A chat client in the namespace, connected (socket.io retries until the app listens).
      const client = (source: string) =>
        startFixture({
          fixture: 'socketio-chat-client.mjs',
          env: { URL: 'http://127.0.0.1:3000', SOURCE: source, SAY: `hello from ${source}` },
          until: 'connected',
          timeoutMs: 30_000,
          netns,
        }).catch((error: unknown) => {
          throw new Error(`client ${source}: ${(error as Error).message}\n${app.transcript()}`);
        });
      // IP mode routes by the client address: keep the first source, and find one that another
      // worker serves (the program prints nothing; ss says which process holds each connection).
      const [first = '', ...others] = loopbackSources(40);
      const alice = await client(first);
      const aliceWorker = await workerHolding(first, app);
      let bob: { client: FixtureProcess; source: string; worker: number } | undefined;
      for (const source of others) {
        const candidate = await client(source);
        const worker = await workerHolding(source, app);
        if (worker !== aliceWorker) {
          bob = { client: candidate, source, worker };
          break;
        }
        await candidate.stop();
      }
      if (bob === undefined) {
        throw new Error(`every source reached worker ${aliceWorker}\n${app.transcript()}`);
      }
      const seating = `${first} on worker ${aliceWorker}, ${bob.source} on worker ${bob.worker}`;

      alice.signal('SIGUSR2');
      await alice.waitFor('said');
      const said = `hello from ${first}`;
      const heard = (who: FixtureProcess) =>
        who
          .waitFor('chat', { match: (line) => line.text === said, timeoutMs: 5_000 })
          .catch((error: unknown) => {
            throw new Error(`${seating}: ${(error as Error).message}\n${app.transcript()}`);
          });
      // Alice's own worker emits to her; Bob's only gets it through the primary's relay.
      await heard(alice);
      await heard(bob.client);
      // Nothing for the primary to warn about (WARN_STICKY_ADAPTER_NO_RELAY, ..._JSON_BUFFER).
      expect(app.stderr, app.transcript()).toBe('');
    },
  );

  it("Metrics: port 9464 serves the user's shop_orders_total and sticky-mesh's series", async () => {
    ns = await createNamespace();
    const block = completeBlockAfter(snippets, readme, '## Metrics', 'js');
    const app = await startFixture({
      fixture: writeProgram(block, 'metrics.mjs'),
      until: null,
      netns: ns.name,
    });
    const answer = await vi.waitFor(() => getInside('http://127.0.0.1:3000/', app), {
      timeout: 20_000,
      interval: 200,
    });
    expect(answer).toBe('ok');
    // The worker that served the request counted it, and reports once asked.
    const text = await vi.waitFor(
      async () => {
        const scraped = await getInside('http://127.0.0.1:9464/metrics', app);
        if (!/^shop_orders_total\{[^}]*\} 1$/m.test(scraped)) {
          throw new Error(`no shop_orders_total of 1 yet:\n${scraped}\n${app.transcript()}`);
        }
        return scraped;
      },
      { timeout: 10_000, interval: 200 },
    );
    expect(text).toMatch(/^# HELP shop_orders_total orders placed$/m);
    expect(text).toMatch(/^sticky_mesh_\w+(\{[^}]*\})? \S+$/m);
    expect(app.stderr, app.transcript()).toBe('');
  });

  it('multicastStore: opens its socket on 10.1.0.81 and announces itself on 228.0.0.5:4000', async () => {
    ns = await createNamespace({ address: '10.1.0.81/24' });
    const listener = await startFixture({
      fixture: 'multicast-listen.mjs',
      env: { GROUP: '228.0.0.5', PORT: '4000', IFACE: '10.1.0.81' },
      netns: ns.name,
    });
    const block = completeBlockAfter(
      snippets,
      readme,
      '## Sessions across machines: multicast',
      'js',
    );
    const app = await startFixture({
      fixture: writeProgram(block, 'multicast-store.mjs'),
      env: { CLUSTER_SECRET: 'readme example cluster secret' },
      until: null,
      netns: ns.name,
    });
    // Its logger (console) names the node, the group and the interface.
    const id = await vi.waitFor(
      () => {
        const match =
          /^sticky-mesh: node ([0-9a-f]{16}) on 228\.0\.0\.5:4000 via 10\.1\.0\.81,/m.exec(
            app.stdout,
          );
        if (!match) throw new Error(`no "node ... via 10.1.0.81" line yet\n${app.transcript()}`);
        return match[1];
      },
      { timeout: 10_000, interval: 50 },
    );
    await listener.waitFor('datagram', {
      match: (line) => line.from === '10.1.0.81' && line.sender === id,
    });
    // The example never listens: once the store has joined (no peer: the first node), nothing
    // holds the process, and it ends by itself, without an error.
    const status = await app.waitForExit(10_000);
    expect(app.stdout, app.transcript()).toMatch(/starting as the first node/);
    expect({ ...status, stderr: app.stderr }, app.transcript()).toEqual({
      code: 0,
      signal: null,
      stderr: '',
    });
  });
});
