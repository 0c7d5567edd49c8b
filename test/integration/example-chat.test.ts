/**
 * The chat example (examples/socketio/server.js) end to end, with the clients a busy site has:
 * 100 Socket.io clients that start on long-polling and upgrade to a WebSocket, in two groups:
 *
 * - A: 50 clients, each from its own loopback address (the routing key in IP mode), each polling
 *   request on a new TCP connection (an agent without keep-alive);
 * - B: 50 clients sharing ONE keep-alive agent from one address, as a browser reuses its
 *   connections across tabs: requests of different Socket.io sessions share connections.
 *
 * Under sticky-mesh every client connects, stays connected through 8 ping cycles, upgrades and
 * gets every broadcast exactly once; a worker's death moves its clients to live workers. The
 * same clients against the same chat under Node's round-robin cluster (the negative control,
 * test/fixtures/chat-plain-cluster.mjs) fail, which shows the checks can see missing stickiness.
 *
 * Server-side `connection_error`s are seen from the client side: engine.io's refusals ("Session
 * ID unknown", 400) arrive as transport errors, failed upgrades as `upgradeError`.
 */
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import { io, type Socket } from 'socket.io-client';
import { afterAll, afterEach, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import { isAlive } from '../helpers/proc.js';
import {
  type ChatMessage,
  type ChatRecord,
  countBy,
  explain,
  type Hello,
  recordChat,
} from '../helpers/socketio.js';
import { sleep, waitUntil } from '../helpers/wait.js';

const WORKERS = 4;
const PING_INTERVAL = 300;
/**
 * Generous on purpose: it only bounds how long a silent peer is tolerated, and stickiness failures
 * show up as refusals at once, whatever it is. At 300 ms, on this 2-core box with other jobs
 * running, the 100 clients arriving at once (58 of them for one worker, each request of group A
 * a new connection the primary hands over by IPC) delayed the first polls of that worker's
 * clients by up to ~3 s; engine.io then closed dozens of sessions by ping timeout, and their next
 * requests got "Session ID unknown", every one from the worker that had held the session (none
 * misrouted; checked with a connection_error log in the workers).
 */
const PING_TIMEOUT = 5_000;
const PING_CYCLES = 8;
const GROUP_SIZE = 50;
const APP_ENV = {
  PORT: '0',
  WORKERS: String(WORKERS),
  PING_INTERVAL: String(PING_INTERVAL),
  PING_TIMEOUT: String(PING_TIMEOUT),
};
/** Group A's addresses: 127.0.0.2 ... 127.0.0.51; later single clients use 127.0.0.200+. */
const GROUP_A_SOURCES = loopbackSources(GROUP_SIZE);

interface Echo {
  slot: number;
  length: number;
  sha256: string;
}

/** One client and everything that happened to it, from its side. */
interface Client extends ChatRecord {
  readonly label: string;
  readonly socket: Socket;
  /** Its own agent (group A, single clients); group B's shared agent is closed by the group. */
  readonly ownAgent: http.Agent | undefined;
  /** Engine-level errors (a refused poll, a reset connection), with what the server answered. */
  readonly transportErrors: string[];
  /** Of the transport errors, engine.io's "Session ID unknown" refusals. */
  sessionUnknown: number;
}

interface ClientOptions {
  readonly label: string;
  readonly agent: http.Agent;
  readonly ownAgent: boolean;
  readonly transports?: ('polling' | 'websocket')[];
}

function connect(port: number, options: ClientOptions): Client {
  const socket: Socket = io(`http://127.0.0.1:${port}`, {
    agent: options.agent as never,
    transports: options.transports ?? ['polling', 'websocket'],
    forceNew: true,
    reconnection: true,
    reconnectionDelay: 200,
    reconnectionDelayMax: 1_000,
  });
  const client: Client = {
    label: options.label,
    socket,
    ownAgent: options.ownAgent ? options.agent : undefined,
    hellos: [],
    chats: [],
    connectErrors: [],
    disconnects: [],
    transportErrors: [],
    upgradeErrors: [],
    sessionUnknown: 0,
    pings: 0,
    closing: false,
  };
  recordChat(socket, client);
  // Beyond what every chat client records: engine-level errors, and engine.io's refusals.
  socket.io.on('error', (err) => {
    if (client.closing) return;
    const text = explain(err);
    client.transportErrors.push(text);
    if (text.includes('Session ID unknown')) client.sessionUnknown++;
  });
  return client;
}

function close(clients: Iterable<Client>): void {
  for (const client of clients) {
    client.closing = true;
    client.socket.close();
    client.ownAgent?.destroy();
  }
}

/** The 100 clients: group A (own address, no keep-alive) and group B (one shared agent). */
function connectGroups(port: number): { clients: Client[]; sharedAgent: http.Agent } {
  const sharedAgent = new http.Agent({ keepAlive: true });
  const clients = [
    ...GROUP_A_SOURCES.map((source) =>
      connect(port, {
        label: `A ${source}`,
        agent: new http.Agent({ keepAlive: false, localAddress: source }),
        ownAgent: true,
      }),
    ),
    ...Array.from({ length: GROUP_SIZE }, (_, i) =>
      connect(port, { label: `B #${i}`, agent: sharedAgent, ownAgent: false }),
    ),
  ];
  return { clients, sharedAgent };
}

const failedSoFar = (c: Client) =>
  c.connectErrors.length +
    c.disconnects.length +
    c.transportErrors.length +
    c.upgradeErrors.length >
  0;

/** Everything that went wrong for `clients`, one line per client; [] when nothing did. */
function problems(clients: readonly Client[], pingsAtHold: Map<Client, number>): string[] {
  const found: string[] = [];
  for (const c of clients) {
    const wrong: string[] = [];
    if (c.hellos.length === 0) wrong.push('no hello');
    if (c.hellos.length > 1) wrong.push(`${c.hellos.length} hellos (reconnected)`);
    if (c.connectErrors.length > 0) wrong.push(`connect_error: ${c.connectErrors.join('; ')}`);
    if (c.disconnects.length > 0) wrong.push(`disconnect: ${c.disconnects.join('; ')}`);
    if (c.transportErrors.length > 0) wrong.push(`transport: ${c.transportErrors.join('; ')}`);
    if (c.upgradeErrors.length > 0) wrong.push(`upgradeError: ${c.upgradeErrors.join('; ')}`);
    const transport = c.socket.io.engine?.transport?.name;
    if (transport !== 'websocket') wrong.push(`transport ${transport ?? 'none'}`);
    const held = c.pings - (pingsAtHold.get(c) ?? c.pings);
    if (held < PING_CYCLES) wrong.push(`${held} pings while held`);
    if (wrong.length > 0) found.push(`${c.label}: ${wrong.join(', ')}`);
  }
  return found;
}

interface Outcome {
  readonly clients: Client[];
  readonly sharedAgent: http.Agent;
  readonly problems: string[];
  readonly connectErrors: number;
  readonly disconnects: number;
  readonly sessionUnknown: number;
  readonly upgradeErrors: number;
  readonly summary: string;
}

/**
 * The connect and ping-cycle test, for the example and the control alike: the 100 clients
 * connect, upgrade, and are held through PING_CYCLES pings each. It stops waiting as soon as
 * anything fails (and collects a second more), so a broken server costs seconds, not timeouts.
 * Never throws; the clients are left open for the caller.
 */
async function connectAndHold(port: number): Promise<Outcome> {
  const { clients, sharedAgent } = connectGroups(port);
  const anyFailed = () => clients.some(failedSoFar);
  const connected = await waitUntil(
    () => anyFailed() || clients.every((c) => c.hellos.length > 0),
    20_000,
  );
  const upgraded =
    connected &&
    (await waitUntil(
      () =>
        anyFailed() || clients.every((c) => c.socket.io.engine?.transport?.name === 'websocket'),
      10_000,
    ));
  const pingsAtHold = new Map(clients.map((c) => [c, c.pings]));
  if (upgraded) {
    await waitUntil(
      () => anyFailed() || clients.every((c) => c.pings - (pingsAtHold.get(c) ?? 0) >= PING_CYCLES),
      PING_CYCLES * PING_INTERVAL * 3 + 5_000,
    );
  }
  if (anyFailed()) await sleep(1_000);
  const sum = (f: (c: Client) => number) => clients.reduce((n, c) => n + f(c), 0);
  const found = problems(clients, pingsAtHold);
  const outcome = {
    clients,
    sharedAgent,
    problems: found,
    connectErrors: sum((c) => c.connectErrors.length),
    disconnects: sum((c) => c.disconnects.length),
    sessionUnknown: sum((c) => c.sessionUnknown),
    upgradeErrors: sum((c) => c.upgradeErrors.length),
  };
  const slots = clients.map((c) => c.hellos[0]?.slot);
  const summary = [
    `${clients.length} clients, ${found.length} with problems;`,
    `connect_error ${outcome.connectErrors}, disconnect ${outcome.disconnects},`,
    `"Session ID unknown" ${outcome.sessionUnknown}, upgradeError ${outcome.upgradeErrors};`,
    `no hello ${slots.filter((s) => s === undefined).length};`,
    `per slot ${JSON.stringify(countBy(slots))}`,
    ...found.slice(0, 8).map((p) => `\n  ${p}`),
  ].join(' ');
  return { ...outcome, summary };
}

/** Starts `fixture` (a path under test/fixtures) and reads its port from the chat line. */
async function startChat(fixture: string): Promise<{ app: FixtureProcess; port: number }> {
  const app = await startFixture({ fixture, env: APP_ENV, until: null });
  const line = new RegExp(`chat on http://localhost:(\\d+) with ${WORKERS} workers`);
  const ready = await waitUntil(
    () => line.test(app.stdout) || app.exitStatus !== undefined,
    15_000,
  );
  const m = line.exec(app.stdout);
  if (!ready || !m) throw new Error(`${fixture} did not start\n${app.transcript()}`);
  return { app, port: Number(m[1]) };
}

/** The next `hello` on a connected client (a reconnection's), or a rejection after timeoutMs. */
function helloOf(client: Client, timeoutMs: number): Promise<Hello> {
  return new Promise((resolve, reject) => {
    if (client.hellos.length > 0) {
      resolve(client.hellos[client.hellos.length - 1] as Hello);
      return;
    }
    const timer = setTimeout(
      () => reject(new Error(`${client.label}: no hello within ${timeoutMs} ms`)),
      timeoutMs,
    );
    client.socket.once('hello', (hello: Hello) => {
      clearTimeout(timer);
      resolve(hello);
    });
  });
}

describe('examples/socketio under sticky-mesh: 100 clients, polling first, then WebSocket', () => {
  let app: FixtureProcess;
  let port: number;
  let outcome: Outcome | undefined;
  const extra: Client[] = [];

  beforeAll(async () => {
    ({ app, port } = await startChat('../../examples/socketio/server.js'));
  });

  afterAll(async () => {
    if (outcome) {
      close(outcome.clients);
      outcome.sharedAgent.destroy();
    }
    close(extra);
    await stopFixtures();
  });

  /** The clients the first test connected; later tests need them. */
  function held(): Outcome {
    if (!outcome) throw new Error('the 100 clients did not connect (see the first test)');
    return outcome;
  }

  it('all connect, stay connected through 8 ping cycles, use every worker and end on a WebSocket', async ({
    annotate,
  }) => {
    outcome = await connectAndHold(port);
    await annotate(outcome.summary);
    const context = `${outcome.summary}\n${app.transcript()}`;
    expect(outcome.problems, context).toEqual([]);
    expect(outcome.connectErrors, context).toBe(0);
    expect(outcome.sessionUnknown, context).toBe(0);
    expect(outcome.upgradeErrors, context).toBe(0);
    for (const c of outcome.clients) {
      expect(c.hellos, `${c.label}\n${context}`).toHaveLength(1);
      expect(c.pings, `${c.label}\n${context}`).toBeGreaterThanOrEqual(PING_CYCLES);
      expect(c.socket.io.engine.transport.name, c.label).toBe('websocket');
    }
    const slots = new Set(outcome.clients.map((c) => c.hellos[0]?.slot));
    expect(slots, context).toEqual(new Set([0, 1, 2, 3]));
    // Group B came from one address: IP mode put all of its sessions on one worker.
    const groupB = outcome.clients.filter((c) => c.label.startsWith('B'));
    expect(new Set(groupB.map((c) => c.hellos[0]?.slot)).size, context).toBe(1);
  }, 60_000);

  it("a chat from each worker reaches every client exactly once (the cluster adapter's relay)", async ({
    annotate,
  }) => {
    const { clients } = held();
    const senders = [0, 1, 2, 3].map((slot) => {
      const sender = clients.find((c) => c.hellos[0]?.slot === slot);
      if (!sender) throw new Error(`no client on worker ${slot}`);
      return sender;
    });
    const sent = (await Promise.all(
      senders.map((c, i) => c.socket.timeout(5_000).emitWithAck('chat', `hello from #${i}`)),
    )) as ChatMessage[];
    expect(sent.map((m) => m.slot)).toEqual([0, 1, 2, 3]);
    const ids = new Set(sent.map((m) => m.id));
    expect(ids.size).toBe(4);
    const all = await waitUntil(() => clients.every((c) => c.chats.length >= 4), 10_000);
    // Room for a duplicate to arrive, were the relay to send one.
    await sleep(500);
    const wrong = clients
      .filter((c) => c.chats.length !== 4 || !c.chats.every((m) => ids.has(m.id)))
      .map((c) => `${c.label}: ${c.chats.map((m) => m.id).join(', ')}`);
    await annotate(`${clients.length} clients; wrong ${wrong.length}`);
    expect(all, wrong.slice(0, 8).join('\n')).toBe(true);
    expect(wrong, wrong.slice(0, 8).join('\n')).toEqual([]);
    for (const c of clients) {
      expect(new Set(c.chats.map((m) => m.id)), c.label).toEqual(ids);
      expect(
        c.chats.every((m) => m.name === 'anonymous'),
        c.label,
      ).toBe(true);
    }
  });

  it('a 900 KB message over long-polling arrives intact', async () => {
    const client = connect(port, {
      label: 'polling-only',
      agent: new http.Agent({ keepAlive: true, localAddress: '127.0.0.200' }),
      ownAgent: true,
      transports: ['polling'],
    });
    extra.push(client);
    const hello = await helloOf(client, 10_000);
    // 900,000 ASCII characters: one polling POST of about 900 KB (under maxHttpBufferSize, 1e6).
    const text = randomBytes(675_000).toString('base64');
    expect(text).toHaveLength(900_000);
    const echo = (await client.socket.timeout(15_000).emitWithAck('echo', text)) as Echo;
    expect(client.socket.io.engine.transport.name).toBe('polling');
    expect(echo).toEqual({
      slot: hello.slot,
      length: 900_000,
      sha256: createHash('sha256').update(text).digest('hex'),
    });
    expect(client.transportErrors).toEqual([]);
    expect(client.disconnects).toEqual([]);
  });

  it('killing a worker: its clients reconnect to live workers, the others stay, the primary serves', async ({
    annotate,
  }) => {
    const { clients } = held();
    // The worker that holds group B (one address, so one worker) and its share of group A.
    const victimPid = clients.find((c) => c.label.startsWith('B'))?.hellos[0]?.pid;
    if (victimPid === undefined) throw new Error('group B has no hello');
    const victims = clients.filter((c) => c.hellos.at(-1)?.pid === victimPid);
    const others = clients.filter((c) => c.hellos.at(-1)?.pid !== victimPid);
    const before = new Map(clients.map((c) => [c, c.hellos.length]));
    const disconnectsBefore = new Map(clients.map((c) => [c, c.disconnects.length]));
    const othersDisconnects = others.map((c) => c.disconnects.length);
    expect(victims.length).toBeGreaterThanOrEqual(GROUP_SIZE);
    expect(others.length).toBeGreaterThan(0);

    process.kill(victimPid, 'SIGKILL');
    const back = await waitUntil(
      () => victims.every((c) => c.hellos.length > (before.get(c) ?? 0) && c.socket.connected),
      20_000,
    );
    const newPids = victims.map((c) => c.hellos.at(-1)?.pid);
    const summary = `${victims.length} clients on the killed worker (pid ${victimPid}); after: ${JSON.stringify(countBy(newPids))}`;
    await annotate(summary);
    const context = `${summary}\n${app.transcript()}`;
    expect(back, context).toBe(true);
    for (const c of victims) {
      // The first thing it saw: its connection went away with the worker.
      const first = c.disconnects[disconnectsBefore.get(c) ?? 0];
      expect(first, `${c.label}\n${context}`).toMatch(/^transport (close|error)/);
      const pid = c.hellos.at(-1)?.pid;
      expect(pid, `${c.label}\n${context}`).not.toBe(victimPid);
      expect(isAlive(pid as number), `${c.label}: pid ${pid}`).toBe(true);
    }
    // Nobody else noticed.
    expect(
      others.map((c) => c.disconnects.length),
      context,
    ).toEqual(othersDisconnects);
    expect(others.every((c) => c.socket.connected)).toBe(true);

    // The primary keeps serving: the page loads, from any address, and new clients connect.
    for (const source of loopbackSources(8, 210)) {
      const page = await request({ port, source, path: '/' });
      expect(page.status, `${source}: ${page.text}`).toBe(200);
      expect(page.text).toContain('<h1>sticky-mesh chat</h1>');
    }
    const fresh = loopbackSources(8, 220).map((source) =>
      connect(port, {
        label: `fresh ${source}`,
        agent: new http.Agent({ keepAlive: false, localAddress: source }),
        ownAgent: true,
      }),
    );
    extra.push(...fresh);
    const hellos = await Promise.all(fresh.map((c) => helloOf(c, 10_000)));
    for (const h of hellos) expect(h.pid).not.toBe(victimPid);
    const echo = (await fresh[0]?.socket.timeout(5_000).emitWithAck('echo', 'still here')) as Echo;
    expect(echo.slot).toBe(hellos[0]?.slot);
    expect(app.stdout).toMatch(new RegExp(`\\(pid ${victimPid}\\) exited: SIGKILL`));
  }, 60_000);
});

describe('negative control: the same chat under Node round-robin cluster (no stickiness)', () => {
  afterEach(stopFixtures);

  it('the same connect and ping-cycle test fails: refused polls, failed upgrades, connect errors', async ({
    annotate,
  }) => {
    const { app, port } = await startChat('chat-plain-cluster.mjs');
    const outcome = await connectAndHold(port);
    try {
      await annotate(outcome.summary);
      const context = `${outcome.summary}\n${app.transcript()}`;
      // The test above would fail here ...
      expect(outcome.problems.length, context).toBeGreaterThan(0);
      // ... for the reason stickiness exists: requests reach workers that do not hold their
      // engine.io session (engine.io answers "Session ID unknown"; an upgrade to such a worker
      // fails; a handshake's follow-up request that lands elsewhere fails the connect).
      expect(
        outcome.sessionUnknown + outcome.upgradeErrors + outcome.connectErrors,
        context,
      ).toBeGreaterThan(0);
    } finally {
      close(outcome.clients);
      outcome.sharedAgent.destroy();
    }
  }, 60_000);
});
