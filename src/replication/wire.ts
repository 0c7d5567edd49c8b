import { isVersion } from './clock.js';
import type { Change } from './table.js';

/** Longest session id accepted from elsewhere (express-session's are 32 characters). */
export const MAX_SID_LENGTH = 256;

/**
 * Whether a session id looks like one a session store made (8 to 256 printable ASCII characters,
 * no spaces): only such ids are asked of the cluster on a read miss, not any cookie junk.
 */
export function isSessionIdLike(sid: string): boolean {
  return sid.length >= 8 && sid.length <= MAX_SID_LENGTH && /^[\x21-\x7e]+$/.test(sid);
}

/**
 * A change received from another process, checked field by field: anything that is not exactly
 * a well-formed change gives `undefined` (to be dropped and counted). Never throws.
 */
export function parseChange(value: unknown): Change | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const v = value as Record<string, unknown>;
  if (typeof v.sid !== 'string' || v.sid.length === 0 || v.sid.length > MAX_SID_LENGTH) {
    return undefined;
  }
  if (!isVersion(v.version)) return undefined;
  const version = { t: v.version.t, c: v.version.c, n: v.version.n };
  const expiresAt = v.expiresAt;
  switch (v.op) {
    case 'set':
      if (typeof v.data !== 'string' || !Number.isSafeInteger(expiresAt)) return undefined;
      return { op: 'set', sid: v.sid, data: v.data, expiresAt: expiresAt as number, version };
    case 'touch':
      if (!Number.isSafeInteger(expiresAt)) return undefined;
      return { op: 'touch', sid: v.sid, expiresAt: expiresAt as number, version };
    case 'destroy':
      return { op: 'destroy', sid: v.sid, version };
    default:
      return undefined;
  }
}
