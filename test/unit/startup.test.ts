// A factory that fails the same way every time was respawned with backoff for ever, and the
// primary never said anything (issue 19, finding 2). StartupWatch decides when respawning cannot
// help: every slot failed the same way STARTUP_ATTEMPTS times in a row, no worker ever ready.
import { describe, expect, it } from 'vitest';
import { StickyMeshError } from '../../src/errors.js';
import { STARTUP_ATTEMPTS, type StartFailure, StartupWatch } from '../../src/master/startup.js';

const thrown = { name: 'Error', message: 'wrong option', stack: 'Error: wrong option\n    at f' };
const wrongOption: StartFailure = {
  reason: 'sticky-mesh: the server factory failed: Error: wrong option',
  thrown,
};

/** `slot`'s worker reports `failure` (if any) and exits; what exited() returned. */
function fail(watch: StartupWatch, slot: number, failure?: StartFailure) {
  if (failure) watch.reported(slot, failure);
  return watch.exited(slot);
}

describe('StartupWatch', () => {
  it('gives up once every slot failed the same way STARTUP_ATTEMPTS times in a row', () => {
    expect(STARTUP_ATTEMPTS).toBe(3);
    const watch = new StartupWatch(2);
    const seen: (StickyMeshError | undefined)[] = [];
    for (let round = 0; round < STARTUP_ATTEMPTS; round++) {
      seen.push(fail(watch, 0, wrongOption), fail(watch, 1, wrongOption));
    }
    expect(seen.slice(0, -1)).toEqual(Array(2 * STARTUP_ATTEMPTS - 1).fill(undefined));
    const err = seen.at(-1);
    expect(err).toBeInstanceOf(StickyMeshError);
    expect(err?.code).toBe('ERR_STICKY_STARTUP_FAILED');
    expect(err?.message).toBe(
      'sticky-mesh: no worker can start (the same failure 3 times in a row in each of the 2 ' +
        'slots; not respawning): the server factory failed: Error: wrong option',
    );
  });

  it("carries the worker's error as cause, and what the factory threw with the worker's stack", () => {
    const watch = new StartupWatch(1);
    const failure: StartFailure = {
      reason: 'sticky-mesh: the server factory failed: Error: no redis here',
      thrown: {
        name: 'InvalidOptionError',
        message: 'no redis here',
        code: 'ERR_STICKY_INVALID_OPTION',
        stack: 'InvalidOptionError: no redis here\n    at factory (app.mjs:3:9)',
      },
    };
    let err: StickyMeshError | undefined;
    for (let i = 0; i < STARTUP_ATTEMPTS; i++) err = fail(watch, 0, failure);
    const cause = err?.cause as StickyMeshError;
    expect(cause).toBeInstanceOf(StickyMeshError);
    expect(cause.code).toBe('ERR_STICKY_FACTORY_FAILED');
    expect(cause.message).toBe(failure.reason);
    const thrown = cause.cause as Error & { code?: string };
    expect(thrown).toBeInstanceOf(Error);
    expect([thrown.name, thrown.message, thrown.code, thrown.stack]).toEqual([
      'InvalidOptionError',
      'no redis here',
      'ERR_STICKY_INVALID_OPTION',
      'InvalidOptionError: no redis here\n    at factory (app.mjs:3:9)',
    ]);
    // One line: its frames here would be the pool's, not the application's.
    expect(err?.stack).toBe(`StickyMeshError: ${err?.message}`);
  });

  it('a failure not reported (a crash, process.exit, readyTimeout) ends the streak', () => {
    const watch = new StartupWatch(1);
    expect(fail(watch, 0, wrongOption)).toBeUndefined();
    expect(fail(watch, 0, wrongOption)).toBeUndefined();
    expect(fail(watch, 0)).toBeUndefined();
    expect(fail(watch, 0, wrongOption)).toBeUndefined();
    expect(fail(watch, 0, wrongOption)).toBeUndefined();
    expect(fail(watch, 0, wrongOption)?.code).toBe('ERR_STICKY_STARTUP_FAILED');
  });

  it('a different failure starts a new streak; the same message with another code is different', () => {
    const watch = new StartupWatch(1);
    const other = { reason: 'sticky-mesh: the server factory failed: Error: other' };
    const coded = { ...wrongOption, thrown: { ...thrown, code: 'EADDRINUSE' } };
    expect(fail(watch, 0, wrongOption)).toBeUndefined();
    expect(fail(watch, 0, wrongOption)).toBeUndefined();
    expect(fail(watch, 0, other)).toBeUndefined();
    expect(fail(watch, 0, coded)).toBeUndefined();
    expect(fail(watch, 0, coded)).toBeUndefined();
    expect(fail(watch, 0, coded)?.message).toMatch(
      /: the server factory failed: Error: wrong option$/,
    );
  });

  it('waits for every slot: one slot failing for good is not enough', () => {
    const watch = new StartupWatch(3);
    for (let i = 0; i < 10; i++) {
      expect(fail(watch, 0, wrongOption)).toBeUndefined();
      expect(fail(watch, 1, wrongOption)).toBeUndefined();
    }
    expect(fail(watch, 2, wrongOption)).toBeUndefined();
    expect(fail(watch, 2, wrongOption)).toBeUndefined();
    expect(fail(watch, 2, wrongOption)?.code).toBe('ERR_STICKY_STARTUP_FAILED');
  });

  it('slots failing each their own way: named by the first, with how many others', () => {
    const watch = new StartupWatch(2);
    const other = { reason: 'sticky-mesh: the server factory failed: Error: port 3001 in use' };
    let err: StickyMeshError | undefined;
    for (let i = 0; i < STARTUP_ATTEMPTS; i++) {
      fail(watch, 0, wrongOption);
      err = fail(watch, 1, other);
    }
    expect(err?.message).toMatch(
      /: the server factory failed: Error: wrong option \(and 1 other error\)$/,
    );
  });

  it('once any worker has been ready, no failure is final (crashes are respawned as always)', () => {
    const watch = new StartupWatch(2);
    fail(watch, 0, wrongOption);
    fail(watch, 1, wrongOption);
    watch.ready();
    for (let i = 0; i < 10; i++) {
      expect(fail(watch, 0, wrongOption)).toBeUndefined();
      expect(fail(watch, 1, wrongOption)).toBeUndefined();
    }
  });

  it("a report is the reporting worker's only: the next worker's exit without one is unreported", () => {
    const watch = new StartupWatch(1);
    fail(watch, 0, wrongOption);
    fail(watch, 0, wrongOption);
    // The third worker exits without saying why: the report before is not reused.
    expect(fail(watch, 0)).toBeUndefined();
    expect(fail(watch, 0, wrongOption)).toBeUndefined();
  });

  it('a long or multi-line reason: the message keeps its first line, at most 300 characters', () => {
    const watch = new StartupWatch(1);
    const long = {
      reason: `sticky-mesh: the server factory failed: Error: ${'x'.repeat(400)}\nmore`,
    };
    let err: StickyMeshError | undefined;
    for (let i = 0; i < STARTUP_ATTEMPTS; i++) err = fail(watch, 0, long);
    const tail = err?.message.split('not respawning): ')[1] ?? '';
    expect(tail).toHaveLength(301);
    expect(tail.endsWith('…')).toBe(true);
    expect((err?.cause as Error | undefined)?.message).toBe(long.reason);
  });
});
