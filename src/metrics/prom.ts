import { createRequire } from 'node:module';
import type * as PromClient from 'prom-client';
import { StickyMeshError } from '../errors.js';

/** The prom-client module (an optional peer dependency, loaded on first use). */
export type Prom = typeof PromClient;
export type Registry = PromClient.Registry;
export type MetricJson = PromClient.MetricObjectWithValues<PromClient.MetricValue<string>>;

let loaded: Prom | undefined;

/**
 * prom-client as the application has it installed (resolved from this package, so one copy in
 * node_modules is the application's and ours: metrics it registers in prom-client's default
 * registry are in what its workers report). Throws `ERR_STICKY_METRICS_FAILED` without it.
 */
export function loadPromClient(): Prom {
  loaded ??= requirePromClient(createRequire(import.meta.url));
  return loaded;
}

/** prom-client through `load` (a `require`), or `ERR_STICKY_METRICS_FAILED` saying to install it. */
export function requirePromClient(load: (id: string) => unknown): Prom {
  try {
    return load('prom-client') as Prom;
  } catch (err) {
    throw new StickyMeshError(
      'ERR_STICKY_METRICS_FAILED',
      'sticky-mesh: the metrics option needs the prom-client package: npm install prom-client',
      { cause: err },
    );
  }
}
