import http from 'node:http';
import express from 'express';
import { describe, expect, it } from 'vitest';
import { StickyMeshError } from '../../src/errors.js';
import { StickyPrimary } from '../../src/master/primary.js';
import { sticky } from '../../src/sticky.js';

// In the test runner's process cluster.isPrimary is true: sticky() builds a primary, which forks
// nothing until listen() is called, so the call forms can be checked without processes.
const factory = () => http.createServer();

function code(fn: () => unknown): string | undefined {
  try {
    fn();
  } catch (err) {
    return err instanceof StickyMeshError ? err.code : 'not a StickyMeshError';
  }
  return undefined;
}

describe('sticky() call forms', () => {
  it.each([
    ['sticky(options, factory)', () => sticky({ num: 3 }, factory), 3],
    ['sticky(num, factory)', () => sticky(2, factory), 2],
    ['sticky(factory)', () => sticky(factory), undefined],
    ['sticky(server)', () => sticky(http.createServer()), undefined],
    ['sticky(options, server)', () => sticky({ num: 5 }, http.createServer()), 5],
    ['sticky(undefined, factory)', () => sticky(undefined, factory), undefined],
  ])('%s returns the primary controller', async (_name, make, num) => {
    const s = make();
    expect(s).toBeInstanceOf(StickyPrimary);
    expect(s.role).toBe('primary');
    if (num !== undefined) expect((s as StickyPrimary).stats().slots).toHaveLength(num);
    await s.close();
  });

  it.each([
    ['no factory', () => sticky({ num: 2 } as never)],
    ['a string', () => sticky('x' as never, factory)],
    ['a non-server object as factory', () => sticky({ num: 2 }, {} as never)],
  ])('rejects %s with ERR_STICKY_INVALID_ARGUMENT', (_name, call) => {
    expect(code(call)).toBe('ERR_STICKY_INVALID_ARGUMENT');
  });

  it.each([
    [
      'an Express app in place of the factory',
      () => sticky({ num: 2 }, express() as never),
      'sticky-mesh: sticky() got an Express app in place of the factory: write `sticky(() => http.createServer(app))`',
    ],
    [
      'an Express app alone',
      () => sticky(express() as never),
      'sticky-mesh: sticky() got an Express app in place of the factory: write `sticky(() => http.createServer(app))`',
    ],
    [
      'a request handler in place of the factory',
      () => sticky(2, ((_req: unknown, res: http.ServerResponse) => res.end()) as never),
      'sticky-mesh: sticky() got a function of 2 parameters in place of the factory, a request handler? The factory takes no request and returns the server: write `sticky(() => http.createServer(handler))`',
    ],
  ])('%s: ERR_STICKY_INVALID_ARGUMENT at once, saying what to write', (_name, call, text) => {
    expect(code(call)).toBe('ERR_STICKY_INVALID_ARGUMENT');
    expect(() => call()).toThrow(text);
  });

  it('a server on which listen() was called: ERR_STICKY_INVALID_ARGUMENT, the primary owns the port', async () => {
    const server = http.createServer();
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    try {
      expect(code(() => sticky(1, server))).toBe('ERR_STICKY_INVALID_ARGUMENT');
      expect(() => sticky(server)).toThrow(/got a server on which listen\(\) was called/);
    } finally {
      server.close();
    }
  });

  it('rejects bad options before forking anything', () => {
    expect(code(() => sticky({ num: -1 }, factory))).toBe('ERR_STICKY_INVALID_OPTION');
  });

  it.each([['/tmp/app.sock'], [-1], [70_000], [1.5]])(
    'listen(%s) is refused with ERR_STICKY_INVALID_ARGUMENT before anything is bound',
    async (port) => {
      const s = sticky(1, factory) as StickyPrimary;
      expect(code(() => s.listen(port as never))).toBe('ERR_STICKY_INVALID_ARGUMENT');
      await s.close();
    },
  );

  it('close() is idempotent and resolves without listen()', async () => {
    const s = sticky(1, factory);
    const a = s.close();
    expect(s.close()).toBe(a);
    await a;
    expect((s as StickyPrimary).stats().state).toBe('closed');
  });
});
