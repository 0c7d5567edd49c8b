import cluster from 'node:cluster';
import { describe, StickyMeshError } from './errors.js';
import { StickyPrimary } from './master/primary.js';
import { type ResolvedStickyOptions, resolveOptions, type StickyOptions } from './options.js';
import { factoryArgumentProblem } from './server-shape.js';
import { hasMethods } from './validate.js';
import { type AnyServer, type ServerFactory, StickyWorker } from './worker/worker.js';

/**
 * What `sticky()` returns: the primary's controller in the primary, the worker's in a worker.
 * Both have `role`, `listen`, `ready`, `address`, `stats`, `close` and the events `ready`,
 * `shutdown` and `close`; narrow by `role` for the rest.
 */
export type StickyCluster = StickyPrimary | StickyWorker;

/**
 * Runs `factory`'s server on a cluster of workers behind one port, each client pinned to one
 * worker. Call the same way in every process (the usual cluster script); the primary binds and
 * balances, each worker runs the factory once, given its worker's controller (`worker.slot`,
 * `worker.genid`, `worker.on('shutdown', ...)`).
 *
 * Call forms: `sticky(options, factory)`, `sticky(num, factory)`, `sticky(factory)`, and a server
 * instance in place of the factory.
 */
export function sticky(factory: ServerFactory | AnyServer): StickyCluster;
export function sticky(
  options: StickyOptions | number | undefined,
  factory: ServerFactory | AnyServer,
): StickyCluster;
export function sticky(
  first: StickyOptions | number | undefined | ServerFactory | AnyServer,
  second?: ServerFactory | AnyServer,
): StickyCluster {
  const [rawOptions, rawFactory] =
    second === undefined && !isOptionsLike(first) ? [undefined, first] : [first, second];
  const options = toOptions(rawOptions);
  const factory = toFactory(rawFactory);
  return cluster.isPrimary ? new StickyPrimary(options) : new StickyWorker(options, factory);
}

function isOptionsLike(value: unknown): boolean {
  return (
    value === undefined || typeof value === 'number' || (isPlainObject(value) && !isServer(value))
  );
}

function toOptions(value: unknown): ResolvedStickyOptions {
  if (typeof value === 'number') return resolveOptions({ num: value });
  if (value === undefined || isPlainObject(value))
    return resolveOptions(value as StickyOptions | undefined);
  throw new StickyMeshError(
    'ERR_STICKY_INVALID_ARGUMENT',
    `sticky-mesh: the first argument must be an options object or a worker count, got ${describe(value)}`,
  );
}

/**
 * The factory, or a server in its place. Checked here, in the primary too, so that a mistake
 * (an Express app or a request handler in place of the factory, a server told to listen) fails
 * at once instead of in every worker.
 */
function toFactory(value: unknown): ServerFactory {
  const problem = factoryArgumentProblem(value);
  if (problem) throw new StickyMeshError('ERR_STICKY_INVALID_ARGUMENT', `sticky-mesh: ${problem}`);
  if (typeof value === 'function') return value as ServerFactory;
  return () => value as AnyServer;
}

function isServer(value: unknown): value is AnyServer {
  return hasMethods(value, 'listen', 'emit');
}

function isPlainObject(value: unknown): value is Record<string, unknown> {
  if (typeof value !== 'object' || value === null) return false;
  const proto = Object.getPrototypeOf(value);
  return proto === Object.prototype || proto === null;
}
