import { debug } from '../debug.js';
import { InvalidOptionError } from '../errors.js';
import { cookieValue, idFromCookieValue, queryParam, sessionIdSlot } from './session-id.js';

/** A later request of a kept-open connection, as a `scope` function sees it. */
export interface ScopedRequest {
  /** `GET`, `POST`, ... */
  readonly method: string;
  /** The request target as sent (`/path?query`). */
  readonly url: string;
  /** A header's value (name in any case; repeated lines joined with `, `), or `undefined`. */
  header(name: string): string | undefined;
}

/** See {@link StickyOptions.scope}. */
export type RoutingScope = 'all' | 'engine.io' | 'session-id' | ((req: ScopedRequest) => boolean);

/** Where `sessionAffinity` looks for ids (options.ts's resolved form), or `false`. */
type ResolvedSessionAffinity = { cookie: string | undefined; query: string | undefined } | false;

/** A resolved scope: whether a request (method, target, header lines) must reach its worker. */
export type ScopeTest = (method: string, url: string, fields: readonly string[]) => boolean;

const SCOPES = new Set<unknown>(['all', 'engine.io', 'session-id']);

/** Whether a validated `scope` means every request. */
export function isEveryRequest(scope: unknown): boolean {
  return Array.isArray(scope) ? scope.includes('all') : scope === 'all';
}

/** Validates `scope` (resolveOptions). */
export function checkScope(scope: unknown, affinity: ResolvedSessionAffinity): void {
  const list: unknown[] = Array.isArray(scope) ? scope : [scope];
  const expected =
    "'all', 'engine.io', 'session-id', a function (req) => boolean, or a list of them";
  if (list.length === 0) throw new InvalidOptionError('scope', expected, scope);
  for (const item of list) {
    if (!SCOPES.has(item) && typeof item !== 'function') {
      throw new InvalidOptionError('scope', expected, item);
    }
    if (item === 'session-id' && !affinity) {
      throw new InvalidOptionError('scope', "'session-id' together with sessionAffinity", item);
    }
  }
}

/** Builds the test of a validated `scope`: `undefined` for "every request". */
export function scopeTest(
  scope: RoutingScope | readonly RoutingScope[],
  affinity: ResolvedSessionAffinity,
  seed: number,
  num: number,
): ScopeTest | undefined {
  const list: readonly RoutingScope[] = Array.isArray(scope) ? scope : [scope];
  if (list.includes('all')) return undefined;
  const tests = list.map((item): ScopeTest => {
    if (item === 'engine.io') return isEngineIo;
    if (item === 'session-id') {
      return (_method, url, fields) =>
        affinity !== false && carriesSessionId(url, fields, affinity, seed, num);
    }
    if (typeof item === 'function') {
      return (method, url, fields) => {
        try {
          return item(scopedRequest(method, url, fields)) === true;
        } catch (err) {
          // A predicate that fails on a request must not take the worker (and every session in
          // its memory) down: the request goes to its key's worker, as with no scope.
          debug('scope: the predicate threw, routing the request by its key: %s', String(err));
          return true;
        }
      };
    }
    return () => true;
  });
  const [only] = tests;
  if (tests.length === 1 && only) return only;
  return (method, url, fields) => tests.some((test) => test(method, url, fields));
}

/** Every engine.io request carries its protocol version in the query (`EIO=4`). */
function isEngineIo(_method: string, url: string): boolean {
  const q = url.indexOf('?');
  return q !== -1 && queryParam(url, 'EIO') !== undefined;
}

function carriesSessionId(
  url: string,
  fields: readonly string[],
  affinity: Exclude<ResolvedSessionAffinity, false>,
  seed: number,
  num: number,
): boolean {
  if (affinity.query !== undefined) {
    const id = queryParam(url, affinity.query);
    if (id !== undefined && sessionIdSlot(id, seed, num) !== undefined) return true;
  }
  if (affinity.cookie !== undefined) {
    const cookies = fieldValues(fields, 'cookie');
    const value = cookies && cookieValue(cookies, affinity.cookie);
    const id = value === undefined ? undefined : idFromCookieValue(value);
    if (id !== undefined && sessionIdSlot(id, seed, num) !== undefined) return true;
  }
  return false;
}

function scopedRequest(method: string, url: string, fields: readonly string[]): ScopedRequest {
  return {
    method,
    url,
    header(name: string): string | undefined {
      const lower = name.toLowerCase();
      return fieldValues(fields, lower)?.join(lower === 'cookie' ? '; ' : ', ');
    },
  };
}

/** The values of header `name` (lower case) among parsed header lines, or `undefined`. */
export function fieldValues(fields: readonly string[], name: string): string[] | undefined {
  let values: string[] | undefined;
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const field = fields[i] as string;
    if (field.length === name.length && field.toLowerCase() === name) {
      if (values === undefined) values = [];
      values.push(fields[i + 1] as string);
    }
  }
  return values;
}
