/**
 * The `scope` option in proxy mode: which later requests of a kept-open connection must reach
 * their key's worker. A request in the scope is routed by its own X-Forwarded-For (handed back to
 * the primary when it belongs elsewhere); one outside it is served by the worker the connection
 * is on. A connection's first request is always routed by the primary by its key.
 *
 * Socket.io clients on one shared keep-alive agent (test/helpers/socketio-shared-agent.ts) show
 * that `scope: 'engine.io'` keeps every polling request on its session's worker, and the negative
 * control that a scope which moves none of them gets "Session ID unknown"; raw requests on ONE
 * TCP connection to ip-app.mjs show exactly which requests move and which stay, under
 * 'engine.io', 'session-id' and a header predicate.
 */
import { randomBytes } from 'node:crypto';
import { afterEach, describe, expect, it } from 'vitest';
import { rendezvous } from '../../src/hash.js';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { Connection } from '../helpers/connection.js';
import { request } from '../helpers/http.js';
import {
  APP_ENV,
  CLIENTS,
  type Outcome,
  ROUND_TRIPS,
  runAll,
} from '../helpers/socketio-shared-agent.js';

const SEED = 7;
const ALL = [0, 1, 2, 3];
const pick = rendezvous(SEED, ALL.length);

/** The slot whose worker a client's key belongs to while every worker is up. */
function slotOf(key: string): number {
  const slot = pick(key, ALL);
  if (slot === undefined) throw new Error(`no slot for ${key}`);
  return slot;
}
/** Client addresses as a reverse proxy forwards them, and the slot each one's key names. */
const KEYS = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
const KEYS_OF = new Map(ALL.map((slot) => [slot, KEYS.filter((k) => slotOf(k) === slot)]));

/** The `n`-th key (cycling) whose worker is `slot`. */
function keyOf(slot: number, n = 0): string {
  const keys = KEYS_OF.get(slot) ?? [];
  const key = keys[n % keys.length];
  if (key === undefined) throw new Error(`no key for slot ${slot}`);
  return key;
}

afterEach(stopFixtures);

/** What ip-app.mjs's worker answered, and which worker that was. */
interface Answer {
  readonly pid: number;
  readonly slot: number;
  readonly bytes?: number;
}

/** ip-app.mjs in proxy mode with 4 workers and this STICKY_SCOPE. */
async function startIpApp(scope: string): Promise<FixtureProcess> {
  return startFixture({
    fixture: 'ip-app.mjs',
    env: {
      WORKERS: String(ALL.length),
      KEEP_ALIVE_TIMEOUT: '10000',
      STICKY_OPTIONS: JSON.stringify({ proxy: true, seed: SEED }),
      STICKY_SCOPE: scope,
    },
  });
}

/** Each slot's worker pid, as the primary announced it. */
function pidsBySlot(app: FixtureProcess): Map<number, number> {
  return new Map(app.events('workerUp').map((l) => [Number(l.slot), Number(l.pid)]));
}

/**
 * Sends one request on `conn` (which must stay open) and returns the worker's answer. `body`
 * makes it a POST.
 */
async function send(
  conn: Connection,
  key: string,
  options: { path?: string; headers?: Record<string, string>; body?: Buffer } = {},
): Promise<Answer> {
  const { path = '/', headers = {}, body } = options;
  const lines = [
    `${body ? 'POST' : 'GET'} ${path} HTTP/1.1`,
    'Host: app',
    `X-Forwarded-For: ${key}`,
    ...Object.entries(headers).map(([name, value]) => `${name}: ${value}`),
    ...(body ? [`Content-Length: ${body.length}`] : []),
  ];
  conn.socket.write(`${lines.join('\r\n')}\r\n\r\n`);
  if (body) conn.socket.write(body);
  const r = await conn.response();
  const text = r.body.toString();
  if (r.status !== 200) throw new Error(`${path} for ${key}: ${r.status} ${text}`);
  return JSON.parse(text) as Answer;
}

/**
 * One counter of each worker's stats (`handedBack`: connections it gave back to the primary;
 * `relayed`: requests it relayed to another worker), asked on fresh connections.
 */
async function workerCounts(port: number, counter: 'handedBack' | 'relayed'): Promise<number[]> {
  return Promise.all(
    ALL.map(async (slot) => {
      const r = await request({
        port,
        path: '/stats',
        headers: { 'x-forwarded-for': keyOf(slot, 99) },
      });
      const reply = JSON.parse(r.text) as { slot: number; stats: Record<typeof counter, number> };
      if (reply.slot !== slot) throw new Error(`/stats for slot ${slot} answered by ${reply.slot}`);
      return reply.stats[counter];
    }),
  );
}

/** The checks of a run in which every socket.io client must have stayed on its key's worker. */
function expectEveryClientOnItsWorker(outcome: Outcome, app: FixtureProcess): void {
  const context = `${outcome.summary}\n${app.transcript()}`;
  expect(outcome.serverErrors, context).toEqual([]);
  expect(outcome.sessionUnknown, context).toBe(0);
  expect(
    outcome.failed.map((r) => r.forwardedFor),
    context,
  ).toEqual([]);
  expect(outcome.runs, context).toHaveLength(CLIENTS);
  for (const run of outcome.runs) {
    // Greeted by its key's worker (the handshake is an engine.io request too) ...
    expect(run.hello?.slot, `${run.forwardedFor}\n${context}`).toBe(slotOf(run.forwardedFor));
    expect(run.acks, context).toHaveLength(ROUND_TRIPS);
    // ... and every round trip answered by that same worker.
    for (const ack of run.acks) expect(ack.pid, context).toBe(run.hello?.pid);
    expect(run.pings, `${run.forwardedFor}\n${context}`).toBeGreaterThanOrEqual(3);
  }
  // The clients really shared connections, as behind a proxy's upstream keep-alive pool.
  expect(outcome.agent.reusedForAnotherClient, context).toBeGreaterThan(0);
  expect(app.events('connection'), context).toHaveLength(CLIENTS);
}

describe("scope: 'engine.io' (proxy mode)", () => {
  it('socket.io polling clients on one shared keep-alive agent: zero "Session ID unknown"', async ({
    annotate,
  }) => {
    const app = await startFixture({
      fixture: 'socketio-app.mjs',
      env: {
        ...APP_ENV,
        STICKY_OPTIONS: JSON.stringify({ seed: SEED }),
        STICKY_SCOPE: 'engine.io',
      },
    });
    const outcome = await runAll(app);
    await annotate(outcome.summary);
    expectEveryClientOnItsWorker(outcome, app);
  });

  it('plain requests stay on the connection’s worker; engine.io requests reach their key’s', async () => {
    const app = await startIpApp('engine.io');
    const port = app.port();
    const pid = pidsBySlot(app);
    /** The connection's first worker, then the two it moves to. */
    const a = slotOf(KEYS[0] as string);
    const [b, c] = ALL.filter((s) => s !== a) as [number, number];
    const conn = await Connection.open(port);
    const log: string[] = [];
    const context = () => `${log.join('\n')}\n${app.transcript()}`;
    const expectServedBy = async (
      slot: number,
      key: string,
      options: Parameters<typeof send>[2] = {},
    ) => {
      const answer = await send(conn, key, options);
      log.push(`${options.path ?? '/'} for ${key} (slot ${slotOf(key)}) -> slot ${answer.slot}`);
      expect(answer.slot, context()).toBe(slot);
      expect(answer.pid, context()).toBe(pid.get(slot));
      return answer;
    };
    try {
      // The first request is routed by the primary, by its key.
      await expectServedBy(a, KEYS[0] as string);
      // Plain requests of every worker's clients (look-alikes without an EIO parameter too, and
      // a body) are served where the connection is.
      for (let n = 0; n < 3; n++) {
        for (const slot of ALL) {
          await expectServedBy(a, keyOf(slot, n));
          await expectServedBy(a, keyOf(slot, n), { path: '/socket.io/?transport=polling' });
          await expectServedBy(a, keyOf(slot, n), { path: `/api?x=EIO&n=${n}` });
        }
      }
      const body = randomBytes(100_000);
      const posted = await expectServedBy(a, keyOf(b), { body });
      expect(posted.bytes).toBe(body.length);
      expect(await workerCounts(port, 'handedBack'), context()).toEqual([0, 0, 0, 0]);

      // An engine.io request reaches its key's worker (relayed there: the connection stays) ...
      await expectServedBy(b, keyOf(b), {
        path: '/socket.io/?EIO=4&transport=polling&t=P1',
      });
      for (const slot of ALL) await expectServedBy(a, keyOf(slot, 1));
      // ... as does the next, for another worker; one for the connection's own is served here.
      await expectServedBy(c, keyOf(c), {
        path: '/socket.io/?EIO=4&transport=polling&sid=abc',
      });
      await expectServedBy(c, keyOf(c, 1), { path: '/chat/?EIO=4&transport=polling' });
      await expectServedBy(a, keyOf(a, 1), { path: '/socket.io/?EIO=4&transport=polling' });
      for (const slot of ALL) await expectServedBy(a, keyOf(slot, 2));
      // One connection throughout, never handed back; a's worker relayed the three requests.
      expect(conn.closed, context()).toBe(false);
      expect(await workerCounts(port, 'handedBack'), context()).toEqual([0, 0, 0, 0]);
      expect(await workerCounts(port, 'relayed'), context()).toEqual(
        ALL.map((slot) => (slot === a ? 3 : 0)),
      );
    } finally {
      conn.socket.destroy();
    }
  });
});

describe("scope: 'session-id' (proxy mode, sessionAffinity)", () => {
  it('requests carrying a slot-naming session id reach its worker; the others stay', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: String(ALL.length),
        KEEP_ALIVE_TIMEOUT: '10000',
        STICKY_OPTIONS: JSON.stringify({ proxy: true, seed: SEED, sessionAffinity: true }),
        STICKY_SCOPE: 'session-id',
      },
    });
    const port = app.port();
    const pid = pidsBySlot(app);
    /** A session id made by `slot`'s worker (app.genid()), asked on a fresh connection. */
    const idOf = async (slot: number): Promise<string> => {
      const r = await request({
        port,
        path: '/genid',
        headers: { 'x-forwarded-for': keyOf(slot) },
      });
      const reply = JSON.parse(r.text) as { slot: number; id: string };
      expect(reply.slot).toBe(slot);
      return reply.id;
    };
    const a = slotOf(KEYS[0] as string);
    const [b, c] = ALL.filter((s) => s !== a) as [number, number];
    const [idB, idC] = [await idOf(b), await idOf(c)];
    const conn = await Connection.open(port);
    const log: string[] = [];
    const context = () => `${log.join('\n')}\n${app.transcript()}`;
    const expectServedBy = async (slot: number, key: string, path = '/', cookie?: string) => {
      const answer = await send(conn, key, { path, headers: cookie ? { cookie } : {} });
      log.push(`${path} for ${key} (slot ${slotOf(key)}) cookie ${cookie} -> ${answer.slot}`);
      expect(answer.slot, context()).toBe(slot);
      expect(answer.pid, context()).toBe(pid.get(slot));
    };
    try {
      await expectServedBy(a, KEYS[0] as string);
      // No id, or one that names no slot: served where the connection is, whatever the key.
      for (const slot of ALL) await expectServedBy(a, keyOf(slot, 1));
      await expectServedBy(a, keyOf(b), '/', `connect.sid=${idB.slice(0, -1)}`);
      await expectServedBy(a, keyOf(c), '/', 'connect.sid=not-a-session-id');
      // The signed cookie of b's session, sent with a key of c: the session's worker.
      const signed = encodeURIComponent(`s:${idB}.signature`);
      await expectServedBy(b, keyOf(c), '/', `theme=dark; connect.sid=${signed}`);
      // Relayed: the connection stays where it was.
      for (const slot of ALL) await expectServedBy(a, keyOf(slot, 2));
      // The engine.io sid parameter counts too.
      await expectServedBy(c, keyOf(a), `/socket.io/?EIO=4&transport=polling&sid=${idC}`);
      // b's id in another cookie is no session id: it stays.
      await expectServedBy(a, keyOf(b), '/', `other.sid=${signed}`);
      expect(conn.closed, context()).toBe(false);
      expect(await workerCounts(port, 'handedBack'), context()).toEqual([0, 0, 0, 0]);
      expect(await workerCounts(port, 'relayed'), context()).toEqual(
        ALL.map((slot) => (slot === a ? 2 : 0)),
      );
    } finally {
      conn.socket.destroy();
    }
  });
});

describe('scope: negative control', () => {
  it('a scope that moves no engine.io request: the same clients get "Session ID unknown"', async ({
    annotate,
  }) => {
    const app = await startFixture({
      fixture: 'socketio-app.mjs',
      env: {
        ...APP_ENV,
        STICKY_OPTIONS: JSON.stringify({ seed: SEED }),
        STICKY_SCOPE: JSON.stringify({ url: '/nothing' }),
      },
    });
    const outcome = await runAll(app);
    await annotate(outcome.summary);
    const context = `${outcome.summary}\n${app.transcript()}`;
    // Requests of different clients shared connections, and stayed on them ...
    expect(outcome.agent.reusedForAnotherClient, context).toBeGreaterThan(0);
    expect(outcome.sharedConnections, context).toBeGreaterThan(0);
    // ... so they reached workers that do not hold their session.
    expect(outcome.sessionUnknown, context).toBeGreaterThan(0);
    expect(outcome.misrouted, context).toBeGreaterThan(0);
    expect(outcome.failed.length, context).toBeGreaterThan(0);
  });
});

describe('scope: a predicate (proxy mode)', () => {
  it('only requests the predicate picks (x-sticky: 1) move; the others stay', async () => {
    const app = await startIpApp(JSON.stringify({ header: 'x-sticky', is: '1', print: true }));
    const pid = pidsBySlot(app);
    const conn = await Connection.open(app.port());
    /** Each later request: its key, whether it carries x-sticky: 1 (or how), and its method. */
    const steps: { key: string; sticky?: Record<string, string>; post?: boolean }[] = [];
    for (let i = 0; i < 24; i++) {
      const key = KEYS[(i * 7 + 3) % KEYS.length] as string;
      if (i % 4 === 1) steps.push({ key, sticky: { 'x-sticky': '1' } });
      else if (i % 4 === 3) steps.push({ key, sticky: { 'X-STICKY': '1' }, post: i % 8 === 3 });
      else steps.push({ key, ...(i % 6 === 0 ? { sticky: { 'x-sticky': '0' } } : {}) });
    }
    const first = KEYS[0] as string;
    const log: string[] = [];
    const context = () => `${log.join('\n')}\n${app.transcript()}`;
    /** The worker the connection is on: it never moves (requests that must are relayed). */
    const on = slotOf(first);
    /** What the predicate must have been asked, by target (each is unique). */
    const asked = new Map<string, { method: string; header: string | null; answer: boolean }>();
    /** Later requests for another worker than the one the connection was on, that stayed. */
    let stayed = 0;
    let moved = 0;
    try {
      const firstAnswer = await send(conn, first, { path: '/?n=first' });
      expect(firstAnswer.slot, context()).toBe(on);
      for (const [i, step] of steps.entries()) {
        const path = `/?n=${i}`;
        const moves = step.sticky !== undefined && Object.values(step.sticky)[0] === '1';
        const serving = moves ? slotOf(step.key) : on;
        if (moves && serving !== on) moved++;
        else if (!moves && slotOf(step.key) !== on) stayed++;
        const answer = await send(conn, step.key, {
          path,
          headers: step.sticky ?? {},
          ...(step.post ? { body: Buffer.from(`body ${i}`) } : {}),
        });
        log.push(`${path} ${JSON.stringify(step)} (slot ${slotOf(step.key)}) -> ${answer.slot}`);
        expect(answer.slot, context()).toBe(serving);
        expect(answer.pid, context()).toBe(pid.get(serving));
        asked.set(path, {
          method: step.post ? 'POST' : 'GET',
          header: step.sticky ? (Object.values(step.sticky)[0] ?? null) : null,
          answer: moves,
        });
        // Asked by the worker the connection was on.
        await expect
          .poll(() => app.events('scopeCall', (l) => l.url === path).map((l) => l.pid))
          .toEqual([pid.get(on)]);
      }
      // The sequence did both: requests for other workers that stayed, and ones that moved.
      expect(stayed, context()).toBeGreaterThan(4);
      expect(moved, context()).toBeGreaterThan(2);
      expect(conn.closed, context()).toBe(false);
    } finally {
      conn.socket.destroy();
    }
    // The predicate saw each later request once, with its method, target and header; the first
    // request was the primary's to route, and no predicate was asked about it.
    const calls = app.events('scopeCall');
    expect(
      new Map(calls.map((l) => [l.url, { method: l.method, header: l.header, answer: l.answer }])),
      context(),
    ).toEqual(asked);
    expect(calls, context()).toHaveLength(steps.length);
  });
});

describe('scope: a predicate that throws', () => {
  it('does not take its worker down: the request is routed by its key, as under "all"', async () => {
    const app = await startFixture({ fixture: 'throwing-scope.mjs' });
    const conn = await Connection.open(app.port());
    const get = (key: string, extra = '') =>
      `GET / HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: ${key}\r\n${extra}\r\n`;
    const pick = rendezvous(7, 2);
    const keys = Array.from({ length: 40 }, (_, i) => `198.51.100.${i + 1}`);
    const first = keys.find((k) => pick(k, [0, 1]) === 0) as string;
    const other = keys.find((k) => pick(k, [0, 1]) === 1) as string;
    conn.socket.write(get(first));
    const a = await conn.response();
    expect(a.status).toBe(200);
    expect(JSON.parse(a.body.toString()).slot).toBe(0);
    // The predicate throws for this one; it is routed by its key (slot 1), not served here.
    conn.socket.write(get(other, 'X-Boom: 1\r\n'));
    const b = await conn.response();
    expect(b.status, app.transcript()).toBe(200);
    expect(JSON.parse(b.body.toString()).slot).toBe(1);
    // Without x-boom the predicate says "stay": served where the connection is (slot 0; the
    // request above was relayed, the connection did not move).
    conn.socket.write(get(other));
    expect(JSON.parse((await conn.response()).body.toString()).slot).toBe(0);
    expect(app.events('workerExit'), app.transcript()).toEqual([]);
  });
});
