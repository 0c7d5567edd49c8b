import { HTTP_TOKEN } from '../validate.js';

/**
 * Reading an HTTP/1.x request head in the primary (proxy mode). Pure functions over bytes: they
 * never throw and never look past the bytes they are given, so the caller's size cap bounds all
 * work and memory.
 */

const LF = 0x0a;
const CR = 0x0d;

/**
 * Index just past the blank line that ends the request head in `buf`, or -1 if the head is not
 * complete yet. Tolerates bare LF line ends (`\n\n`, `\r\n\n`, `\n\r\n`) as HTTP parsers do,
 * and skips empty lines before the request line (RFC 9112 section 2.2).
 */
export function findHeadEnd(buf: Uint8Array): number {
  let i = 0;
  // Leading empty lines are not the end of a head that has not started.
  while (i < buf.length && (buf[i] === CR || buf[i] === LF)) i++;
  for (; i < buf.length; i++) {
    if (buf[i] !== LF) continue;
    // A line ended at i; the head ends if the next line is empty.
    const next = i + 1;
    if (buf[next] === LF) return next + 1;
    if (buf[next] === CR && buf[next + 1] === LF) return next + 2;
  }
  return -1;
}

export interface RequestHead {
  method: string;
  /** The request target as sent (origin form `/path?query`, or absolute form). */
  target: string;
  /** Header values by lower-case name, in the order they appeared (repeated lines kept apart). */
  headers: Map<string, string[]>;
}

/**
 * Parses a complete request head (as delimited by `findHeadEnd`). Returns `undefined` for
 * anything that is not a plausible HTTP/1.x request head; the caller then treats the request as
 * carrying no routing information. Header names match exactly, case-insensitively; a name with
 * whitespace before the colon or any non-token character is invalid, as in RFC 9112.
 */
export function parseHead(head: Uint8Array): RequestHead | undefined {
  const text = Buffer.from(head.buffer, head.byteOffset, head.byteLength).toString('latin1');
  const lines = text.split(/\r?\n/);
  let first = 0;
  while (first < lines.length && lines[first] === '') first++;
  const requestLine = lines[first];
  if (requestLine === undefined) return undefined;
  const parts = requestLine.split(' ');
  const [method, target, version] = parts;
  if (parts.length !== 3 || !method || !target || !HTTP_TOKEN.test(method)) return undefined;
  if (!version || !/^HTTP\/1\.[01]$/.test(version)) return undefined;
  const headers = new Map<string, string[]>();
  for (let i = first + 1; i < lines.length; i++) {
    const line = lines[i] as string;
    if (line === '') break;
    const colon = line.indexOf(':');
    if (colon <= 0) return undefined;
    const name = line.slice(0, colon);
    if (!HTTP_TOKEN.test(name)) return undefined;
    const value = line.slice(colon + 1).trim();
    const key = name.toLowerCase();
    const values = headers.get(key);
    if (values) values.push(value);
    else headers.set(key, [value]);
  }
  return { method, target, headers };
}
