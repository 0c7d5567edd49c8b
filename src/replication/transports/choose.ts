import { InvalidOptionError } from '../../errors.js';
import type { ResolvedLogger } from '../../logger.js';
import { TRANSPORT_ENV } from '../../protocol/messages.js';
import { type Clock, isFarAhead } from '../clock.js';
import { SessionTable } from '../table.js';
import type { ReplicaHost, Transport } from '../transport.js';
import { hubClient } from './ipc/client.js';
import { type MulticastOptions, resolveMulticastOptions } from './multicast/options.js';
import { type MulticastStats, MulticastTransport } from './multicast/transport.js';
import { type RedisOption, resolveRedisOptions } from './redis/options.js';
import { type RedisStats, RedisTransport } from './redis/transport.js';

/**
 * Which transport a replica uses, in one place: the primary asks for its link to other machines
 * here, and a store for its whole replica (table and transport), so that neither knows the
 * transports apart.
 */

/** A transport between machines, as the primary's hub or a standalone store runs it. */
export type MachineTransport = MulticastTransport | RedisTransport;
export type MachineStats = MulticastStats | RedisStats;

export interface TransportOptions {
  multicast?: MulticastOptions | undefined;
  redis?: RedisOption | undefined;
  /** Where the transport logs unless its own options name a logger (sticky's, the store's). */
  logger?: ResolvedLogger | undefined;
}

/**
 * Validates whichever transport option is given (at most one); returns what builds it, or
 * `undefined` when sessions stay on this machine.
 */
export function resolveTransport(
  options: TransportOptions,
): ((host: ReplicaHost) => MachineTransport) | undefined {
  const { multicast, redis, logger } = options;
  if (multicast !== undefined && redis !== undefined) {
    throw InvalidOptionError.explained(
      'redis',
      'give either "multicast" or "redis", not both: one transport replicates a machine',
    );
  }
  if (multicast !== undefined) {
    const resolved = resolveMulticastOptions(multicast, 'multicast', logger);
    return (host) => new MulticastTransport(resolved, host);
  }
  if (redis !== undefined) {
    const resolved = resolveRedisOptions(redis, 'redis', logger);
    return (host) => new RedisTransport(resolved, host);
  }
  return undefined;
}

/** A store's sessions and how its writes travel (none: a plain in-process store). */
export interface Replica {
  readonly table: SessionTable;
  readonly transport: Transport | undefined;
  /**
   * Changes received from other machines stamped further ahead of this clock than
   * `MAX_DRIFT_MS` (standalone transports; in a worker the primary's hub counts them).
   */
  readonly counters: { versionsAhead: number };
}

/**
 * The replica a store uses. In a sticky-mesh worker: the process's replica, fed by the hub over
 * IPC (a transport option given to the store must then be the one the primary runs, which holds
 * the machine's one link to other machines). Elsewhere: a table of its own, with the transport
 * its options ask for. `clock` observes every change received from elsewhere.
 */
export function openReplica(
  options: TransportOptions & { tombstoneTtl: number },
  clock: Clock,
): Replica {
  const build = resolveTransport(options);
  const client = hubClient(options.tombstoneTtl);
  if (client) {
    const kind = options.multicast !== undefined ? 'multicast' : build ? 'redis' : undefined;
    if (kind && process.env[TRANSPORT_ENV] !== kind) {
      throw InvalidOptionError.explained(
        kind,
        `in a sticky-mesh worker the ${kind} options belong in sticky({ ${kind}: ... }): the ` +
          "primary holds the machine's one link to the other machines and feeds every worker",
      );
    }
    return { table: client.table, transport: client.link(clock), counters: { versionsAhead: 0 } };
  }
  const table = new SessionTable({ tombstoneTtl: options.tombstoneTtl });
  const counters = { versionsAhead: 0 };
  const transport = build?.({
    table,
    applyRemote: (changes) => {
      const now = Date.now();
      for (const change of changes) {
        if (isFarAhead(change.version, now)) counters.versionsAhead++;
        if (table.apply(change)) clock.observe(change.version);
      }
    },
  });
  return { table, transport, counters };
}
