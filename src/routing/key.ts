import type { SlotPicker } from '../hash.js';
import type { ResolvedStickyOptions } from '../options.js';
import { fromForwarded, fromForwardedFor } from './forwarded.js';
import { parseHead } from './head.js';
import { fieldValues } from './scope.js';
import { cookieValue, idFromCookieValue, queryParam, sessionIdSlot } from './session-id.js';

/**
 * Where a request belongs, read from its head alone. The primary reads this for the first
 * request of a connection; a worker reads it for every later request on the same connection,
 * with the same function and options, so both always agree.
 */
export interface RouteKey {
  /** The slot its session id names (session-id affinity), whether or not that slot is ready. */
  owner?: number | undefined;
  /**
   * The client's address key; `undefined` when the request names no usable address and the
   * options forbid a fallback (answer 400, unless `owner` is ready).
   */
  key?: string | undefined;
}

export type RouteOptions = Pick<
  ResolvedStickyOptions,
  'proxy' | 'header' | 'trustedProxies' | 'ignoreMissingHeader' | 'sessionAffinity' | 'seed' | 'num'
>;

/**
 * Reads a request's routing key.
 * - Session-id affinity: an id made for this configuration names its owner slot.
 * - In proxy mode the client address comes from `header`; a missing or unusable value falls
 *   back to `peer` (the TCP peer, or the PROXY protocol source) only with `ignoreMissingHeader`.
 * - Otherwise the key is `peer`.
 * `head` is one complete request head (as `findHeadEnd` delimits it), or `undefined` when no head
 * was read (PROXY protocol in front of TLS).
 */
export function routeKey(
  head: Uint8Array | undefined,
  peer: string | undefined,
  options: RouteOptions,
): RouteKey {
  const parsed = head && (options.proxy || options.sessionAffinity) ? parseHead(head) : undefined;
  return routeFrom(parsed?.target, (name) => parsed?.headers.get(name), peer, options);
}

/**
 * The same, from a head as Node's parser reports it: the request target and its header lines
 * (`name, value, name, value, ...`, names in any case). A worker reads each later request of a
 * kept-open connection this way, from the head its server's parser has already read.
 */
export function routeFields(
  target: string,
  fields: readonly string[],
  peer: string | undefined,
  options: RouteOptions,
): RouteKey {
  return routeFrom(target, (name) => fieldValues(fields, name), peer, options);
}

function routeFrom(
  target: string | undefined,
  header: (name: string) => readonly string[] | undefined,
  peer: string | undefined,
  options: RouteOptions,
): RouteKey {
  const affinity = options.sessionAffinity;
  const owner =
    target !== undefined && affinity
      ? sessionSlot(
          target,
          affinity.cookie === undefined ? undefined : header('cookie'),
          affinity,
          options,
        )
      : undefined;
  if (!options.proxy) return { owner, key: peer };
  const values = target === undefined ? undefined : header(options.header);
  let key: string | undefined;
  if (values) {
    key =
      options.header === 'forwarded'
        ? fromForwarded(values, options.trustedProxies)
        : fromForwardedFor(values, options.trustedProxies);
  }
  if (key === undefined && options.ignoreMissingHeader) key = peer;
  return { owner, key };
}

/**
 * The slot for a routing key among the `live` slots: the session's owner when it is live, else
 * the key's rendezvous choice; `undefined` when no slot is live or there is no key.
 */
export function slotFor(
  route: RouteKey,
  pick: SlotPicker,
  live: readonly number[],
): number | undefined {
  if (route.owner !== undefined && live.includes(route.owner)) return route.owner;
  return route.key === undefined ? undefined : pick(route.key, live);
}

/** The slot a request's session id names, if it carries one made for this configuration. */
function sessionSlot(
  target: string,
  cookies: readonly string[] | undefined,
  where: Exclude<ResolvedStickyOptions['sessionAffinity'], false>,
  options: RouteOptions,
): number | undefined {
  if (where.query !== undefined) {
    const id = queryParam(target, where.query);
    const slot = id === undefined ? undefined : sessionIdSlot(id, options.seed, options.num);
    if (slot !== undefined) return slot;
  }
  if (where.cookie !== undefined && cookies) {
    const value = cookieValue(cookies, where.cookie);
    const id = value === undefined ? undefined : idFromCookieValue(value);
    if (id !== undefined) return sessionIdSlot(id, options.seed, options.num);
  }
  return undefined;
}
