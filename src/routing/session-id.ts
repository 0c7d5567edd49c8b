import { randomFillSync } from 'node:crypto';
import { hashKey } from '../hash.js';

/**
 * Session ids that name the worker slot which owns them, so any balancer with the same `seed`
 * and worker count routes them to that slot with no lookup table and no race (the id exists in
 * the worker before any client can send it back).
 *
 * Layout (URL- and cookie-safe base64url, 27 characters):
 *   24 random characters (144 bits) | slot in 2 characters (12 bits) | 1 check character
 * The check character is a seeded hash of the rest, so an id made elsewhere (another generator,
 * another seed, a typo) is recognised as carrying no slot 63 times in 64, and then routed by
 * the client's address as usual. It is not a security measure: stickiness never is.
 */

const ALPHABET = 'ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_';
const RANDOM_CHARS = 24;
/** Length of an id made here. */
export const SESSION_ID_LENGTH = RANDOM_CHARS + 3;
/** Slots an id can name (two base64url characters). */
export const MAX_ENCODED_SLOT = 64 * 64 - 1;

function check(text: string, seed: number): string {
  return ALPHABET[hashKey(text, seed) & 63] as string;
}

/**
 * 18 random bytes as 24 base64url characters, from a pool the CSPRNG refills 4 KiB at a time:
 * express-session asks for an id on every request without a session cookie, and one system call
 * per id cost more than the rest of the id (each pool byte is used once).
 */
function randomId(): string {
  if (poolUsed + 18 > POOL.length) {
    randomFillSync(POOL);
    poolUsed = 0;
  }
  const id = POOL.toString('base64url', poolUsed, poolUsed + 18);
  poolUsed += 18;
  return id;
}
const POOL = Buffer.alloc(18 * 228);
let poolUsed = POOL.length;

/** A new random session id owned by `slot`. */
export function makeSessionId(slot: number, seed: number): string {
  if (!Number.isInteger(slot) || slot < 0 || slot > MAX_ENCODED_SLOT) {
    throw new RangeError(`slot must be an integer from 0 to ${MAX_ENCODED_SLOT}, got ${slot}`);
  }
  const random = randomId(); // 24 characters
  const body = `${random}${ALPHABET[slot >> 6]}${ALPHABET[slot & 63]}`;
  return `${body}${check(body, seed)}`;
}

/**
 * The slot an id names, or `undefined` when it was not made by `makeSessionId` with this seed
 * or names a slot outside `0 .. slotCount-1`. Never throws.
 */
export function sessionIdSlot(id: string, seed: number, slotCount: number): number | undefined {
  if (id.length !== SESSION_ID_LENGTH) return undefined;
  const body = id.slice(0, -1);
  if (id[id.length - 1] !== check(body, seed)) return undefined;
  const hi = ALPHABET.indexOf(id[RANDOM_CHARS] as string);
  const lo = ALPHABET.indexOf(id[RANDOM_CHARS + 1] as string);
  if (hi < 0 || lo < 0) return undefined;
  const slot = hi * 64 + lo;
  return slot < slotCount ? slot : undefined;
}

/**
 * The session id inside a cookie value as express-session writes it: URL-encoded, and signed
 * (`s:<id>.<signature>`) by default. The signature is not checked here: the worker does that;
 * routing only needs the id. Returns `undefined` for values that cannot hold an id.
 */
export function idFromCookieValue(value: string): string | undefined {
  let v: string;
  try {
    v = decodeURIComponent(value.trim());
  } catch {
    return undefined;
  }
  if (v.startsWith('"') && v.endsWith('"') && v.length >= 2) v = v.slice(1, -1);
  if (v.startsWith('s:')) {
    const dot = v.lastIndexOf('.');
    v = dot > 2 ? v.slice(2, dot) : v.slice(2);
  }
  return v === '' ? undefined : v;
}

/** The value of cookie `name` in the values of `Cookie` request headers, or `undefined`. */
export function cookieValue(headerValues: readonly string[], name: string): string | undefined {
  for (const header of headerValues) {
    for (const pair of header.split(';')) {
      const eq = pair.indexOf('=');
      if (eq !== -1 && pair.slice(0, eq).trim() === name) return pair.slice(eq + 1);
    }
  }
  return undefined;
}

/** The engine.io `sid` query parameter of a request target (`/socket.io/?EIO=4&sid=...`). */
export function sidFromTarget(target: string): string | undefined {
  return queryParam(target, 'sid');
}

/** The (decoded) value of query parameter `name` in a request target, or `undefined`. */
export function queryParam(target: string, name: string): string | undefined {
  const q = target.indexOf('?');
  if (q === -1) return undefined;
  const prefix = `${name}=`;
  // Read in place (no split of the query): engine.io asks this of every request.
  for (let at = q + 1; at < target.length; ) {
    const amp = target.indexOf('&', at);
    const end = amp === -1 ? target.length : amp;
    if (target.startsWith(prefix, at)) {
      try {
        return decodeURIComponent(target.slice(at + prefix.length, end)) || undefined;
      } catch {
        return undefined;
      }
    }
    at = end + 1;
  }
  return undefined;
}
