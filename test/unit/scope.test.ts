/**
 * The `scope` option: which later requests of a kept-open connection must reach their key's
 * worker. Validation (resolveOptions) and the test each worker builds from it (scopeTest), taken
 * through the same path as the worker: resolveOptions, then scopeTest with the resolved
 * sessionAffinity, seed and worker count.
 */
import { describe, expect, it } from 'vitest';
import { InvalidOptionError } from '../../src/errors.js';
import { resolveOptions, type StickyOptions } from '../../src/options.js';
import { type ScopedRequest, type ScopeTest, scopeTest } from '../../src/routing/scope.js';
import { makeSessionId } from '../../src/routing/session-id.js';

const SEED = 99;
const NUM = 4;

function thrown(fn: () => unknown): InvalidOptionError {
  try {
    fn();
  } catch (err) {
    if (err instanceof InvalidOptionError) return err;
    throw err;
  }
  throw new Error('expected an InvalidOptionError');
}

/** The test a worker with these options builds (keep-alive.ts does exactly this). */
function testOf(options: StickyOptions): ScopeTest | undefined {
  const resolved = resolveOptions({ num: NUM, seed: SEED, ...options });
  return scopeTest(resolved.scope, resolved.sessionAffinity, resolved.seed, resolved.num);
}

/** The test of `options`, which must not be "every request". */
function definedTestOf(options: StickyOptions): ScopeTest {
  const test = testOf(options);
  if (test === undefined) throw new Error('expected a scope test, got "every request"');
  return test;
}

/** `header: value` pairs as the parser reports them: name, value, name, value, ... */
function fields(...pairs: [string, string][]): string[] {
  return pairs.flat();
}

/** An id that names no slot here: `id` with its check character changed. */
function tampered(id: string): string {
  const last = id.at(-1);
  return `${id.slice(0, -1)}${last === 'A' ? 'B' : 'A'}`;
}

describe('scope option: validation', () => {
  const predicate = (req: ScopedRequest) => req.method === 'POST';

  it.each<[string, NonNullable<StickyOptions['scope']>]>([
    ['all', 'all'],
    ['engine.io', 'engine.io'],
    ['a predicate', predicate],
    ['a list of one', ['engine.io']],
    ['a list of several', ['engine.io', predicate]],
  ])('accepts %s in proxy mode and keeps it as given', (_, scope) => {
    expect(resolveOptions({ proxy: true, scope }).scope).toBe(scope);
  });

  it("accepts 'session-id' (alone and in a list) with sessionAffinity, with or without proxy", () => {
    const list = ['session-id', 'engine.io'] as const;
    expect(resolveOptions({ sessionAffinity: true, scope: 'session-id' }).scope).toBe('session-id');
    expect(resolveOptions({ sessionAffinity: true, scope: list }).scope).toBe(list);
    expect(resolveOptions({ proxy: true, sessionAffinity: true, scope: list }).scope).toBe(list);
  });

  it('accepts a scope other than all with sessionAffinity alone (no proxy)', () => {
    expect(resolveOptions({ sessionAffinity: true, scope: 'engine.io' }).scope).toBe('engine.io');
    expect(resolveOptions({ sessionAffinity: true, scope: predicate }).scope).toBe(predicate);
  });

  it.each<[string, unknown]>([
    ['an unknown string', 'socket.io'],
    ['a string in the wrong case', 'Engine.IO'],
    ['a number', 1],
    ['true', true],
    ['null', null],
    ['an object', { engineIo: true }],
    ['an empty list', []],
    ['a list with an unknown item', ['engine.io', 'websocket']],
    ['a nested list', [['engine.io']]],
  ])('rejects %s with a coded error that names scope', (_, scope) => {
    const err = thrown(() => resolveOptions({ proxy: true, scope } as never));
    expect(err.code).toBe('ERR_STICKY_INVALID_OPTION');
    expect(err.option).toBe('scope');
    expect(err.message).toContain('"scope"');
  });

  it("rejects 'session-id' without sessionAffinity, alone or in a list", () => {
    for (const scope of ['session-id', ['engine.io', 'session-id']] as const) {
      const err = thrown(() => resolveOptions({ proxy: true, scope }));
      expect(err.option).toBe('scope');
      expect(err.message).toMatch(/sessionAffinity/);
    }
    // sessionAffinity with both places turned off is no sessionAffinity.
    const off = { cookie: false, query: false } as const;
    expect(
      thrown(() => resolveOptions({ proxy: true, sessionAffinity: off, scope: 'session-id' }))
        .option,
    ).toBe('scope');
  });

  it('rejects a scope other than all where later requests are not routed (no proxy, no affinity)', () => {
    for (const scope of ['engine.io', predicate, ['engine.io']] as const) {
      const err = thrown(() => resolveOptions({ scope }));
      expect(err.option).toBe('scope');
      expect(err.message).toMatch(/proxy: true or sessionAffinity/);
    }
    // 'all' is the default: saying so is always allowed, in a list too.
    expect(resolveOptions({ scope: 'all' }).scope).toBe('all');
    expect(resolveOptions({ scope: ['all'] }).scope).toEqual(['all']);
    expect(resolveOptions({ scope: ['engine.io', 'all'] }).scope).toEqual(['engine.io', 'all']);
  });
});

describe('scope option: which later requests must reach their key’s worker', () => {
  it("'all' (the default, alone or anywhere in a list) is no test: every request", () => {
    expect(testOf({ proxy: true })).toBeUndefined();
    expect(testOf({ proxy: true, scope: 'all' })).toBeUndefined();
    expect(testOf({ proxy: true, scope: ['engine.io', 'all'] })).toBeUndefined();
    expect(testOf({ proxy: true, scope: [() => false, 'all'] })).toBeUndefined();
  });

  it("'engine.io': the requests whose query carries EIO, whatever the path or method", () => {
    const eio = definedTestOf({ proxy: true, scope: 'engine.io' });
    for (const url of [
      '/socket.io/?EIO=4&transport=polling&t=Pabc',
      '/socket.io/?EIO=4&transport=polling&sid=x',
      '/socket.io/?EIO=4&transport=websocket&sid=x',
      '/socket.io/?EIO=3&transport=polling&b64=1',
      '/realtime/io/?transport=polling&EIO=4',
    ]) {
      expect(eio('GET', url, []), url).toBe(true);
    }
    expect(eio('POST', '/socket.io/?EIO=4&transport=polling&sid=x', [])).toBe(true);
    for (const url of [
      '/',
      '/socket.io/',
      '/api?x=EIO',
      '/api?x=EIO=4',
      '/api?eio=4',
      '/api?NOEIO=4',
      '/EIO=4',
      '/api?EIO=',
    ]) {
      expect(eio('GET', url, []), url).toBe(false);
    }
    // Headers play no part.
    expect(eio('GET', '/', fields(['x-eio', '4'], ['cookie', 'EIO=4']))).toBe(false);
  });

  describe("'session-id'", () => {
    const id = makeSessionId(2, SEED);
    /** Names slot 5, beyond the 4 workers. */
    const beyond = makeSessionId(5, SEED);
    const foreign = tampered(id);

    it('is true for an id that names a slot, in the cookie (plain or signed) or the query', () => {
      const test = definedTestOf({ proxy: true, sessionAffinity: true, scope: 'session-id' });
      const signed = `s:${id}.c2lnbmF0dXJl`;
      for (const cookie of [
        `connect.sid=${id}`,
        `other=1; connect.sid=${id}; more=2`,
        `connect.sid=${signed}`,
        `connect.sid=${encodeURIComponent(signed)}`,
      ]) {
        expect(test('GET', '/', fields(['Cookie', cookie])), cookie).toBe(true);
      }
      // The id in a second Cookie line.
      expect(test('GET', '/', fields(['cookie', 'a=1'], ['cookie', `connect.sid=${id}`]))).toBe(
        true,
      );
      expect(test('GET', `/?sid=${id}`, [])).toBe(true);
      expect(test('GET', `/socket.io/?EIO=4&transport=polling&sid=${id}`, [])).toBe(true);
    });

    it('is false for a foreign id, an id beyond the worker count, or none', () => {
      const test = definedTestOf({ proxy: true, sessionAffinity: true, scope: 'session-id' });
      for (const other of [foreign, beyond, 'not-an-id', '']) {
        expect(test('GET', '/', fields(['cookie', `connect.sid=${other}`])), other).toBe(false);
        expect(test('GET', '/', fields(['cookie', `connect.sid=s:${other}.sig`])), other).toBe(
          false,
        );
        expect(test('GET', `/?sid=${other}`, []), other).toBe(false);
      }
      expect(test('GET', '/', [])).toBe(false);
      // Another cookie or parameter holding a good id is not the session id.
      expect(test('GET', `/?id=${id}`, fields(['cookie', `other.sid=${id}`]))).toBe(false);
      // An engine.io request without a slot-naming id is not in this scope.
      expect(test('GET', '/socket.io/?EIO=4&transport=polling&t=x', [])).toBe(false);
    });

    it('depends on the worker count: an id naming slot 3 is out of scope with 2 workers', () => {
      const ours = makeSessionId(3, SEED);
      const four = definedTestOf({ proxy: true, sessionAffinity: true, scope: 'session-id' });
      const two = definedTestOf({
        num: 2,
        proxy: true,
        sessionAffinity: true,
        scope: 'session-id',
      });
      expect(four('GET', `/?sid=${ours}`, [])).toBe(true);
      expect(two('GET', `/?sid=${ours}`, [])).toBe(false);
      expect(two('GET', `/?sid=${makeSessionId(1, SEED)}`, [])).toBe(true);
    });

    it('looks only where sessionAffinity says', () => {
      const cookieOnly = definedTestOf({
        proxy: true,
        sessionAffinity: { cookie: 'app.sid', query: false },
        scope: 'session-id',
      });
      expect(cookieOnly('GET', '/', fields(['cookie', `app.sid=${id}`]))).toBe(true);
      expect(cookieOnly('GET', '/', fields(['cookie', `connect.sid=${id}`]))).toBe(false);
      expect(cookieOnly('GET', `/?sid=${id}`, [])).toBe(false);
      const queryOnly = definedTestOf({
        proxy: true,
        sessionAffinity: { cookie: false, query: 'session' },
        scope: 'session-id',
      });
      expect(queryOnly('GET', `/?session=${id}`, [])).toBe(true);
      expect(queryOnly('GET', `/?sid=${id}`, [])).toBe(false);
      expect(queryOnly('GET', '/', fields(['cookie', `connect.sid=${id}`]))).toBe(false);
    });
  });

  describe('a predicate', () => {
    it('sees the method, the target as sent, and header(name) in any case', () => {
      const seen: { method: string; url: string; sticky: unknown; missing: unknown }[] = [];
      const test = definedTestOf({
        proxy: true,
        scope: (req) => {
          seen.push({
            method: req.method,
            url: req.url,
            sticky: req.header('X-Sticky'),
            missing: req.header('x-none'),
          });
          return req.header('x-sticky') === '1';
        },
      });
      expect(test('POST', '/a/b?c=d%20e', fields(['X-STICKY', '1']))).toBe(true);
      expect(test('GET', '/', fields(['x-sticky', '0']))).toBe(false);
      expect(test('GET', '/', [])).toBe(false);
      expect(seen).toEqual([
        { method: 'POST', url: '/a/b?c=d%20e', sticky: '1', missing: undefined },
        { method: 'GET', url: '/', sticky: '0', missing: undefined },
        { method: 'GET', url: '/', sticky: undefined, missing: undefined },
      ]);
    });

    it('gets repeated header lines joined (", ", and "; " for Cookie)', () => {
      let seen: (string | undefined)[] = [];
      const test = definedTestOf({
        proxy: true,
        scope: (req) => {
          seen = [req.header('x-forwarded-for'), req.header('Cookie'), req.header('x-one')];
          return false;
        },
      });
      test(
        'GET',
        '/',
        fields(
          ['X-Forwarded-For', '198.51.100.1'],
          ['cookie', 'a=1'],
          ['x-one', 'only'],
          ['x-forwarded-for', '10.0.0.1'],
          ['COOKIE', 'b=2'],
        ),
      );
      expect(seen).toEqual(['198.51.100.1, 10.0.0.1', 'a=1; b=2', 'only']);
    });

    it('moves a request only when it returns true itself', () => {
      const truthy = definedTestOf({ proxy: true, scope: (() => 'yes') as never });
      expect(truthy('GET', '/', [])).toBe(false);
      expect(definedTestOf({ proxy: true, scope: () => true })('GET', '/', [])).toBe(true);
    });
  });

  it('a list moves a request when any of its items says so', () => {
    const id = makeSessionId(1, SEED);
    const test = definedTestOf({
      proxy: true,
      sessionAffinity: true,
      scope: ['engine.io', 'session-id', (req) => req.method === 'DELETE'],
    });
    expect(test('GET', '/socket.io/?EIO=4&transport=polling', [])).toBe(true);
    expect(test('GET', '/', fields(['cookie', `connect.sid=${id}`]))).toBe(true);
    expect(test('DELETE', '/thing', [])).toBe(true);
    expect(test('GET', '/thing', [])).toBe(false);
    expect(test('POST', '/', fields(['cookie', `connect.sid=${tampered(id)}`]))).toBe(false);
    // A list of predicates that each say no says no.
    const none = definedTestOf({ proxy: true, scope: [() => false, () => false] });
    expect(none('GET', '/socket.io/?EIO=4', [])).toBe(false);
  });
});
