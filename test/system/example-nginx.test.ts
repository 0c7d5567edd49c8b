/**
 * The chat example (examples/socketio/server.js, PROXY=1) behind a real nginx that runs the
 * configuration examples/socketio/README.md documents under "Behind nginx". The configuration is
 * read from the README at test time, and only what running it here needs is changed: the
 * upstream's port becomes the app's, `listen 80` becomes a free loopback port, and the main
 * context of a foreground nginx in a temporary directory goes around it (startNginxWith).
 *
 * 40 Socket.io clients, each from its own loopback address, talk to nginx only, with the default
 * transports (long-polling, then the upgrade to a WebSocket); nginx's $proxy_add_x_forwarded_for
 * gives each its own routing key. They all connect, end on a WebSocket (which only happens when
 * nginx passes the Upgrade and Connection headers on: a refused upgrade leaves a client on
 * long-polling, silently but for an `upgradeError`), spread over the four workers, stay connected
 * through ping cycles, get every broadcast once, and a second client from an address lands on
 * the worker of the first. A client that writes another's address into its own X-Forwarded-For
 * (nginx keeps it on the left) still reaches its own worker: the app keys by the right-most
 * address, the one nginx appended (trustedProxies: 1).
 *
 * Three negative controls show that the checks see a broken setup: without the README's Upgrade
 * and Connection lines no client ends on a WebSocket, with TRUSTED_PROXIES=0 (the left-most
 * address) every spoofing client reaches the worker it names, and without PROXY=1 (the app routes
 * by the connection's address, which is nginx's) every client lands on one worker.
 *
 * Needs nginx; skipped by name without it, a failure under REQUIRE_SYSTEM_TESTS=1.
 */
import { readFile } from 'node:fs/promises';
import http from 'node:http';
import { io, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import { type RunningProxy, startNginxWith } from '../helpers/proxies.js';
import { type ChatMessage, type ChatRecord, countBy, recordChat } from '../helpers/socketio.js';
import { hasTool } from '../helpers/system.js';

const README = new URL('../../examples/socketio/README.md', import.meta.url);
const WORKERS = 4;
const PING_INTERVAL = 300;
/**
 * Generous on purpose, as in test/integration/example-chat.test.ts: on a loaded 2-core box the
 * first polls of a busy worker's clients were seen delayed by seconds, and a shorter timeout then
 * closes sessions for reasons that have nothing to do with nginx.
 */
const PING_TIMEOUT = 5_000;
const PING_CYCLES = 5;
/** 127.0.0.2 ... 127.0.0.41: one address, so one X-Forwarded-For, per client. */
const SOURCES = loopbackSources(40);

/** One client and everything that happened to it, from its side. */
interface Client extends ChatRecord {
  readonly label: string;
  readonly source: string;
  readonly socket: Socket;
  readonly agent: http.Agent;
}

// --- the README's configuration --------------------------------------------------------------

/** The text of the README's one ```nginx block. */
async function readmeNginxBlock(): Promise<string> {
  const text = await readFile(README, 'utf8');
  const blocks = [...text.matchAll(/^```nginx\n([\s\S]*?)^```$/gm)];
  const block = blocks[0]?.[1];
  if (blocks.length !== 1 || block === undefined) {
    throw new Error(
      `examples/socketio/README.md changed: it has ${blocks.length} \`\`\`nginx blocks, this test runs exactly one`,
    );
  }
  return block;
}

/** `config` with the one line `line` matches replaced; throws (the README changed) otherwise. */
function substitute(config: string, line: RegExp, replacement: string, what: string): string {
  const found = config.match(new RegExp(line.source, 'gm')) ?? [];
  if (found.length !== 1) {
    throw new Error(
      `examples/socketio/README.md changed: its nginx block has ${found.length} ${what} (${line}), this test substitutes exactly one\n${config}`,
    );
  }
  return config.replace(new RegExp(line.source, 'm'), replacement);
}

/** The README's block, pointed at the app on `appPort` and listening on 127.0.0.1:`port`. */
function runnableHere(block: string, appPort: number, port: number): string {
  const upstream = substitute(
    block,
    /^([ \t]*)server 127\.0\.0\.1:3000;/,
    `$1server 127.0.0.1:${appPort};`,
    'upstream lines "server 127.0.0.1:3000;"',
  );
  return substitute(
    upstream,
    /^([ \t]*)listen 80;/,
    `$1listen 127.0.0.1:${port};`,
    'lines "listen 80;"',
  );
}

/** The README's block without its `proxy_set_header Upgrade` and `... Connection` lines. */
function withoutUpgradeHeaders(block: string): string {
  const noUpgrade = substitute(
    block,
    /^[ \t]*proxy_set_header[ \t]+Upgrade[ \t].*\n/,
    '',
    'proxy_set_header Upgrade lines',
  );
  return substitute(
    noUpgrade,
    /^[ \t]*proxy_set_header[ \t]+Connection[ \t].*\n/,
    '',
    'proxy_set_header Connection lines',
  );
}

// --- the app ---------------------------------------------------------------------------------

const READY = new RegExp(`chat on http://localhost:(\\d+) with ${WORKERS} workers`);

/**
 * examples/socketio/server.js, with or without PROXY=1 (and `env` on top); resolves once its four
 * workers are up.
 */
async function startApp(
  proxy: boolean,
  env: Record<string, string> = {},
): Promise<{ app: FixtureProcess; port: number }> {
  const app = await startFixture({
    fixture: '../../examples/socketio/server.js',
    env: {
      PORT: '0',
      WORKERS: String(WORKERS),
      PING_INTERVAL: String(PING_INTERVAL),
      PING_TIMEOUT: String(PING_TIMEOUT),
      ENGINE_ERRORS: '1',
      ...(proxy ? { PROXY: '1' } : {}),
      ...env,
    },
    until: null,
  });
  const ready = await vi.waitFor(
    () => {
      const workersUp = app.stdout.match(/^worker \d+ up/gm)?.length ?? 0;
      if (app.exitStatus !== undefined || (READY.test(app.stdout) && workersUp === WORKERS)) {
        return READY.exec(app.stdout);
      }
      throw new Error(`server.js not ready yet\n${app.transcript()}`);
    },
    { timeout: 20_000, interval: 50 },
  );
  if (app.exitStatus !== undefined || !ready) {
    throw new Error(`server.js exited before it was ready\n${app.transcript()}`);
  }
  return { app, port: Number(ready[1]) };
}

/** The engine.io connection errors the app printed (ENGINE_ERRORS=1). */
const connectionErrors = (app: FixtureProcess) => app.events('connectionError');

// --- the clients -----------------------------------------------------------------------------

/** A client of nginx on `port` from `source`, with the default transports and no reconnection. */
function connect(port: number, source: string, label = source): Client {
  // Its own agent bound to `source` for the polling requests; engine.io-client hands
  // `localAddress` (and the agent) on to ws for the WebSocket.
  const agent = new http.Agent({ keepAlive: true, localAddress: source });
  const socket = io(`http://127.0.0.1:${port}`, {
    forceNew: true,
    reconnection: false,
    agent: agent as never,
    ...({ localAddress: source } as object),
  });
  const client: Client = {
    label,
    source,
    socket,
    agent,
    hellos: [],
    chats: [],
    connectErrors: [],
    disconnects: [],
    upgradeErrors: [],
    pings: 0,
    closing: false,
  };
  recordChat(socket, client);
  return client;
}

function closeAll(clients: Iterable<Client>): void {
  for (const client of clients) {
    client.closing = true;
    client.socket.close();
    client.agent.destroy();
  }
}

const transportOf = (c: Client) => c.socket.io.engine?.transport?.name ?? 'none';
const slotOf = (c: Client) => c.hellos[0]?.slot;

/** Done connecting: failed, or connected and either upgraded or refused the upgrade. */
const settledOne = (c: Client) =>
  c.connectErrors.length > 0 ||
  c.disconnects.length > 0 ||
  (c.hellos.length > 0 && (transportOf(c) === 'websocket' || c.upgradeErrors.length > 0));

/** One line per client: what it saw. */
function clientLines(clients: readonly Client[]): string {
  return clients
    .map((c) => {
      const parts = [
        `${c.label}: slot ${c.hellos.map((h) => h.slot).join('/') || 'none'}`,
        `transport ${transportOf(c)}`,
        `pings ${c.pings}`,
        `chats ${c.chats.length}`,
      ];
      if (c.connectErrors.length > 0) parts.push(`connect_error: ${c.connectErrors.join('; ')}`);
      if (c.disconnects.length > 0) parts.push(`disconnect: ${c.disconnects.join('; ')}`);
      if (c.upgradeErrors.length > 0) parts.push(`upgradeError: ${c.upgradeErrors.join('; ')}`);
      return `  ${parts.join(', ')}`;
    })
    .join('\n');
}

/** Everything seen, for failure messages: the clients, the app's output, nginx's. */
function seen(clients: readonly Client[], app: FixtureProcess, nginx: RunningProxy): string {
  return [
    `${clients.length} clients, per slot ${JSON.stringify(countBy(clients.map(slotOf)))}, per transport ${JSON.stringify(countBy(clients.map(transportOf)))}`,
    clientLines(clients),
    app.transcript(),
    '--- nginx output ---',
    nginx.output().trimEnd() || '(nothing)',
  ].join('\n');
}

/** Connects a client from each of `sources` and waits until every one has settled. */
async function connectAll(
  port: number,
  sources: readonly string[],
  context: (clients: readonly Client[]) => string,
  label: (source: string) => string = (source) => source,
): Promise<Client[]> {
  const clients = sources.map((source) => connect(port, source, label(source)));
  await vi.waitFor(
    () => {
      if (!clients.every(settledOne)) {
        throw new Error(`not every client settled yet\n${context(clients)}`);
      }
    },
    { timeout: 20_000, interval: 50 },
  );
  return clients;
}

// --- the checks, for the example and the controls alike ---------------------------------------

/** Clients that did not connect exactly once, or saw a connect_error; one line each. */
function notConnected(clients: readonly Client[]): string[] {
  return clients
    .filter((c) => c.hellos.length !== 1 || c.connectErrors.length > 0)
    .map((c) => `${c.label}: ${c.hellos.length} hellos, connect_error ${c.connectErrors.length}`);
}

/** Clients that did not end on a WebSocket, one line each. */
function notOnWebSocket(clients: readonly Client[]): string[] {
  return clients
    .filter((c) => transportOf(c) !== 'websocket')
    .map((c) => `${c.label}: ${transportOf(c)} ${c.upgradeErrors.join('; ')}`);
}

/** The slot of the worker that answers `GET /whoami` from `source` through nginx on `port`. */
async function whoami(port: number, source: string, headers: Record<string, string> = {}) {
  const r = await request({ port, source, path: '/whoami', headers });
  if (r.status !== 200 || r.body === undefined) {
    throw new Error(`/whoami from ${source}: ${r.status} ${r.text}`);
  }
  return r.body.slot;
}

/**
 * Each source asks through nginx once as itself and once claiming, in its own X-Forwarded-For, the
 * address of a source whose worker differs from its own: `kept` lists the requests that reached
 * the claimer's own worker, `moved` those that reached the claimed address's worker.
 */
async function spoofing(port: number): Promise<{ kept: string[]; moved: string[] }> {
  const home = new Map<string, number>();
  for (const source of SOURCES) home.set(source, await whoami(port, source));
  const kept: string[] = [];
  const moved: string[] = [];
  for (const source of SOURCES) {
    const victim = SOURCES.find((other) => home.get(other) !== home.get(source));
    if (victim === undefined) throw new Error(`every source on one worker: ${[...home]}`);
    const slot = await whoami(port, source, { 'x-forwarded-for': victim });
    const line = `${source} (worker ${home.get(source)}) as ${victim} (worker ${home.get(victim)}): worker ${slot}`;
    if (slot === home.get(source)) kept.push(line);
    if (slot === home.get(victim)) moved.push(line);
  }
  return { kept, moved };
}

/** The worker slots holding at least one of `clients`. */
const slotsHeld = (clients: readonly Client[]) => new Set(clients.map(slotOf));

describe.skipIf(!hasTool('nginx'))(
  "examples/socketio behind nginx with the README's configuration (needs nginx)",
  () => {
    let block: string;

    beforeAll(async () => {
      block = await readmeNginxBlock();
    });

    describe('with PROXY=1, 40 clients from 40 addresses', () => {
      let app: FixtureProcess;
      let nginx: RunningProxy | undefined;
      let clients: Client[] | undefined;
      const extra: Client[] = [];

      beforeAll(async () => {
        let port: number;
        ({ app, port } = await startApp(true));
        nginx = await startNginxWith((listen) => runnableHere(block, port, listen));
      });

      afterAll(async () => {
        closeAll([...(clients ?? []), ...extra]);
        try {
          await nginx?.stop();
        } finally {
          await stopFixtures();
        }
      });

      function running(): { app: FixtureProcess; nginx: RunningProxy } {
        if (!nginx) throw new Error('nginx did not start (see beforeAll)');
        return { app, nginx };
      }

      /** The 40 clients the first test connected; the later tests need them. */
      function held(): Client[] {
        if (!clients) throw new Error('the 40 clients did not connect (see the first test)');
        return clients;
      }

      it('every client connects with no error, ends on a WebSocket, and the four workers share them', async ({
        annotate,
      }) => {
        const { nginx } = running();
        clients = await connectAll(nginx.port, SOURCES, (cs) => seen(cs, app, nginx));
        const context = seen(clients, app, nginx);
        await annotate(context.split('\n')[0] ?? '');
        expect(notConnected(clients), context).toEqual([]);
        expect(connectionErrors(app), context).toEqual([]);
        // Only a WebSocket that went through nginx with Upgrade and Connection gets here.
        expect(notOnWebSocket(clients), context).toEqual([]);
        expect(slotsHeld(clients), context).toEqual(new Set([0, 1, 2, 3]));
      });

      it(`they stay connected, on their WebSockets, through ${PING_CYCLES} ping cycles`, async () => {
        const { nginx } = running();
        const cs = held();
        const before = new Map(cs.map((c) => [c, c.pings]));
        const cycles = (c: Client) => c.pings - (before.get(c) ?? c.pings);
        await vi.waitFor(
          () => {
            if (!cs.every((c) => c.disconnects.length > 0 || cycles(c) >= PING_CYCLES)) {
              throw new Error(`not every client saw ${PING_CYCLES} pings\n${seen(cs, app, nginx)}`);
            }
          },
          { timeout: PING_CYCLES * PING_INTERVAL * 3 + 5_000, interval: 50 },
        );
        const context = seen(cs, app, nginx);
        expect(
          cs.filter((c) => c.disconnects.length > 0).map((c) => c.label),
          context,
        ).toEqual([]);
        expect(notOnWebSocket(cs), context).toEqual([]);
        expect(connectionErrors(app), context).toEqual([]);
      });

      it('a chat from a client on each worker reaches every client exactly once', async () => {
        const { nginx } = running();
        const cs = held();
        const senders = [0, 1, 2, 3].map((slot) => {
          const sender = cs.find((c) => slotOf(c) === slot);
          if (!sender) throw new Error(`no client on worker ${slot}\n${seen(cs, app, nginx)}`);
          return sender;
        });
        const send = (round: string) =>
          Promise.all(
            senders.map(
              (c) =>
                c.socket
                  .timeout(5_000)
                  .emitWithAck('chat', `${round} from ${c.label}`) as Promise<ChatMessage>,
            ),
          );
        const first = await send('first');
        expect(first.map((m) => m.slot)).toEqual([0, 1, 2, 3]);
        // A second round from the same senders fences the first: a worker's broadcasts reach
        // each client in order (IPC through the primary, then one WebSocket), so once a client
        // holds the second round, a duplicate of the first would have arrived before it.
        const fence = await send('fence');
        const firstIds = first.map((m) => m.id);
        const fenceIds = new Set(fence.map((m) => m.id));
        await vi.waitFor(
          () => {
            const missing = cs.filter((c) => c.chats.filter((m) => fenceIds.has(m.id)).length < 4);
            if (missing.length > 0) {
              throw new Error(
                `${missing.length} clients lack a fence message\n${seen(cs, app, nginx)}`,
              );
            }
          },
          { timeout: 10_000, interval: 50 },
        );
        const wrong = cs
          .filter((c) => {
            const counts = firstIds.map((id) => c.chats.filter((m) => m.id === id).length);
            return counts.some((n) => n !== 1);
          })
          .map((c) => `${c.label}: ${c.chats.map((m) => `${m.id} (${m.text})`).join(', ')}`);
        expect(wrong, `first round: ${firstIds.join(', ')}\n${seen(cs, app, nginx)}`).toEqual([]);
      });

      it('a client cannot choose its worker by writing X-Forwarded-For itself', async () => {
        const { nginx } = running();
        const { kept, moved } = await spoofing(nginx.port);
        const context = `kept:\n${kept.join('\n')}\nmoved:\n${moved.join('\n')}\n${app.transcript()}`;
        // nginx appends the address it saw; the app keys by that one (trustedProxies: 1).
        expect(moved, context).toEqual([]);
        expect(kept, context).toHaveLength(SOURCES.length);
      });

      it('a second client from each address lands on the worker of the first', async () => {
        const { nginx } = running();
        const cs = held();
        const seconds = await connectAll(
          nginx.port,
          SOURCES,
          (more) => seen([...cs, ...more], app, nginx),
          (source) => `${source} #2`,
        );
        extra.push(...seconds);
        const context = seen([...cs, ...seconds], app, nginx);
        expect(notConnected(seconds), context).toEqual([]);
        expect(notOnWebSocket(seconds), context).toEqual([]);
        // The key is the forwarded address: nginx's own connections are shared by all clients.
        expect(seconds.map(slotOf), context).toEqual(cs.map(slotOf));
        expect(connectionErrors(app), context).toEqual([]);
      });
    });

    describe('negative controls: the checks above fail when the setup is wrong', () => {
      let nginx: RunningProxy | undefined;
      let clients: Client[] = [];

      afterEach(async () => {
        closeAll(clients);
        clients = [];
        try {
          await nginx?.stop();
        } finally {
          nginx = undefined;
          await stopFixtures();
        }
      });

      it('without the Upgrade and Connection lines no client ends on a WebSocket', async ({
        annotate,
      }) => {
        const { app, port } = await startApp(true);
        const proxy = await startNginxWith((listen) =>
          runnableHere(withoutUpgradeHeaders(block), port, listen),
        );
        nginx = proxy;
        clients = await connectAll(proxy.port, SOURCES, (cs) => seen(cs, app, proxy));
        const context = seen(clients, app, proxy);
        await annotate(context.split('\n')[0] ?? '');
        // They connect, on long-polling ...
        expect(notConnected(clients), context).toEqual([]);
        // ... but the WebSocket check fails for every one of them: each upgrade was refused.
        expect(notOnWebSocket(clients), context).toHaveLength(SOURCES.length);
        expect(
          clients.filter((c) => c.upgradeErrors.length === 0).map((c) => c.label),
          context,
        ).toEqual([]);
        // Refused by engine.io: without Upgrade (a hop-by-hop header nginx drops unless told to
        // set it) the probe reached the worker as a plain GET for the websocket transport.
        expect(connectionErrors(app).length, context).toBeGreaterThan(0);
      });

      it('with TRUSTED_PROXIES=0 (the left-most address) every client picks the worker it names', async () => {
        const { app, port } = await startApp(true, { TRUSTED_PROXIES: '0' });
        const proxy = await startNginxWith((listen) => runnableHere(block, port, listen));
        nginx = proxy;
        const { kept, moved } = await spoofing(proxy.port);
        const context = `kept:\n${kept.join('\n')}\nmoved:\n${moved.join('\n')}\n${app.transcript()}`;
        // The check "a client cannot choose its worker" fails for every one of them.
        expect(moved, context).toHaveLength(SOURCES.length);
      });

      it('without PROXY=1 every client lands on one worker (every connection is from nginx)', async ({
        annotate,
      }) => {
        const { app, port } = await startApp(false);
        const proxy = await startNginxWith((listen) => runnableHere(block, port, listen));
        nginx = proxy;
        clients = await connectAll(proxy.port, SOURCES, (cs) => seen(cs, app, proxy));
        const context = seen(clients, app, proxy);
        await annotate(context.split('\n')[0] ?? '');
        expect(notConnected(clients), context).toEqual([]);
        // The check "the four workers share them" fails: one worker holds everyone.
        expect(slotsHeld(clients).size, context).toBe(1);
      });
    });
  },
);
