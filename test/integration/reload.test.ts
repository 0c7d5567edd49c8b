// Rolling reload (issue 17): `reload()` and the reload signal replace every worker, one slot at a
// time, with new processes that run the code on disk now, while clients keep their slot and no
// request fails; a new worker that fails stops the reload and the old ones keep serving.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import { type Answer, type LoadResult, startLoad } from '../helpers/load.js';
import { waitUntilGone } from '../helpers/proc.js';

let dir = '';
beforeEach(() => {
  dir = mkdtempSync(path.join(os.tmpdir(), 'sticky-mesh-reload-'));
});
afterEach(async () => {
  await stopFixtures();
  rmSync(dir, { recursive: true, force: true });
});

/** A 4-worker cluster whose workers say which VERSION_FILE text they started with. */
async function cluster(options: Record<string, unknown> = {}): Promise<{
  app: FixtureProcess;
  version: (text: string) => void;
  factory: (text: string) => void;
}> {
  const versionFile = path.join(dir, 'version');
  const factoryFile = path.join(dir, 'factory');
  writeFileSync(versionFile, 'v1');
  writeFileSync(factoryFile, '');
  const app = await startFixture({
    fixture: 'ip-app.mjs',
    env: {
      WORKERS: '4',
      VERSION_FILE: versionFile,
      FACTORY_FILE: factoryFile,
      RELOAD_ON_SIGNAL: 'SIGUSR2',
      STICKY_OPTIONS: JSON.stringify({ seed: 7, shutdownTimeout: 8000, ...options }),
    },
  });
  return {
    app,
    version: (text) => writeFileSync(versionFile, text),
    factory: (text) => writeFileSync(factoryFile, text),
  };
}

/** Every source's slot, from answers in [from, to): one slot per source, or the list of them. */
function slotsBySource(
  answers: readonly Answer[],
  from: number,
  to: number,
): Map<string, number[]> {
  const slots = new Map<string, Set<number>>();
  for (const a of answers) {
    if (a.at < from || a.at >= to) continue;
    const set = slots.get(a.source) ?? new Set<number>();
    set.add(a.slot);
    slots.set(a.source, set);
  }
  return new Map([...slots].map(([source, set]) => [source, [...set].sort()]));
}

function describeLoad(name: string, r: LoadResult): string {
  return `${name}: ${r.requests} answered; ${r.summary}`;
}

describe('rolling reload', () => {
  it('replaces every worker under keep-alive and one-connection-per-request load: no request fails, every client keeps its slot, the new workers run the new code', async () => {
    const { app, version } = await cluster();
    const port = app.port();
    const before = app.workerPids();
    expect(before).toHaveLength(4);
    const keepAlive = startLoad({
      port,
      sources: loopbackSources(24).slice(0, 12),
      keepAlive: true,
      maxSeconds: 90,
    });
    const oneShot = startLoad({
      port,
      sources: loopbackSources(24).slice(12),
      keepAlive: false,
      maxSeconds: 90,
    });
    await new Promise((r) => setTimeout(r, 1000));
    const reloadAt = Date.now();
    version('v2');
    const from = app.received.length;
    process.kill(app.pid, 'SIGUSR2');
    const done = await app.waitFor('reloadDone', { from, timeoutMs: 60_000 });
    const doneAt = Date.now();
    await new Promise((r) => setTimeout(r, 1000));
    const [ka, os1] = await Promise.all([keepAlive.stop(), oneShot.stop()]);
    const what = `${describeLoad('keep-alive', ka)}\n${describeLoad('one-shot', os1)}\n${app.transcript()}`;

    // Nothing failed, on either kind of connection.
    for (const r of [ka, os1]) {
      expect(r.errors, what).toBe(0);
      expect(r.timeouts, what).toBe(0);
      expect(r.non2xx, what).toBe(0);
      expect(r.requests, what).toBeGreaterThan(100);
    }
    // Both reload() calls got the same promise; the report names 4 new workers, one per slot.
    expect(app.events('reloadCalled')[0], what).toMatchObject({ same: true });
    const report = done.line.report as {
      slots: {
        slot: number;
        pid: number;
        previousPid: number;
        generation: number;
        reloaded: boolean;
      }[];
    };
    expect(report.slots.map((s) => s.slot)).toEqual([0, 1, 2, 3]);
    for (const s of report.slots) {
      expect(s, what).toMatchObject({ reloaded: true, generation: 2 });
      expect(before, what).toContain(s.previousPid);
      expect(before, what).not.toContain(s.pid);
    }
    // One slot at a time: each slot's old worker was gone before the next slot's new one started.
    const steps = app.events('reload').map((l) => `${l.step}${l.slot ?? ''}`);
    expect(steps, what).toEqual([
      'start',
      ...[0, 1, 2, 3].flatMap((s) => [`fork${s}`, `switch${s}`, `drained${s}`]),
      'done',
    ]);
    // Every client is answered by the same slot before and after, by the new worker after.
    const answers = [...keepAlive.answers, ...oneShot.answers];
    // Answers are timed when this process reads them, and it may read the fixture's line
    // before an answer a replaced worker sent just before it exited: half a second on, every
    // answer read was sent after the reload.
    const settledAt = doneAt + 500;
    const beforeSlots = slotsBySource(answers, 0, reloadAt);
    const afterSlots = slotsBySource(answers, settledAt, Number.POSITIVE_INFINITY);
    expect(beforeSlots.size, what).toBe(24);
    expect(afterSlots, what).toEqual(beforeSlots);
    for (const slots of beforeSlots.values()) expect(slots, what).toHaveLength(1);
    const newPids = new Set(report.slots.map((s) => s.pid));
    const late = answers.filter((a) => a.at >= settledAt);
    expect(late.length, what).toBeGreaterThan(0);
    expect(
      late.filter((a) => !newPids.has(a.pid)),
      what,
    ).toEqual([]);
    // The load reached every slot, and every slot's new worker served it.
    expect(new Set(late.map((a) => a.slot)), what).toEqual(new Set([0, 1, 2, 3]));
    // The new workers run what is on disk now.
    const reply = await fetch(`http://127.0.0.1:${port}/`).then((r) => r.json());
    expect(reply, what).toMatchObject({ version: 'v2' });
  }, 90_000);

  it('stops at a new worker whose factory throws: the promise rejects with the report, the old workers keep serving, no request fails', async () => {
    const { app, factory } = await cluster();
    const port = app.port();
    const before = app.workerPids();
    const load = startLoad({
      port,
      sources: loopbackSources(8),
      keepAlive: true,
      maxSeconds: 60,
    });
    await new Promise((r) => setTimeout(r, 500));
    factory('throw');
    const from = app.received.length;
    process.kill(app.pid, 'SIGUSR2');
    const failed = await app.waitFor('reloadFailed', { from, timeoutMs: 30_000 });
    await new Promise((r) => setTimeout(r, 500));
    const r = await load.stop();
    const what = `${describeLoad('load', r)}\n${app.transcript()}`;
    expect(failed.line, what).toMatchObject({
      code: 'ERR_STICKY_RELOAD_FAILED',
      report: { failed: { slot: 0 } },
    });
    expect(String(failed.line.message), what).toMatch(/slot 0.*fixture factory fails on purpose/);
    const report = failed.line.report as { slots: { pid: number; reloaded: boolean }[] };
    expect(
      report.slots.map((s) => s.pid),
      what,
    ).toEqual(expect.arrayContaining(before));
    expect(
      report.slots.every((s) => !s.reloaded),
      what,
    ).toBe(true);
    expect(r.errors + r.timeouts + r.non2xx, what).toBe(0);
    // Still the same four workers, each in its slot.
    const pidsAfter = new Set(r.answers.map((a) => a.pid));
    for (const pid of pidsAfter) expect(before, what).toContain(pid);
    expect(
      app.events('reload').map((l) => l.step),
      what,
    ).toEqual(['start', 'fork', 'failed']);
    // The failed worker was not a crash of the slot: no respawn, no restart counted.
    expect(app.events('workerRespawn'), what).toEqual([]);
  }, 60_000);

  it('treats a new worker that never becomes ready as a failure (never "ready by timeout")', async () => {
    const { app, factory } = await cluster({ readyTimeout: 1500 });
    const before = app.workerPids();
    factory('hang');
    const from = app.received.length;
    process.kill(app.pid, 'SIGHUP');
    const failed = await app.waitFor('reload', {
      from,
      match: (l) => l.step === 'failed',
      timeoutMs: 10_000,
    });
    const what = app.transcript();
    expect(String(failed.line.reason), what).toMatch(/not ready within readyTimeout \(1500 ms\)/);
    const reply = (await fetch(`http://127.0.0.1:${app.port()}/`).then((r) => r.json())) as {
      pid: number;
    };
    expect(before, what).toContain(reply.pid);
    // Fixed on disk, the next reload goes through.
    factory('');
    const again = app.received.length;
    process.kill(app.pid, 'SIGHUP');
    await app.waitFor('reload', {
      from: again,
      match: (l) => l.step === 'done',
      timeoutMs: 30_000,
    });
  }, 60_000);
});

describe('what a replaced worker closes, and when', () => {
  /** Opens a connection from `source` and upgrades it (the fixture's `Upgrade: echo`). */
  function upgraded(
    port: number,
    source: string,
  ): Promise<{ socket: net.Socket; closed: Promise<number> }> {
    return new Promise((resolve, reject) => {
      const socket = net.connect({ port, host: '127.0.0.1', localAddress: source });
      const closed = new Promise<number>((done) => socket.once('close', () => done(Date.now())));
      socket.on('error', () => {});
      socket.write('GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\n');
      let seen = '';
      const onData = (chunk: Buffer) => {
        seen += chunk.toString('latin1');
        if (!seen.includes('\r\n\r\n')) return;
        socket.off('data', onData);
        if (seen.startsWith('HTTP/1.1 101')) resolve({ socket, closed });
        else reject(new Error(`no upgrade: ${seen.slice(0, 80)}`));
      };
      socket.on('data', onData);
      socket.once('close', () => reject(new Error('closed before the upgrade')));
    });
  }

  it('ends upgraded connections at moments spread over closeJitter, not all at once', async () => {
    const JITTER = 2000;
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: {
        WORKERS: '2',
        UPGRADE: 'echo',
        STICKY_OPTIONS: JSON.stringify({ seed: 7, shutdownTimeout: 8000, closeJitter: JITTER }),
      },
    });
    const port = app.port();
    const conns = await Promise.all(Array.from({ length: 12 }, () => upgraded(port, '127.0.0.9')));
    const from = app.received.length;
    process.kill(app.pid, 'SIGHUP');
    const closedAt = await Promise.all(conns.map((c) => c.closed));
    await app.waitFor('reload', { from, match: (l) => l.step === 'done', timeoutMs: 30_000 });
    const switches = app.received.filter(
      (r) => r.index >= from && r.line.event === 'reload' && r.line.step === 'switch',
    );
    const what = `closed at ${closedAt.map((t) => t - (switches[0]?.receivedAt ?? 0)).join(', ')} ms after the first switch\n${app.transcript()}`;
    // They all lived on one slot; they closed after its switch, within the jitter (and slack).
    const since = closedAt.map((t) => Math.min(...switches.map((s) => Math.abs(t - s.receivedAt))));
    expect(Math.max(...since), what).toBeLessThan(JITTER + 500);
    const spread = Math.max(...closedAt) - Math.min(...closedAt);
    expect(spread, what).toBeGreaterThan(JITTER / 4);
    for (const c of conns) c.socket.destroy();
  }, 60_000);

  it('closes an idle keep-alive connection once quiet, without waiting for shutdownTimeout', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ seed: 7, shutdownTimeout: 8000 }) },
    });
    const port = app.port();
    const agent = new http.Agent({ keepAlive: true, localAddress: '127.0.0.9' });
    const first = await request({ port, source: '127.0.0.9', agent });
    let closedAt = 0;
    first.socket.once('close', () => {
      closedAt = Date.now();
    });
    const from = app.received.length;
    process.kill(app.pid, 'SIGHUP');
    await app.waitFor('reload', { from, match: (l) => l.step === 'done', timeoutMs: 30_000 });
    const sw = app.received.find(
      (r) =>
        r.index >= from &&
        r.line.event === 'reload' &&
        r.line.step === 'switch' &&
        r.line.slot === first.body?.slot,
    );
    const drained = app.received.find(
      (r) =>
        r.index >= from &&
        r.line.event === 'reload' &&
        r.line.step === 'drained' &&
        r.line.slot === first.body?.slot,
    );
    const what = app.transcript();
    expect(closedAt, what).toBeGreaterThan(0);
    // Quiet for a second, then closed: the slot drained long before shutdownTimeout (8 s).
    expect((drained?.receivedAt ?? 0) - (sw?.receivedAt ?? 0), what).toBeLessThan(3000);
    expect(closedAt - (sw?.receivedAt ?? 0), what).toBeGreaterThan(500);
    // The client's next request goes to the slot's new worker.
    const next = await request({ port, source: '127.0.0.9', agent });
    expect(next.body, what).toMatchObject({ slot: first.body?.slot, pid: sw?.line.pid });
    agent.destroy();
  }, 60_000);
});

describe('rolling reload in proxy mode', () => {
  it('keep-alive upstream connections carrying many clients (relayed between workers): no request fails, the new workers serve after', async () => {
    const { app } = await cluster({ proxy: true });
    const port = app.port();
    const before = app.workerPids();
    // Each connection cycles through 16 clients' addresses: most requests belong to another
    // worker than the one before them on their connection, and are relayed.
    const cycle = Array.from({ length: 16 }, (_, i) => ({
      'x-forwarded-for': `198.51.100.${i + 1}`,
    }));
    const load = startLoad({
      port,
      sources: loopbackSources(8),
      keepAlive: true,
      maxSeconds: 90,
      cycle,
    });
    await new Promise((r) => setTimeout(r, 800));
    const from = app.received.length;
    process.kill(app.pid, 'SIGHUP');
    await app.waitFor('reload', { from, match: (l) => l.step === 'done', timeoutMs: 60_000 });
    const doneAt = Date.now();
    await new Promise((r) => setTimeout(r, 800));
    const r = await load.stop();
    const what = `${describeLoad('load', r)}\n${app.transcript()}`;
    expect(r.errors + r.timeouts + r.non2xx, what).toBe(0);
    expect(r.requests, what).toBeGreaterThan(100);
    // Timed when read here: an answer a replaced worker sent just before it exited may be read
    // after the fixture's line; 400 ms on, every answer read was sent after the reload.
    const late = r.answers.filter((a) => a.at > doneAt + 400);
    expect(late.length, what).toBeGreaterThan(0);
    for (const a of late) expect(before, what).not.toContain(a.pid);
    expect(new Set(late.map((a) => a.slot)), what).toEqual(new Set([0, 1, 2, 3]));
  }, 90_000);
});

describe('a shutdown during a rolling reload', () => {
  it('ends the reload, drains every worker (old, new and the one starting) and the primary exits', async () => {
    const { app } = await cluster({ shutdownTimeout: 3000 });
    const from = app.received.length;
    process.kill(app.pid, 'SIGUSR2');
    // In the middle of it: the first slot has switched, its old worker drains.
    await app.waitFor('reload', { from, match: (l) => l.step === 'switch', timeoutMs: 20_000 });
    process.kill(app.pid, 'SIGTERM');
    const exit = await app.waitForExit(15_000);
    const what = app.transcript();
    expect(exit.signal ?? exit.code, what).toBe('SIGTERM');
    // The reload did not pretend to finish.
    expect(app.events('reloadDone'), what).toEqual([]);
    expect(app.events('reloadFailed')[0], what).toMatchObject({ code: 'ERR_STICKY_RELOAD_FAILED' });
    // Nothing is left running.
    const left = await waitUntilGone(app.pidsSeen(), 5_000);
    expect(left, what).toEqual([]);
  }, 60_000);
});
