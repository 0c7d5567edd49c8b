import { isIPv4, isIPv6 } from 'node:net';

/**
 * Canonical text of a client address, so every spelling of one address yields one routing key:
 * IPv4-mapped IPv6 (`::ffff:1.2.3.4`, `::ffff:102:304`, `0:0:0:0:0:ffff:1.2.3.4`) becomes the
 * IPv4 text, other IPv6 addresses take their RFC 5952 form (lower case, longest zero run
 * compressed), a zone id (`%eth0`) is dropped. Returns `undefined` for anything that is not an
 * IP address. Never throws.
 */
export function normaliseAddress(address: string | undefined): string | undefined {
  if (!address) return undefined;
  if (!address.includes(':')) return isIPv4(address) ? address : undefined;
  // Fast path: the form Node itself reports for IPv4 clients on a dual-stack socket.
  if (address.startsWith('::ffff:') && address.includes('.')) {
    const v4 = address.slice(7);
    return isIPv4(v4) ? v4 : undefined;
  }
  const zone = address.indexOf('%');
  const bare = (zone === -1 ? address : address.slice(0, zone)).toLowerCase();
  if (!isIPv6(bare)) return undefined;
  const groups = ipv6Groups(bare);
  if (groups === undefined) return undefined;
  if (groups.slice(0, 5).every((g) => g === 0) && groups[5] === 0xffff) {
    const hi = groups[6] ?? 0;
    const lo = groups[7] ?? 0;
    return `${hi >> 8}.${hi & 0xff}.${lo >> 8}.${lo & 0xff}`;
  }
  return formatIPv6(groups);
}

/** The eight 16-bit groups of a valid IPv6 text (`isIPv6` already checked). */
function ipv6Groups(text: string): number[] | undefined {
  let head = text;
  let tail: number[] = [];
  const dot = text.lastIndexOf(':');
  if (text.includes('.', dot)) {
    const parts = text
      .slice(dot + 1)
      .split('.')
      .map(Number);
    const [a = 0, b = 0, c = 0, d = 0] = parts;
    tail = [(a << 8) | b, (c << 8) | d];
    head = text.slice(0, dot);
    // `::1.2.3.4`, `1::1.2.3.4`: the `::` sat right before the IPv4 part; keep it whole.
    if (head.endsWith(':')) head += ':';
  }
  const parse = (s: string) => (s === '' ? [] : s.split(':').map((g) => Number.parseInt(g, 16)));
  const gap = head.indexOf('::');
  let groups: number[];
  if (gap === -1) {
    groups = [...parse(head), ...tail];
  } else {
    const left = parse(head.slice(0, gap));
    const right = [...parse(head.slice(gap + 2)), ...tail];
    groups = [...left, ...new Array<number>(8 - left.length - right.length).fill(0), ...right];
  }
  return groups.length === 8 && groups.every((g) => g >= 0 && g <= 0xffff) ? groups : undefined;
}

/** RFC 5952 text: lower-case hex, no leading zeros, the longest run (>= 2) of zero groups as `::`. */
function formatIPv6(groups: number[]): string {
  let bestStart = -1;
  let bestLength = 1;
  for (let i = 0; i < 8; ) {
    if (groups[i] !== 0) {
      i++;
      continue;
    }
    let j = i;
    while (j < 8 && groups[j] === 0) j++;
    if (j - i > bestLength) {
      bestStart = i;
      bestLength = j - i;
    }
    i = j;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}
