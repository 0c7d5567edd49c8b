/**
 * The one set of limits a session change must fit, wherever it is made or read: the store
 * checks a write against them before it applies anything, and every parser of a change from
 * elsewhere (the primary's hub, a worker's replica, multicast datagrams and state transfers,
 * Redis records and messages) refuses what does not fit them. A write the store accepts is
 * therefore one every replica accepts: a replica never holds a change the others refuse.
 */
export const LIMITS = Object.freeze({
  /**
   * Longest session id, in characters (UTF-16 code units, a JavaScript string's `length`);
   * express-session's ids are 32.
   */
  maxSidLength: 256,
  /**
   * Largest session, in bytes of its JSON (UTF-8): the highest `maxSessionBytes` may be set to.
   * Receivers accept up to this much whatever their own `maxSessionBytes`.
   */
  maxSessionBytes: 64 * 1024 * 1024,
});

/**
 * Bytes a change takes beside its session data, at most, in any encoding (its id in UTF-8, the
 * version, the expiry, the framing): what a decoder allows above `LIMITS.maxSessionBytes`.
 */
export const MAX_CHANGE_OVERHEAD = 4096;

/** A surrogate that is not half of a pair (unicode mode matches whole code points). */
const LONE_SURROGATE = /[\uD800-\uDFFF]/u;

/**
 * Why `sid` cannot be a session id anywhere, or `undefined` if it can: a non-empty string of at
 * most `LIMITS.maxSidLength` characters that UTF-8 carries unchanged (no lone surrogate: the
 * multicast codec and Redis would turn it into another id).
 */
export function sidProblem(sid: unknown): string | undefined {
  if (typeof sid !== 'string') return `is a ${typeof sid}, not a string`;
  if (sid.length === 0) return 'is empty';
  if (sid.length > LIMITS.maxSidLength) {
    return `is ${sid.length} characters long, over the limit of ${LIMITS.maxSidLength}`;
  }
  if (LONE_SURROGATE.test(sid)) return 'holds a lone UTF-16 surrogate (not valid UTF-8)';
  return undefined;
}

/** Why session data (JSON) cannot travel, or `undefined` if it can. */
export function dataProblem(data: string): string | undefined {
  const max = LIMITS.maxSessionBytes;
  // UTF-8 takes at most 3 bytes per UTF-16 code unit: most sessions need no counting.
  if (data.length * 3 <= max) return undefined;
  const bytes = Buffer.byteLength(data);
  return bytes > max ? `is ${bytes} bytes as JSON, over the limit of ${max}` : undefined;
}
