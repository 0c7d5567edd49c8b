// Rolling reload (issue 17): `reload()` and the reload signal replace every worker, one slot at a
// time, with new processes that run the code on disk now, while clients keep their slot and no
// request fails; a new worker that fails stops the reload and the old ones keep serving.
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { afterEach, beforeEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources } from '../helpers/http.js';
import { type Answer, type LoadResult, startLoad } from '../helpers/load.js';

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
    const beforeSlots = slotsBySource(answers, 0, reloadAt);
    const afterSlots = slotsBySource(answers, doneAt, Number.POSITIVE_INFINITY);
    expect(beforeSlots.size, what).toBe(24);
    expect(afterSlots, what).toEqual(beforeSlots);
    for (const slots of beforeSlots.values()) expect(slots, what).toHaveLength(1);
    const newPids = new Set(report.slots.map((s) => s.pid));
    const late = answers.filter((a) => a.at >= doneAt);
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
