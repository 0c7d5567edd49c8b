import { InvalidOptionError } from '../../../errors.js';
import { boolean, integer } from '../../../validate.js';
import { ReplicatedStore } from '../../store.js';
import { type ReplicatedStoreOptions, STORE_DEFAULTS } from '../../store-options.js';
import type { MulticastOptions } from './options.js';

/**
 * The options of express-session-multicast's store (its names and defaults), plus `secret`
 * (or `insecure: true`) and any {@link ReplicatedStoreOptions}.
 */
export interface MulticastStoreOptions
  extends MulticastOptions,
    Omit<ReplicatedStoreOptions, 'multicast'> {
  /**
   * Give sessions whose cookie has no expiry a lifetime of `sessionTTL`. With `false` they get
   * the store's `ttl` (one day by default): a session never lives for ever.
   * @default true
   */
  useSessionTTL?: boolean;
  /**
   * Lifetime, in ms, of a session whose cookie has no expiry (with `useSessionTTL`).
   * @default the store's `ttl` (one day unless given)
   */
  sessionTTL?: number;
  /**
   * Accepted for compatibility and ignored: the store never takes over signals. The
   * application's shutdown calls `store.close()` (sticky's shutdown closes the machine's
   * socket itself).
   */
  gracefullShutdown?: boolean;
}

export type MulticastStoreConstructor = new (options?: MulticastStoreOptions) => ReplicatedStore;

/**
 * The defaults of the options only this constructor has (`sessionTTL` has none of its own: it
 * is the store's `ttl`, whose default is in `STORE_DEFAULTS`).
 */
export const MULTICAST_STORE_DEFAULTS = Object.freeze({ useSessionTTL: true });

/** The store's own options; every other key is a multicast option. */
const STORE_KEYS = new Set<string>(
  Object.keys(STORE_DEFAULTS).filter((key) => key !== 'multicast' && key !== 'redis'),
);

/**
 * express-session-multicast's call form: `multicastStore(session)` returns a store constructor
 * that takes that package's options, so its README example runs with the import changed and a
 * `secret` added. The store is a {@link ReplicatedStore} replicating over multicast.
 *
 * `session` is the express-session module (accepted for compatibility; the store extends the
 * express-session `Store` it finds installed).
 */
export function multicastStore(session?: unknown): MulticastStoreConstructor {
  if (session !== undefined && typeof session !== 'function' && typeof session !== 'object') {
    throw new InvalidOptionError('session', 'the express-session module', session);
  }
  return class MulticastStore extends ReplicatedStore {
    constructor(options: MulticastStoreOptions = {}) {
      const { useSessionTTL, sessionTTL, gracefullShutdown: _ignored, ...rest } = options;
      const store: Record<string, unknown> = {};
      const multicast: Record<string, unknown> = {};
      for (const [key, value] of Object.entries(rest)) {
        (STORE_KEYS.has(key) ? store : multicast)[key] = value;
      }
      const useTtl = boolean(
        'useSessionTTL',
        useSessionTTL ?? MULTICAST_STORE_DEFAULTS.useSessionTTL,
      );
      if (sessionTTL !== undefined) integer('sessionTTL', sessionTTL, 1, 2 ** 47);
      if (useTtl && sessionTTL !== undefined) store.ttl = sessionTTL;
      super({ ...store, multicast: multicast as MulticastOptions });
    }
  };
}
