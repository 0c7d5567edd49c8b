// What the primary logs, at which level, from the events it emits (master/log-events.ts): driven
// here by a stand-in emitter with the primary's event names and stats() shape.
import { EventEmitter } from 'node:events';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { LOG_LEVELS, QUIET_LOGGER, type ResolvedLogger } from '../../src/logger.js';
import {
  DROP_KINDS,
  DROP_REPORT_MS,
  DropReport,
  dropCounts,
  type LoggedStats,
  logPrimaryEvents,
} from '../../src/master/log-events.js';

type Line = [level: string, msg: string];

function recorder(): { lines: Line[]; logger: ResolvedLogger } {
  const lines: Line[] = [];
  const logger = Object.fromEntries(
    LOG_LEVELS.map((level) => [level, (msg: string) => lines.push([level, msg])]),
  ) as unknown as ResolvedLogger;
  return { lines, logger };
}

/** A stand-in for the primary: its events and the counters stats() reports. */
class FakePrimary extends EventEmitter {
  readonly counters: LoggedStats = {
    slots: [{}, {}],
    malformedMessages: 0,
    sessions: { dropped: 0 },
  };
  stats(): LoggedStats {
    return this.counters;
  }
}

function started(logger: ResolvedLogger): FakePrimary {
  const primary = new FakePrimary();
  logPrimaryEvents(primary, logger);
  primary.emit('listening', { address: '127.0.0.1', port: 8080, family: 'IPv4' });
  return primary;
}

afterEach(() => {
  vi.useRealTimers();
  vi.restoreAllMocks();
});

describe('the primary’s lifecycle lines', () => {
  it('start-up at info: listening, each worker up, all ready', () => {
    const { lines, logger } = recorder();
    const primary = started(logger);
    primary.emit('workerUp', { slot: 0, pid: 100 });
    primary.emit('workerUp', { slot: 1, pid: 101 });
    primary.emit('ready');
    expect(lines).toEqual([
      ['info', 'sticky-mesh: listening on 127.0.0.1:8080; starting 2 workers'],
      ['info', 'sticky-mesh: slot 0: worker pid 100 is up'],
      ['info', 'sticky-mesh: slot 1: worker pid 101 is up'],
      ['info', 'sticky-mesh: all 2 workers are ready'],
    ]);
  });

  it('a crash at error, naming slot, pid and exit status; its respawn at info', () => {
    const { lines, logger } = recorder();
    const primary = started(logger);
    primary.emit('workerUp', { slot: 1, pid: 101 });
    lines.length = 0;
    primary.emit('workerExit', { slot: 1, pid: 101, code: 1, signal: null, planned: false });
    primary.emit('workerRespawn', { slot: 1, attempt: 1, delay: 100 });
    primary.emit('workerExit', {
      slot: 1,
      pid: 102,
      code: null,
      signal: 'SIGKILL',
      planned: false,
    });
    expect(lines).toEqual([
      ['error', 'sticky-mesh: slot 1: worker pid 101 crashed (exit code 1)'],
      ['info', 'sticky-mesh: slot 1: respawning in 100 ms (unplanned exit 1 in a row)'],
      [
        'error',
        'sticky-mesh: slot 1: worker pid 102 exited before it was ready (signal SIGKILL): its ' +
          'factory failed, it exited, or it was not ready within readyTimeout',
      ],
    ]);
  });

  it('an unresponsive worker at warn, its exit at debug; planned exits at debug', () => {
    const { lines, logger } = recorder();
    const primary = started(logger);
    primary.emit('workerUp', { slot: 0, pid: 100 });
    primary.emit('workerUp', { slot: 1, pid: 101 });
    lines.length = 0;
    primary.emit('workerUnresponsive', { slot: 0, pid: 100, reason: 'ping', silentFor: 5200 });
    primary.emit('workerExit', {
      slot: 0,
      pid: 100,
      code: null,
      signal: 'SIGKILL',
      planned: false,
    });
    primary.emit('workerExit', { slot: 1, pid: 101, code: 0, signal: null, planned: true });
    primary.emit('workerRespawn', { slot: 1, attempt: 0, delay: 0 });
    expect(lines).toEqual([
      ['warn', 'sticky-mesh: slot 0: worker pid 100 answered no ping for 5200 ms; killing it'],
      [
        'debug',
        'sticky-mesh: slot 0: worker pid 100, killed as unresponsive, is gone (signal SIGKILL)',
      ],
      ['debug', 'sticky-mesh: slot 1: worker pid 101 exited as asked (exit code 0)'],
      ['info', 'sticky-mesh: slot 1: forking a replacement for the worker that left'],
    ]);
  });

  it("the primary's errors at error, and an unhandled one still throws", () => {
    const { lines, logger } = recorder();
    const primary = new FakePrimary();
    logPrimaryEvents(primary, logger);
    const err = new Error('sticky-mesh: the listening socket failed: listen EADDRINUSE');
    expect(() => primary.emit('error', err)).toThrow(err);
    expect(lines).toEqual([['error', err.message]]);
    primary.on('error', () => {});
    expect(() => primary.emit('error', err)).not.toThrow();
    expect(lines).toHaveLength(2);
  });
});

describe('dropped messages', () => {
  it('are reported at most once per kind per period, with the count', () => {
    vi.useFakeTimers();
    const { lines, logger } = recorder();
    const primary = started(logger);
    lines.length = 0;
    // A flood within one period...
    for (let i = 0; i < 500; i++) primary.counters.malformedMessages++;
    primary.counters.sessions.dropped = 3;
    vi.advanceTimersByTime(DROP_REPORT_MS - 1);
    expect(lines).toEqual([]);
    vi.advanceTimersByTime(1);
    // ...is one line per kind.
    expect(lines).toEqual([
      ['warn', `sticky-mesh: 500 ${DROP_KINDS.ipc} (500 since start)`],
      ['warn', `sticky-mesh: 3 ${DROP_KINDS.hub} (3 since start)`],
    ]);
    // Nothing new, nothing said; more, and only that kind is reported.
    vi.advanceTimersByTime(DROP_REPORT_MS);
    expect(lines).toHaveLength(2);
    primary.counters.malformedMessages += 2;
    vi.advanceTimersByTime(DROP_REPORT_MS);
    expect(lines.slice(2)).toEqual([
      ['warn', `sticky-mesh: 2 ${DROP_KINDS.ipc} (502 since start)`],
    ]);
  });

  it('the last ones are reported on close, and the timer stops', () => {
    vi.useFakeTimers();
    const { lines, logger } = recorder();
    const primary = started(logger);
    expect(vi.getTimerCount()).toBe(1);
    primary.counters.sessions.dropped = 1;
    primary.emit('close');
    expect(lines.slice(-2)).toEqual([
      ['warn', `sticky-mesh: 1 ${DROP_KINDS.hub} (1 since start)`],
      ['info', 'sticky-mesh: closed; every worker has exited'],
    ]);
    expect(vi.getTimerCount()).toBe(0);
  });

  it('counts each transport’s kinds, and not foreign datagrams', () => {
    const rejected = {
      oversize: 1,
      truncated: 2,
      foreign: 1000,
      auth: 4,
      stale: 5,
      replay: 6,
      malformed: 7,
      unsolicited: 0,
      connections: 0,
      deadline: 0,
    };
    const counts = dropCounts({
      slots: [],
      malformedMessages: 1,
      sessions: { dropped: 2 },
      multicast: { malformed: 8, rejected },
      redis: { malformed: 9, dropped: 10 },
    });
    expect(counts).toEqual({
      ipc: 1,
      hub: 2,
      multicastMalformed: 8 + 7 + 1 + 2,
      multicastAuth: 4,
      multicastReplay: 6 + 5,
      redisMalformed: 9,
      redisQueue: 10,
    });
    const report = new DropReport();
    expect(report.lines(counts)).toHaveLength(Object.keys(DROP_KINDS).length);
    expect(report.lines(counts)).toEqual([]);
  });
});

describe('with the default logger', () => {
  it('a crash, a kill and dropped messages write nothing to stdout, stderr or the console', () => {
    expect(process.env.NODE_DEBUG ?? '').not.toMatch(/sticky-mesh/i);
    vi.useFakeTimers();
    const writes: string[] = [];
    const record = (chunk: unknown) => writes.push(String(chunk)) > 0;
    vi.spyOn(process.stdout, 'write').mockImplementation(record);
    vi.spyOn(process.stderr, 'write').mockImplementation(record);
    for (const method of ['log', 'error', 'warn', 'info', 'debug'] as const) {
      vi.spyOn(console, method).mockImplementation((...args) => writes.push(args.join(' ')));
    }
    // The default, counting what reaches it (so that this cannot pass by logging nothing).
    const calls: string[] = [];
    const quiet = Object.fromEntries(
      LOG_LEVELS.map((level) => [
        level,
        (msg: string) => calls.push(level) && QUIET_LOGGER[level](msg),
      ]),
    ) as unknown as ResolvedLogger;
    const primary = started(quiet);
    primary.emit('workerUp', { slot: 0, pid: 100 });
    primary.emit('workerExit', { slot: 0, pid: 100, code: 1, signal: null, planned: false });
    primary.emit('workerUnresponsive', { slot: 1, pid: 101, reason: 'queue', silentFor: 1 });
    primary.counters.malformedMessages = 9;
    vi.advanceTimersByTime(DROP_REPORT_MS);
    primary.emit('close');
    expect(new Set(calls)).toEqual(new Set(['info', 'error', 'warn']));
    expect(writes).toEqual([]);
  });
});
