import { setTimeout as delay } from 'node:timers/promises';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import {
  getWorker,
  loopbackSources,
  rawExchange,
  rawGet,
  request,
  type WorkerReply,
  workerOfFirst,
} from '../helpers/http.js';
import { establishedTcpSockets, isAlive } from '../helpers/proc.js';
import { freePort } from '../helpers/proxies.js';
import { hasTool } from '../helpers/system.js';

const SOURCES = loopbackSources(40);

/** One request of the load loop, as the client saw it. */
interface Attempt {
  readonly source: string;
  readonly startedAt: number;
  readonly endedAt: number;
  readonly reply?: WorkerReply;
  readonly error?: string;
}

async function attempt(port: number, source: string): Promise<Attempt> {
  const startedAt = Date.now();
  try {
    const reply = await request({ port, source, timeoutMs: 3_000 });
    const endedAt = Date.now();
    if (reply.status === 200 && reply.body !== undefined) {
      return { source, startedAt, endedAt, reply: reply.body };
    }
    return { source, startedAt, endedAt, error: `status ${reply.status} ${reply.text}` };
  } catch (err) {
    return { source, startedAt, endedAt: Date.now(), error: String(err) };
  }
}

function describeAttempts(attempts: readonly Attempt[], zero: number): string {
  return attempts
    .map((a) => {
      const at = `+${a.startedAt - zero}..+${a.endedAt - zero} ms`;
      const outcome = a.reply ? `slot ${a.reply.slot} pid ${a.reply.pid}` : `ERROR ${a.error}`;
      return `  ${a.source} ${at}: ${outcome}`;
    })
    .join('\n');
}

describe('IP mode when a worker dies', () => {
  afterEach(stopFixtures);

  it('moves only the killed worker’s clients, within 1 s, and brings them back to its respawned slot', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      // respawnDelay keeps the slot empty for a while, so the "served elsewhere" phase is visible.
      env: { WORKERS: '4', STICKY_OPTIONS: JSON.stringify({ seed: 7, respawnDelay: 1200 }) },
    });
    const port = app.port();
    const replies = await Promise.all(SOURCES.map((source) => getWorker({ port, source })));
    const home = new Map(SOURCES.map((source, i) => [source, replies[i] as WorkerReply]));

    // The victim is the worker with the most clients.
    const counts = new Map<number, number>();
    for (const r of home.values()) counts.set(r.slot, (counts.get(r.slot) ?? 0) + 1);
    const [victimSlot] = [...counts].sort((a, b) => b[1] - a[1])[0] as [number, number];
    const victimPid = [...home.values()].find((r) => r.slot === victimSlot)?.pid as number;
    const victims = SOURCES.filter((s) => home.get(s)?.slot === victimSlot);
    const others = SOURCES.filter((s) => home.get(s)?.slot !== victimSlot);

    // Rounds of one request per source start every 250 ms at the latest: a request that hangs
    // delays nobody, and every request is awaited before the assertions. The wait for the respawn
    // is bounded by time, never by a count of rounds: a round answered at once takes ~15 ms, so
    // 100 of them end about 1.3 s after the kill, before respawnDelay (1200 ms) plus a worker's
    // start-up is over.
    const attempts: Attempt[] = [];
    const rounds: Promise<unknown>[] = [];
    const linesBefore = app.received.length;
    let killedAt = 0;
    let respawn: { pid: number; seenAt: number } | undefined;
    let roundsAfterRespawn = 0;
    const loopStart = Date.now();
    let round = 0;
    for (; roundsAfterRespawn < 3; round++) {
      const batch = Promise.all(
        SOURCES.map((source) => attempt(port, source).then((a) => attempts.push(a))),
      );
      rounds.push(batch);
      if (round === 3) {
        await delay(2); // let the round's connections get under way, so some are in flight
        killedAt = Date.now();
        process.kill(victimPid, 'SIGKILL');
      }
      await Promise.race([batch, delay(250)]);
      if (respawn) roundsAfterRespawn++;
      const up = app.received.find(
        (r) =>
          r.index >= linesBefore &&
          r.line.event === 'workerUp' &&
          r.line.slot === victimSlot &&
          r.line.pid !== victimPid,
      );
      if (up && !respawn) respawn = { pid: Number(up.line.pid), seenAt: up.receivedAt };
      if (killedAt > 0 && Date.now() - killedAt > 6_000) break;
    }
    const loopEndedAt = Date.now();
    await Promise.all(rounds);
    attempts.sort((a, b) => a.startedAt - b.startedAt);

    const zero = killedAt;
    const what = [
      `victim: slot ${victimSlot} pid ${victimPid}; its clients ${victims.join(', ')}`,
      `killed at +${killedAt - loopStart} ms of the load loop; respawn ${respawn ? `pid ${respawn.pid} seen at +${respawn.seenAt - zero} ms` : 'never seen'}`,
      `the load loop ended at +${loopEndedAt - zero} ms, after ${round} rounds`,
      "the victim's clients' requests (times relative to the kill):",
      describeAttempts(
        attempts.filter((a) => victims.includes(a.source)),
        zero,
      ),
      app.transcript(),
    ].join('\n');

    // Clients of the surviving workers never notice anything.
    const disturbed = attempts.filter(
      (a) =>
        others.includes(a.source) &&
        (a.reply === undefined ||
          a.reply.slot !== home.get(a.source)?.slot ||
          a.reply.pid !== home.get(a.source)?.pid),
    );
    expect(
      describeAttempts(disturbed, zero),
      `clients of surviving workers were disturbed\n${what}`,
    ).toBe('');

    expect(
      respawn,
      `no workerUp for slot ${victimSlot} within 6 s of the kill\n${what}`,
    ).toBeDefined();
    const reborn = respawn as { pid: number; seenAt: number };
    const rebornLine = app.received.find(
      (r) => r.line.event === 'workerUp' && r.line.pid === reborn.pid,
    );
    // stats() counts the replacement as a crash's.
    expect(rebornLine?.line.slotStats, what).toMatchObject({
      generation: 2,
      restarts: 1,
      replaced: { crash: 1, unresponsive: 0, planned: 0, reload: 0 },
    });
    const victimAttempts = attempts.filter(
      (a) => victims.includes(a.source) && a.startedAt >= killedAt,
    );

    // Within 1 s of the kill, each of the victim's clients is served again, by another worker.
    for (const source of victims) {
      const served = victimAttempts.find(
        (a) => a.source === source && a.reply !== undefined && a.endedAt < killedAt + 1_000,
      );
      expect(served, `${source} was not served within 1 s of the kill\n${what}`).toBeDefined();
    }
    const firstSecond = victimAttempts.filter((a) => a.startedAt < killedAt + 1_000 && a.reply);
    expect(
      describeAttempts(
        firstSecond.filter((a) => a.reply?.slot === victimSlot),
        zero,
      ),
      `the dead slot served requests before its respawnDelay (1200 ms) was over\n${what}`,
    ).toBe('');

    // From 1 s after the kill on, no request of the victim's clients fails.
    const lateFailures = victimAttempts.filter((a) => a.startedAt >= killedAt + 1_000 && !a.reply);
    expect(
      describeAttempts(lateFailures, zero),
      `failed more than 1 s after the kill\n${what}`,
    ).toBe('');

    // While the slot is empty, each moved client sticks to one other worker, never the dead pid.
    for (const source of victims) {
      const gap = victimAttempts.filter(
        (a) => a.source === source && a.reply && a.startedAt < reborn.seenAt,
      );
      expect(
        gap.filter((a) => a.reply?.pid === victimPid),
        `${source} reached the dead pid\n${what}`,
      ).toEqual([]);
      const elsewhere = new Set(
        gap.filter((a) => a.reply?.slot !== victimSlot).map((a) => a.reply?.slot),
      );
      expect(
        elsewhere.size,
        `${source} wandered between workers while its slot was empty\n${what}`,
      ).toBeLessThanOrEqual(1);
    }

    // After the respawn every one of them is back in its slot, on the new pid.
    const back = victimAttempts.filter((a) => a.startedAt > reborn.seenAt);
    expect(back.length, what).toBeGreaterThanOrEqual(victims.length);
    const notBack = back.filter((a) => a.reply?.slot !== victimSlot || a.reply?.pid !== reborn.pid);
    expect(describeAttempts(notBack, zero), `not back on the respawned worker\n${what}`).toBe('');
    expect(reborn.pid).not.toBe(victimPid);

    const exit = app.events('workerExit', (l) => l.pid === victimPid)[0];
    expect(exit, what).toMatchObject({ slot: victimSlot, signal: 'SIGKILL', planned: false });
  });

  it.skipIf(!hasTool('ss'))(
    'serves the connections a worker never took before it died elsewhere (they used to hang: Node keeps unacknowledged handles forever)',
    async () => {
      const app = await startFixture({
        fixture: 'ip-app.mjs',
        // This test kills the blocked worker itself: the primary's liveness check must not first.
        env: {
          WORKERS: '4',
          STICKY_OPTIONS: JSON.stringify({
            seed: 7,
            respawnDelay: 1200,
            unresponsiveTimeout: 60_000,
          }),
        },
      });
      const port = app.port();
      const {
        slot: victimSlot,
        pid: victimPid,
        clients: victims,
      } = await workerOfFirst(port, SOURCES);

      // Block the victim's event loop: from now on it acknowledges no handed-off socket.
      const from = app.received.length;
      const blocking = request({
        port,
        source: victims[0] as string,
        path: '/block?ms=5000',
        timeoutMs: 8_000,
      }).catch((err: unknown) => err);
      await app.waitFor('blockStart', { from });

      const stuck = victims.map((source) => attempt(port, source));
      // Once the primary holds every one of these connections it has handed them all to the
      // blocked worker (accept and handoff happen in one tick): they wait for an acknowledgement.
      await vi.waitFor(
        async () => {
          const held = (await establishedTcpSockets()).filter(
            (s) =>
              s.localPort === port &&
              victims.some((v) => s.peer.startsWith(`${v}:`)) &&
              s.pids.includes(app.pid),
          );
          if (held.length < victims.length) {
            throw new Error(`primary holds ${held.length} of ${victims.length} connections`);
          }
        },
        { timeout: 5_000, interval: 20 },
      );
      const killedAt = Date.now();
      process.kill(victimPid, 'SIGKILL');

      const outcomes = await Promise.all(stuck);
      await blocking;
      const what = `victim slot ${victimSlot} pid ${victimPid}\n${describeAttempts(outcomes, killedAt)}\n${app.transcript()}`;
      const notServed = outcomes.filter(
        (a) => a.reply === undefined || a.reply.slot === victimSlot || a.reply.pid === victimPid,
      );
      expect(
        describeAttempts(notServed, killedAt),
        `connections the dead worker never took were not served elsewhere\n${what}`,
      ).toBe('');
    },
  );
});

describe('IP mode with no ready worker', () => {
  afterEach(stopFixtures);

  it('answers 503 and closes the connection after pendingTimeout, and backs off respawns exponentially', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      until: 'listening',
      env: {
        WORKERS: '2',
        FACTORY: 'exit',
        STICKY_OPTIONS: JSON.stringify({
          pendingTimeout: 300,
          respawnDelay: 50,
          maxRespawnDelay: 400,
        }),
      },
    });
    const port = app.port();

    const started = Date.now();
    const exchange = await rawExchange({
      port,
      source: '127.0.0.9',
      send: rawGet('/'),
      timeoutMs: 4_000,
    });
    const elapsed = Date.now() - started;
    const what = `after ${elapsed} ms: ${exchange.ending} ${exchange.error ?? ''}, received ${JSON.stringify(exchange.data)}\n${app.transcript()}`;
    expect(exchange.data, what).toMatch(/^HTTP\/1\.[01] 503 /);
    expect(exchange.ending, `the connection was not closed by the server\n${what}`).toMatch(
      /^server-/,
    );
    // The default pendingTimeout is 5000 ms: an answer this early shows the option is honoured.
    expect(elapsed, what).toBeLessThan(3_000);

    // Both slots crash-loop; wait until one has been respawned five times.
    await app.waitFor('workerRespawn', {
      match: (l) => app.events('workerRespawn', (r) => r.slot === l.slot).length >= 5,
      timeoutMs: 15_000,
    });
    const respawns = app.events('workerRespawn');
    const bySlot = new Map<unknown, { attempt: number; delay: number }[]>();
    for (const r of respawns) {
      const list = bySlot.get(r.slot) ?? [];
      list.push({ attempt: Number(r.attempt), delay: Number(r.delay) });
      bySlot.set(r.slot, list);
    }
    const backoff = `respawns by slot: ${JSON.stringify([...bySlot])}\n${app.transcript()}`;
    for (const list of bySlot.values()) {
      const delays = list.map((r) => r.delay);
      const attempts = list.map((r) => r.attempt);
      expect(
        delays.every((d, i) => i === 0 || d >= (delays[i - 1] as number)),
        `delays decrease\n${backoff}`,
      ).toBe(true);
      expect(Math.max(...delays), `delay above maxRespawnDelay\n${backoff}`).toBeLessThanOrEqual(
        400,
      );
      expect(Math.min(...delays), `delay below respawnDelay\n${backoff}`).toBeGreaterThanOrEqual(
        50,
      );
      expect(
        attempts.every((n, i) => i === 0 || n > (attempts[i - 1] as number)),
        `attempt numbers do not increase\n${backoff}`,
      ).toBe(true);
    }
    const longest = [...bySlot.values()].find((list) => list.length >= 5) ?? [];
    const delays = longest.map((r) => r.delay);
    expect(delays[delays.length - 1], `backoff never reached the 400 ms cap\n${backoff}`).toBe(400);
    expect(new Set(delays).size, `delays never grew\n${backoff}`).toBeGreaterThanOrEqual(3);

    // The primary stays up and keeps answering.
    expect(isAlive(app.pid), backoff).toBe(true);
    expect(app.exitStatus, backoff).toBeUndefined();
    expect(app.events('ready'), backoff).toEqual([]);
    const again = await rawExchange({
      port,
      source: '127.0.0.10',
      send: rawGet('/'),
      timeoutMs: 4_000,
    });
    expect(again.data, `second request: ${JSON.stringify(again)}\n${backoff}`).toMatch(
      /^HTTP\/1\.[01] 503 /,
    );
  });

  // A factory that throws the same error at every start ends in the primary's `error` instead
  // (test/integration/factory-mistakes.test.ts); this one's error differs each time.
  it('answers 503 while the factory throws, and the primary stays up', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      until: 'listening',
      env: {
        WORKERS: '1',
        FACTORY: 'throw-pid',
        STICKY_OPTIONS: JSON.stringify({
          pendingTimeout: 300,
          respawnDelay: 50,
          maxRespawnDelay: 400,
        }),
      },
    });
    await app.waitFor('workerStart');
    const exchange = await rawExchange({
      port: app.port(),
      source: '127.0.0.11',
      send: rawGet('/'),
      timeoutMs: 4_000,
    });
    const what = `${exchange.ending} ${exchange.error ?? ''}, received ${JSON.stringify(exchange.data)}\n${app.transcript()}`;
    expect(exchange.data, what).toMatch(/^HTTP\/1\.[01] 503 /);
    expect(exchange.ending, what).toMatch(/^server-/);
    expect(isAlive(app.pid), what).toBe(true);
    expect(app.events('ready'), what).toEqual([]);
  });
});

describe('IP mode beside other handle traffic', () => {
  afterEach(stopFixtures);

  it('loses no connection when workers also listen on a port of their own (cluster round-robin passes its handles on the same channel)', async () => {
    const extra = await freePort();
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', EXTRA_PORT: String(extra) },
    });
    await app.waitFor('extraListening');
    const port = app.port();
    const sources = loopbackSources(20);
    const failures: string[] = [];
    let done = 0;
    for (let round = 0; round < 15; round++) {
      const results = await Promise.allSettled(
        sources.flatMap((source) => [
          request({ port, source, timeoutMs: 3_000 }),
          request({ port: extra, source, timeoutMs: 3_000 }),
        ]),
      );
      for (const r of results) {
        if (r.status === 'rejected') failures.push(String(r.reason));
        else if (r.value.status !== 200) failures.push(`status ${r.value.status}`);
        else done++;
      }
    }
    expect(failures, `${done} succeeded\n${app.transcript()}`).toEqual([]);
  });
});
