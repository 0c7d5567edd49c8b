import { normaliseAddress } from './address.js';

/**
 * Client addresses from forwarding headers. Pure; never throws; a value that is not a usable
 * address yields `undefined`, which the caller treats exactly like a missing header.
 *
 * Which hop to trust: proxies append the address they received a request from on the right, and
 * the left-most value is whatever the client wrote. `trustedHops = 0` takes the left-most entry
 * (the conventional choice, spoofable); `trustedHops = n` takes the n-th entry from the right,
 * the one written by the outermost of n proxies you run yourself.
 */

/**
 * One address token as it appears in `X-Forwarded-For` or `Forwarded: for=`: optional quotes,
 * IPv6 with or without brackets, an optional port (`1.2.3.4:5678`, `[::1]:80`), surrounding
 * whitespace. `unknown`, obfuscated identifiers (`_hidden`) and garbage give `undefined`.
 */
export function parseAddressToken(token: string): string | undefined {
  let t = token.trim();
  if (t.length >= 2 && t.startsWith('"') && t.endsWith('"')) t = t.slice(1, -1).trim();
  if (t === '' || t.length > 100) return undefined;
  if (t.startsWith('[')) {
    const close = t.indexOf(']');
    if (close === -1) return undefined;
    const rest = t.slice(close + 1);
    if (rest !== '' && !/^:\d{1,5}$/.test(rest)) return undefined;
    return normaliseAddress(t.slice(1, close));
  }
  const colons = t.split(':').length - 1;
  if (colons === 1) {
    // IPv4 with a port.
    const [host, port] = t.split(':');
    return port && /^\d{1,5}$/.test(port) ? normaliseAddress(host) : undefined;
  }
  return normaliseAddress(t);
}

/** Picks the hop to trust from a list (see the module comment); `undefined` if there is none. */
export function pickHop<T>(hops: readonly T[], trustedHops: number): T | undefined {
  if (trustedHops <= 0) return hops[0];
  return hops.length >= trustedHops ? hops[hops.length - trustedHops] : undefined;
}

/**
 * The client address from the values of an `X-Forwarded-For`-style header (all lines of it, in
 * order: repeated lines form one list, as RFC 9110 section 5.3 says).
 */
export function fromForwardedFor(
  values: readonly string[],
  trustedHops: number,
): string | undefined {
  const hops = values.flatMap((v) => v.split(','));
  const hop = pickHop(hops, trustedHops);
  return hop === undefined ? undefined : parseAddressToken(hop);
}

/** The client address from the values of a `Forwarded` header (RFC 7239), by its `for=` pairs. */
export function fromForwarded(values: readonly string[], trustedHops: number): string | undefined {
  const elements = values.flatMap(splitOutsideQuotes(','));
  const hop = pickHop(elements, trustedHops);
  if (hop === undefined) return undefined;
  for (const pair of splitOutsideQuotes(';')(hop)) {
    const eq = pair.indexOf('=');
    if (eq !== -1 && pair.slice(0, eq).trim().toLowerCase() === 'for') {
      return parseAddressToken(pair.slice(eq + 1));
    }
  }
  return undefined;
}

/** Splits on `separator` except inside double-quoted strings (which may contain it). */
function splitOutsideQuotes(separator: string): (value: string) => string[] {
  return (value) => {
    const out: string[] = [];
    let quoted = false;
    let start = 0;
    for (let i = 0; i < value.length; i++) {
      const c = value[i];
      if (c === '"' && value[i - 1] !== '\\') quoted = !quoted;
      else if (c === separator && !quoted) {
        out.push(value.slice(start, i));
        start = i + 1;
      }
    }
    out.push(value.slice(start));
    return out;
  };
}
