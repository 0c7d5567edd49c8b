import { isVersion } from './clock.js';
import { dataProblem, LIMITS, sidProblem } from './limits.js';
import type { Change } from './table.js';

/** Longest session id accepted anywhere (see limits.ts; express-session's are 32 characters). */
export const MAX_SID_LENGTH = LIMITS.maxSidLength;

/**
 * Whether a session id looks like one a session store made (8 to 256 printable ASCII characters,
 * no spaces): only such ids are asked of the cluster on a read miss, not any cookie junk.
 */
export function isSessionIdLike(sid: string): boolean {
  return sid.length >= 8 && sid.length <= MAX_SID_LENGTH && /^[\x21-\x7e]+$/.test(sid);
}

/**
 * Why a change already decoded from the binary codec (its shape, version and expiry checked
 * there) cannot be applied: its id or data over the limits. `undefined` when it can. The reasons
 * are `checkChange`'s.
 */
export function limitProblem(change: Change): string | undefined {
  const sid = sidProblem(change.sid);
  if (sid !== undefined) return `its session id ${sid}`;
  const data = change.op === 'set' ? dataProblem(change.data) : undefined;
  return data === undefined ? undefined : `its session ${data}`;
}

/**
 * A change received from another process, checked field by field: anything that is not exactly
 * a well-formed change within the limits (limits.ts) gives `undefined` (to be dropped and
 * counted). Never throws.
 */
export function parseChange(value: unknown): Change | undefined {
  const checked = checkChange(value);
  return typeof checked === 'string' ? undefined : checked;
}

/**
 * {@link parseChange}, saying why a change is refused: the change, or the reason (what the
 * primary's hub answers a worker whose write it refuses). Never throws.
 */
export function checkChange(value: unknown): Change | string {
  if (typeof value !== 'object' || value === null) return 'not a change';
  const v = value as Record<string, unknown>;
  const sid = sidProblem(v.sid);
  if (sid !== undefined) return `its session id ${sid}`;
  const id = v.sid as string;
  if (!isVersion(v.version)) return 'no valid version';
  const version = { t: v.version.t, c: v.version.c, n: v.version.n };
  const expiresAt = v.expiresAt;
  switch (v.op) {
    case 'set': {
      if (typeof v.data !== 'string') return 'a set without session data';
      if (!Number.isSafeInteger(expiresAt)) return 'no valid expiry';
      const data = dataProblem(v.data);
      if (data !== undefined) return `its session ${data}`;
      return { op: 'set', sid: id, data: v.data, expiresAt: expiresAt as number, version };
    }
    case 'touch':
      if (!Number.isSafeInteger(expiresAt)) return 'no valid expiry';
      return { op: 'touch', sid: id, expiresAt: expiresAt as number, version };
    case 'destroy':
      return { op: 'destroy', sid: id, version };
    default:
      return 'an unknown operation';
  }
}
