import { normaliseAddress } from './address.js';

/**
 * The PROXY protocol header (HAProxy's spec, versions 1 and 2) that a layer-4 proxy such as
 * HAProxy `send-proxy` / `send-proxy-v2` or an AWS NLB writes before the client's own bytes
 * (so it also precedes a TLS handshake). Pure; never throws; looks at no byte past the header.
 */
export type ProxyHeaderResult =
  /**
   * More bytes are needed to decide: at least `need` in all (no answer changes before), so a
   * caller reading in pieces asks again only then.
   */
  | { status: 'incomplete'; need: number }
  /** Not a PROXY header, or a malformed one. */
  | { status: 'invalid'; reason: string }
  /**
   * A complete header of `length` bytes. `source` is the client address, or `undefined` for a
   * header that carries none (v1 `UNKNOWN`, v2 `LOCAL`, UNIX or unspecified families): the
   * connection is then keyed as if no header had been sent.
   */
  | { status: 'ok'; length: number; source: string | undefined };

const V2_SIGNATURE = Buffer.from([
  0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a,
]);
const V1_PREFIX = Buffer.from('PROXY ', 'latin1');
/** The v1 spec's longest line, CRLF included. */
const V1_MAX = 107;

export function parseProxyHeader(buf: Uint8Array): ProxyHeaderResult {
  if (buf.length === 0) return { status: 'incomplete', need: 1 };
  if (startsWithPartial(buf, V2_SIGNATURE)) {
    return buf.length < 16 ? { status: 'incomplete', need: 16 } : parseV2(buf);
  }
  if (startsWithPartial(buf, V1_PREFIX)) {
    return buf.length < V1_PREFIX.length
      ? { status: 'incomplete', need: V1_PREFIX.length }
      : parseV1(buf);
  }
  return { status: 'invalid', reason: 'no PROXY protocol signature' };
}

/** Whether `buf` and `prefix` agree on their common length. */
function startsWithPartial(buf: Uint8Array, prefix: Uint8Array): boolean {
  const n = Math.min(buf.length, prefix.length);
  for (let i = 0; i < n; i++) if (buf[i] !== prefix[i]) return false;
  return true;
}

function parseV1(buf: Uint8Array): ProxyHeaderResult {
  const limit = Math.min(buf.length, V1_MAX);
  let end = -1;
  for (let i = 1; i < limit; i++) {
    if (buf[i - 1] === 0x0d && buf[i] === 0x0a) {
      end = i + 1;
      break;
    }
  }
  if (end === -1) {
    return buf.length >= V1_MAX
      ? { status: 'invalid', reason: 'v1 header longer than 107 bytes' }
      : { status: 'incomplete', need: buf.length + 1 };
  }
  const line = Buffer.from(buf.buffer, buf.byteOffset, end - 2).toString('latin1');
  const fields = line.split(' ');
  if (fields[1] === 'UNKNOWN') return { status: 'ok', length: end, source: undefined };
  if (fields.length !== 6 || (fields[1] !== 'TCP4' && fields[1] !== 'TCP6')) {
    return { status: 'invalid', reason: 'malformed v1 header' };
  }
  const [, family, src, dst, sport, dport] = fields;
  const source = normaliseAddress(src);
  // TCP4 carries IPv4 text; TCP6 carries IPv6 text, which may be IPv4-mapped (`::ffff:a.b.c.d`,
  // what a dual-stack proxy reports for an IPv4 client): that source is keyed as the IPv4 address,
  // as the same header in v2 is.
  const familyMatches =
    source !== undefined &&
    (family === 'TCP4' ? !source.includes(':') : src?.includes(':') === true);
  const valid =
    familyMatches && normaliseAddress(dst) !== undefined && isPort(sport) && isPort(dport);
  return valid
    ? { status: 'ok', length: end, source }
    : { status: 'invalid', reason: 'malformed v1 addresses' };
}

function isPort(text: string | undefined): boolean {
  return text !== undefined && /^(0|[1-9]\d{0,4})$/.test(text) && Number(text) <= 65535;
}

function parseV2(buf: Uint8Array): ProxyHeaderResult {
  const verCmd = buf[12] ?? 0;
  if (verCmd >> 4 !== 2) return { status: 'invalid', reason: 'unsupported v2 version' };
  const command = verCmd & 0x0f;
  if (command > 1) return { status: 'invalid', reason: 'unknown v2 command' };
  const family = (buf[13] ?? 0) >> 4;
  const length = 16 + (((buf[14] ?? 0) << 8) | (buf[15] ?? 0));
  if (buf.length < length) return { status: 'incomplete', need: length };
  if (command === 0) return { status: 'ok', length, source: undefined }; // LOCAL: health checks
  if (family === 1) {
    if (length < 16 + 12) return { status: 'invalid', reason: 'short v2 IPv4 block' };
    return { status: 'ok', length, source: `${buf[16]}.${buf[17]}.${buf[18]}.${buf[19]}` };
  }
  if (family === 2) {
    if (length < 16 + 36) return { status: 'invalid', reason: 'short v2 IPv6 block' };
    const groups: string[] = [];
    for (let i = 0; i < 8; i++)
      groups.push((((buf[16 + 2 * i] ?? 0) << 8) | (buf[17 + 2 * i] ?? 0)).toString(16));
    return { status: 'ok', length, source: normaliseAddress(groups.join(':')) };
  }
  // UNSPEC or UNIX: no client address to key by.
  return { status: 'ok', length, source: undefined };
}
