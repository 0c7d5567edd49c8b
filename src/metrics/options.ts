import { InvalidOptionError } from '../errors.js';
import { integer, MAX_MS, rejectUnknown } from '../validate.js';

/**
 * The `metrics` option of {@link sticky}: the primary serves the Prometheus text format of the
 * whole machine (itself and every worker) on its own HTTP port. Needs the prom-client package
 * (an optional peer dependency).
 */
export interface MetricsOptions {
  /**
   * TCP port of the metrics endpoint; `0` takes any free port (the `metricsListening` event
   * says which).
   * @default 9464
   */
  port?: number;
  /**
   * Address the endpoint binds: loopback unless you set one, so the numbers are not public by
   * accident (`'0.0.0.0'` or `'::'` for a Prometheus on another machine).
   * @default '127.0.0.1'
   */
  host?: string;
  /**
   * Path the text is served at; other paths get `404`.
   * @default '/metrics'
   */
  path?: string;
  /**
   * How long one scrape waits for the workers' metrics, in ms. A worker that has not answered by
   * then is left out of that scrape and counted (`sticky_mesh_metrics_workers_missed_total`);
   * the scrape never waits longer.
   * @default 1000
   */
  timeout?: number;
}

export type ResolvedMetricsOptions = Required<MetricsOptions>;

/** The defaults of `metrics` (`metrics: true` takes them all). */
export const METRICS_DEFAULTS: Readonly<ResolvedMetricsOptions> = Object.freeze({
  port: 9464,
  host: '127.0.0.1',
  path: '/metrics',
  timeout: 1000,
});

const KNOWN = new Set(Object.keys(METRICS_DEFAULTS));

/** `metrics` after defaults, or `false` when it is off; a bad value throws naming the field. */
export function resolveMetricsOptions(value: unknown): ResolvedMetricsOptions | false {
  if (value === undefined || value === false) return false;
  if (value === true) return { ...METRICS_DEFAULTS };
  if (typeof value !== 'object' || value === null || Array.isArray(value)) {
    throw new InvalidOptionError('metrics', 'true, false or { port, host, path, timeout }', value);
  }
  const v = value as Record<string, unknown>;
  rejectUnknown(v, KNOWN, (key) => `metrics.${key}`);
  const given = <K extends keyof ResolvedMetricsOptions>(k: K): unknown =>
    v[k] === undefined ? METRICS_DEFAULTS[k] : v[k];
  const host = given('host');
  if (typeof host !== 'string' || host === '' || /\s/.test(host)) {
    throw new InvalidOptionError('metrics.host', 'a host name or IP address', host);
  }
  const path = given('path');
  // The path is compared with the request's path as sent: no query, no spaces, no fragments.
  if (typeof path !== 'string' || !/^\/[\x21-\x7e]*$/.test(path) || /[?#]/.test(path)) {
    throw new InvalidOptionError('metrics.path', 'a path starting with "/" (no query)', path);
  }
  return {
    port: integer('metrics.port', given('port'), 0, 65535),
    host,
    path,
    timeout: integer('metrics.timeout', given('timeout'), 1, MAX_MS),
  };
}
