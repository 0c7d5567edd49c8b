import os from 'node:os';
import type { MeshLogger } from './peer.js';

/** The interface multicast runs on: its address, and the form `setMulticastInterface` takes. */
export interface MulticastInterface {
  address: string;
  multicastInterface: string;
}

/** The interface address to use, and for IPv6 the `::%name` form Node wants for multicast. */
export function pickInterface(
  use: 'v4' | 'v6',
  wanted: string | undefined,
  logger: MeshLogger,
): MulticastInterface {
  const all = Object.entries(os.networkInterfaces()).flatMap(([ifname, list]) =>
    (list ?? []).map((i) => ({ ...i, ifname })),
  );
  const family = use === 'v4' ? 'IPv4' : 'IPv6';
  const bare = wanted?.split('%')[0];
  const found = bare
    ? all.find((i) => i.family === family && i.address === bare)
    : (all.find(
        (i) =>
          i.family === family && !i.internal && !(use === 'v6' && i.address.startsWith('fe80')),
      ) ?? all.find((i) => i.family === family && !i.internal));
  if (!found) {
    if (wanted) return { address: wanted, multicastInterface: wanted };
    const loop = use === 'v4' ? '127.0.0.1' : '::1';
    logger.warn(
      `sticky-mesh: no non-internal ${family} address on this host; multicast stays on ${loop} ` +
        '(only nodes on this machine will see each other)',
    );
    const lo = all.find((i) => i.address === loop);
    return { address: loop, multicastInterface: use === 'v4' ? loop : `::%${lo?.ifname ?? 'lo'}` };
  }
  return use === 'v4'
    ? { address: found.address, multicastInterface: found.address }
    : {
        address: found.address.startsWith('fe80')
          ? `${found.address}%${found.ifname}`
          : found.address,
        multicastInterface: `::%${found.ifname}`,
      };
}
