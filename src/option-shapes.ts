import os from 'node:os';
import { InvalidOptionError } from './errors.js';
import { boolean, HTTP_TOKEN } from './validate.js';

// The options of sticky() that have a shape of their own (options.ts applies them).

/** Where a request's session id is looked for (see {@link StickyOptions.sessionAffinity}). */
export interface SessionAffinityOptions {
  /** Cookie holding the id (express-session's `name`); `false` ignores cookies. @default 'connect.sid' */
  cookie?: string | false;
  /** Query parameter holding the id (engine.io uses `sid`); `false` ignores the query. @default 'sid' */
  query?: string | false;
}

/** See {@link StickyOptions.sync}. */
export interface SyncOptions {
  isSynced?: boolean;
  /** The same as `isSynced` (socketio-sticky-session accepts both spellings). */
  isSyncable?: boolean;
  /** The socket event the application emits when the request may be read. */
  event: string;
}

/** `sessionAffinity` after defaults: where to look, or `false` for off. */
export type ResolvedSessionAffinity =
  | { cookie: string | undefined; query: string | undefined }
  | false;

/** Where `sessionAffinity: true` (or an object that leaves one out) looks for the session id. */
export const SESSION_AFFINITY_DEFAULTS = Object.freeze({ cookie: 'connect.sid', query: 'sid' });

export function sessionAffinity(value: unknown): ResolvedSessionAffinity {
  if (value === false) return false;
  if (value === true) return { ...SESSION_AFFINITY_DEFAULTS };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError('sessionAffinity', 'a boolean or { cookie, query }', value);
  }
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) {
    if (k !== 'cookie' && k !== 'query') {
      throw new InvalidOptionError(`sessionAffinity.${k}`, 'cookie or query (misspelt?)', v[k]);
    }
  }
  const place = (k: 'cookie' | 'query', fallback: string): string | undefined => {
    const given = v[k] === undefined ? fallback : v[k];
    if (given === false) return undefined;
    if (typeof given !== 'string' || !HTTP_TOKEN.test(given)) {
      throw new InvalidOptionError(`sessionAffinity.${k}`, 'a name or false', given);
    }
    return given;
  };
  const resolved = {
    cookie: place('cookie', SESSION_AFFINITY_DEFAULTS.cookie),
    query: place('query', SESSION_AFFINITY_DEFAULTS.query),
  };
  return resolved.cookie === undefined && resolved.query === undefined ? false : resolved;
}

/** Signals a process may handle (not SIGKILL/SIGSTOP, nor the ones the primary drains on). */
export function reloadSignal(value: unknown): NodeJS.Signals | false {
  if (value === false) return false;
  if (
    typeof value !== 'string' ||
    !(value in os.constants.signals) ||
    ['SIGKILL', 'SIGSTOP', 'SIGINT', 'SIGTERM'].includes(value)
  ) {
    throw new InvalidOptionError(
      'reloadSignal',
      'false or a signal name other than SIGKILL, SIGSTOP, SIGINT and SIGTERM (e.g. "SIGHUP")',
      value,
    );
  }
  return value as NodeJS.Signals;
}

export function sync(value: unknown): { event: string } | false {
  if (value === false) return false;
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError('sync', 'false or { isSynced, event }', value);
  }
  const v = value as Record<string, unknown>;
  for (const k of Object.keys(v)) {
    if (k !== 'isSynced' && k !== 'isSyncable' && k !== 'event') {
      throw new InvalidOptionError(`sync.${k}`, 'isSynced, isSyncable or event (misspelt?)', v[k]);
    }
  }
  for (const k of ['isSynced', 'isSyncable'] as const) {
    if (v[k] !== undefined) boolean(`sync.${k}`, v[k]);
  }
  if (v.isSynced !== true && v.isSyncable !== true) return false;
  if (typeof v.event !== 'string' || v.event === '') {
    throw new InvalidOptionError('sync.event', 'the name of a socket event', v.event);
  }
  return { event: v.event };
}
