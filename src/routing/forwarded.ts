import { normaliseAddress } from './address.js';

/**
 * Client addresses from forwarding headers. Pure; never throws; a value that is not a usable
 * address yields `undefined`, which the caller treats exactly like a missing header.
 *
 * Which hop to trust: proxies append the address they received a request from on the right, and
 * the left-most value is whatever the client wrote. `trustedHops = n` takes the n-th entry from the
 * right, the one written by the outermost of n proxies you run yourself (the option's default is
 * 1); `trustedHops = 0` takes the left-most entry, which any client can choose.
 *
 * With `trustedHops >= 1`, text a client controls never decides the key, however malformed. A
 * proxy adds its hop after everything the client sent: on the client's last line after ", "
 * (nginx's `$proxy_add_x_forwarded_for`, the `$proxy_add_forwarded` map nginx documents, HAProxy's
 * `option forwarded` when it accepts the client's header) or on a line of its own (HAProxy's
 * `option forwardfor`, and `option forwarded` otherwise). The trusted hops are therefore the last
 * n list elements, and each list is read so that they are found from their own characters alone:
 * - `X-Forwarded-For` has no quoting: its entries are the text between commas, so the last n are
 *   what the proxies wrote whatever precedes them (commas and quotes included).
 * - `Forwarded` (RFC 7239) is read from the right end of each line, element by element, with
 *   RFC 7230's quoted-string and quoted-pair. Read from the right, a closing quote's opening quote
 *   is the nearest `"` before it that follows an even run of backslashes: inside a quoted-string a
 *   `"` only occurs as a quoted-pair (after an odd run, each backslash there starting a pair), and
 *   an opening quote follows `=`. So a proxy's element, and the comma before it, parse the same
 *   whatever the client wrote before them; read from the left, a client's unterminated quote
 *   would pair with a quote of the proxy's (a quoted IPv6 address, a Host) and hide its element.
 *   The first text from the right that is not an element (a stray or unterminated quote, a lone
 *   backslash, a pair without `=`) ends the line: all of the line left of it counts as one
 *   element, an unusable one. Lines are read separately, so nothing reaches into the next line.
 *   `trustedHops = 0` takes the left-most element of that reading (unusable if it is malformed).
 *   Empty list elements are skipped (RFC 7230 section 7), an element naming `for` twice is
 *   unusable, and OWS around `;` and unquoted `:`, `[`, `]` in values (a port, an IPv6 address,
 *   which RFC 7239 wants quoted) are tolerated: none of them can end or start an element.
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
  const hop = pickHop(values.flatMap(elementsOf), trustedHops);
  const fors = hop?.filter(([name]) => name === 'for') ?? [];
  return fors.length === 1 ? parseAddressToken(fors[0]?.[1] ?? '') : undefined;
}

/** A `Forwarded` element: its pairs, names in lower case, values unquoted. */
type Element = readonly (readonly [name: string, value: string])[];
/** Where malformed text stood: one element without parameters, so without an address. */
const UNUSABLE: Element = [];

/** A line's elements, left to right, read from its right end (see the module comment). */
function elementsOf(line: string): Element[] {
  const out: Element[] = [];
  let end = skipOws(line, line.length);
  while (end > 0) {
    if (line[end - 1] === ',') {
      end = skipOws(line, end - 1); // the comma before an element, or an empty list element
      continue;
    }
    const element = elementBefore(line, end);
    if (element === undefined) {
      out.push(UNUSABLE);
      break;
    }
    out.push(element.pairs);
    end = element.start; // at a comma or the line's start
  }
  return out.reverse();
}

/**
 * The element that ends at `end` (after its trailing OWS): pairs separated by `;`, possibly empty,
 * back to the comma before it (which stays unread) or the line's start. `undefined` if the text
 * there is not an element.
 */
function elementBefore(line: string, end: number): { pairs: Element; start: number } | undefined {
  const pairs: (readonly [string, string])[] = [];
  let i = end;
  for (;;) {
    if (i > 0 && line[i - 1] !== ';') {
      const value = valueBefore(line, i);
      if (value === undefined || line[value.start - 1] !== '=') return undefined;
      const name = tokenBefore(line, value.start - 1, isTchar);
      if (name === value.start - 1) return undefined;
      pairs.push([line.slice(name, value.start - 1).toLowerCase(), value.text]);
      i = skipOws(line, name);
    }
    if (i === 0 || line[i - 1] === ',') return { pairs: pairs.reverse(), start: i };
    if (line[i - 1] !== ';') return undefined;
    i = skipOws(line, i - 1);
    if (i > 0 && line[i - 1] === ',') return { pairs: pairs.reverse(), start: i };
  }
}

/** The value (token or quoted-string, unquoted) that ends at `end`; `undefined` if none does. */
function valueBefore(line: string, end: number): { text: string; start: number } | undefined {
  if (line[end - 1] !== '"') {
    const start = tokenBefore(line, end, isValueChar);
    return start === end ? undefined : { text: line.slice(start, end), start };
  }
  const open = openingQuote(line, end - 1);
  const text = open === -1 ? undefined : unquote(line, open + 1, end - 1);
  return text === undefined ? undefined : { text, start: open };
}

/**
 * The opening quote for the quote at `close`: the nearest `"` before it after an even run of
 * backslashes (see the module comment); -1 if there is none. Each character is looked at at most
 * twice, so a long run of quotes and backslashes costs linear time.
 */
function openingQuote(line: string, close: number): number {
  for (let k = close - 1; k >= 0; k--) {
    if (line[k] !== '"') continue;
    let backslashes = 0;
    while (k - backslashes > 0 && line[k - backslashes - 1] === '\\') backslashes++;
    if (backslashes % 2 === 0) return k;
    k -= backslashes;
  }
  return -1;
}

/**
 * The text a quoted-string's content stands for (RFC 7230 section 3.2.6: qdtext and quoted-pairs),
 * `from` and `to` bounding the content; `undefined` if it is not valid content.
 */
function unquote(line: string, from: number, to: number): string | undefined {
  let text = '';
  for (let i = from; i < to; i++) {
    let c = line.charCodeAt(i);
    if (c === BACKSLASH) {
      i++;
      c = line.charCodeAt(i);
      const pairable = c === HTAB || (c >= 0x20 && c <= 0x7e) || (c >= 0x80 && c <= 0xff);
      if (i >= to || !pairable) return undefined;
    } else if (c === QUOTE || !isQdtext(c)) {
      return undefined;
    }
    text += String.fromCharCode(c);
  }
  return text;
}

const HTAB = 0x09;
const QUOTE = 0x22;
const BACKSLASH = 0x5c;
const TCHARS = new Set(
  "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ",
);

/** RFC 7230 tchar. */
function isTchar(c: string): boolean {
  return TCHARS.has(c);
}

/** A character of an unquoted value: tchar, or `:` `[` `]` some proxies leave unquoted. */
function isValueChar(c: string): boolean {
  return TCHARS.has(c) || c === ':' || c === '[' || c === ']';
}

/** RFC 7230 qdtext (`"` and `\` excluded), obs-text included. */
function isQdtext(c: number): boolean {
  return (
    c === HTAB ||
    c === 0x20 ||
    c === 0x21 ||
    (c >= 0x23 && c <= 0x7e && c !== BACKSLASH) ||
    (c >= 0x80 && c <= 0xff)
  );
}

/** Where a run of characters `accepts` that ends at `end` starts (`end` if there is none). */
function tokenBefore(line: string, end: number, accepts: (c: string) => boolean): number {
  let i = end;
  while (i > 0 && accepts(line[i - 1] as string)) i--;
  return i;
}

/** Where the OWS (spaces and tabs) that ends at `end` starts. */
function skipOws(line: string, end: number): number {
  let i = end;
  while (i > 0 && (line[i - 1] === ' ' || line[i - 1] === '\t')) i--;
  return i;
}
