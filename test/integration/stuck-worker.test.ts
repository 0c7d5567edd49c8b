// A worker whose event loop is blocked keeps its process and its IPC channel: without liveness
// checks the primary kept routing to it, and its clients' connections queued in the primary
// without bound (issue 14, item 4). Here: the primary pings every worker; one silent for
// `unresponsiveTimeout`, or holding `maxQueuedHandles` connections it has not taken, is taken
// out of routing, its queued connections are served elsewhere, and it is replaced.
import { afterEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import {
  getWorker,
  loopbackSources,
  request,
  type WorkerReply,
  workerOfFirst,
} from '../helpers/http.js';

const SOURCES = loopbackSources(40);

afterEach(stopFixtures);

interface Outcome {
  source: string;
  reply?: WorkerReply;
  error?: string;
}

async function get(port: number, source: string): Promise<Outcome> {
  try {
    const r = await request({ port, source, timeoutMs: 10_000 });
    return r.status === 200 && r.body
      ? { source, reply: r.body }
      : { source, error: `status ${r.status}` };
  } catch (err) {
    return { source, error: String(err) };
  }
}

/** A 4-worker cluster, a victim slot, the sources it serves, and its worker blocked for 30 s. */
async function blockedVictim(options: Record<string, unknown>): Promise<{
  app: FixtureProcess;
  port: number;
  victimSlot: number;
  victimPid: number;
  victims: string[];
  blockedAt: number;
}> {
  const app = await startFixture({
    fixture: 'ip-app.mjs',
    env: { WORKERS: '4', STICKY_OPTIONS: JSON.stringify({ seed: 7, ...options }) },
  });
  const port = app.port();
  const { slot: victimSlot, pid: victimPid, clients: victims } = await workerOfFirst(port, SOURCES);
  const from = app.received.length;
  // The reply never comes: the worker is killed while it blocks.
  void request({
    port,
    source: victims[0] as string,
    path: '/block?ms=30000',
    timeoutMs: 40_000,
  }).catch(() => undefined);
  await app.waitFor('blockStart', { from });
  return { app, port, victimSlot, victimPid, victims, blockedAt: Date.now() };
}

describe('a worker whose event loop is blocked', () => {
  it('is taken out after unresponsiveTimeout: its clients are served elsewhere, and it is replaced', async () => {
    const { app, port, victimSlot, victimPid, victims, blockedAt } = await blockedVictim({
      unresponsiveTimeout: 1000,
      respawnDelay: 100,
    });
    const from = app.received.length;
    // Sent to the blocked worker (still routed to): they wait in the primary for it.
    const outcomes = await Promise.all(victims.map((source) => get(port, source)));
    const what = `victim slot ${victimSlot} pid ${victimPid}\n${JSON.stringify(outcomes)}\n${app.transcript()}`;
    const out = await app.waitFor('workerUnresponsive', { from: 0, timeoutMs: 5_000 });
    expect(out.line, what).toMatchObject({ slot: victimSlot, pid: victimPid, reason: 'ping' });
    // Taken out within unresponsiveTimeout plus a ping interval (and some scheduling slack).
    expect(out.receivedAt - blockedAt, what).toBeLessThan(1000 + 200 + 1000);
    expect(Number(out.line.silentFor), what).toBeGreaterThanOrEqual(1000);
    const failed = outcomes.filter(
      (o) => !o.reply || o.reply.slot === victimSlot || o.reply.pid === victimPid,
    );
    expect(failed, what).toEqual([]);
    const exit = await app.waitFor('workerExit', { match: (l) => l.pid === victimPid });
    expect(exit.line, what).toMatchObject({ slot: victimSlot, signal: 'SIGKILL', planned: false });
    // A new worker in the victim's slot, and its clients come back to it.
    const up = await app.waitFor('workerUp', {
      from,
      match: (l) => l.slot === victimSlot && l.pid !== victimPid,
    });
    const back = await getWorker({ port, source: victims[0] as string });
    expect(back, what).toMatchObject({ slot: victimSlot, pid: up.line.pid });
    // stats() says why: the slot's second generation replaced an unresponsive worker.
    expect(up.line.slotStats, what).toMatchObject({
      generation: 2,
      restarts: 1,
      replaced: { crash: 0, unresponsive: 1, planned: 0, reload: 0 },
    });
  });

  it('is taken out once maxQueuedHandles connections wait for it, long before any ping timeout', async () => {
    const { app, port, victimSlot, victimPid, victims } = await blockedVictim({
      unresponsiveTimeout: 60_000,
      maxQueuedHandles: 3,
    });
    expect(victims.length).toBeGreaterThan(3);
    const outcomes = await Promise.all(victims.map((source) => get(port, source)));
    const what = `victim slot ${victimSlot} pid ${victimPid}\n${JSON.stringify(outcomes)}\n${app.transcript()}`;
    const out = await app.waitFor('workerUnresponsive', { timeoutMs: 5_000 });
    expect(out.line, what).toMatchObject({ slot: victimSlot, pid: victimPid, reason: 'queue' });
    const failed = outcomes.filter(
      (o) => !o.reply || o.reply.slot === victimSlot || o.reply.pid === victimPid,
    );
    expect(failed, what).toEqual([]);
  });

  it('a busy but answering worker is left alone (pings are answered between requests)', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ unresponsiveTimeout: 500 }) },
    });
    const port = app.port();
    // 40 rounds of requests over ~2 s, each worker blocking 100 ms at a time.
    for (let round = 0; round < 10; round++) {
      await Promise.all(
        SOURCES.slice(0, 4).map((source) => request({ port, source, path: '/block?ms=100' })),
      );
    }
    expect(app.events('workerUnresponsive')).toEqual([]);
    expect(app.events('workerExit')).toEqual([]);
  });
});

describe("the primary's own event loop blocked", () => {
  // A long garbage collection of a large replica stops the primary itself: the workers' pongs
  // then wait unread in their channels, and the first liveness round after it must not take
  // that for their silence (a million sessions once had every worker replaced this way).
  it('replaces no worker: their answers were waiting unread, and the next round reads them', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        BLOCK_PRIMARY_ON_SIGNAL: 'SIGUSR2',
        BLOCK_MS: '3000',
        STICKY_OPTIONS: JSON.stringify({ seed: 7, unresponsiveTimeout: 1000 }),
      },
    });
    const port = app.port();
    const before = await getWorker({ port, source: SOURCES[0] as string });
    const from = app.received.length;
    process.kill(app.pid, 'SIGUSR2');
    await app.waitFor('primaryBlockEnd', { from, timeoutMs: 10_000 });
    // Several liveness rounds after it (one every 200 ms).
    await new Promise((resolve) => setTimeout(resolve, 1500));
    const replaced = app.received
      .slice(from)
      .filter((r) => r.line.event === 'workerUnresponsive' || r.line.event === 'workerExit');
    expect(replaced, app.transcript()).toEqual([]);
    const after = await getWorker({ port, source: SOURCES[0] as string });
    expect(after, app.transcript()).toMatchObject({ slot: before?.slot, pid: before?.pid });
  });
});
