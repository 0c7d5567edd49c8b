import type { Prom } from './prom.js';

/**
 * The pure part of the machine's scrape: what each process reports (prom-client's
 * `getMetricsAsJSON()` of its registries) is checked, given its process's `slot` label, and
 * merged into one text by prom-client's cluster aggregation (`AggregatorRegistry.aggregate`).
 * Series of different processes differ by `slot`, so they stay apart; series that carry the
 * same labels (the two workers of one slot while one replaces the other) are combined by each
 * metric's aggregator, as prom-client's own cluster mode combines its workers.
 */

/** One metric as `getMetricsAsJSON()` gives it. */
export interface MetricJson {
  name: string;
  help: string;
  type: MetricKind;
  aggregator: Aggregator;
  values: MetricValue[];
}

export interface MetricValue {
  value: number;
  labels: Record<string, string | number>;
  /** A histogram's or summary's series name (`<name>_bucket`, `_sum`, `_count`). */
  metricName?: string;
}

export type MetricKind = 'counter' | 'gauge' | 'histogram' | 'summary';
type Aggregator = 'omit' | 'sum' | 'first' | 'min' | 'max' | 'average';

const KINDS = new Set<string>(['counter', 'gauge', 'histogram', 'summary']);
const AGGREGATORS = new Set<string>(['omit', 'sum', 'first', 'min', 'max', 'average']);
const NAME = /^[a-zA-Z_:][a-zA-Z0-9_:]*$/;
const LABEL = /^[a-zA-Z_][a-zA-Z0-9_]*$/;

/** The label every series of a process carries: its worker slot, or `primary`. */
export const SLOT_LABEL = 'slot';

/** Help of a counter both the primary and the workers report (the text must match). */
export const STORE_MALFORMED_HELP =
  'Store IPC messages dropped as malformed, by the process that dropped them (slot="primary": the hub).';

/**
 * The well-formed metrics of a report from another process; anything else (a foreign shape, a
 * bad name or label, a value that is not a number) is left out. Never throws.
 */
export function checkMetrics(value: readonly unknown[]): MetricJson[] {
  const out: MetricJson[] = [];
  for (const item of value) {
    const m = checkMetric(item);
    if (m) out.push(m);
  }
  return out;
}

function checkMetric(item: unknown): MetricJson | undefined {
  if (typeof item !== 'object' || item === null) return undefined;
  const m = item as Record<string, unknown>;
  if (typeof m.name !== 'string' || !NAME.test(m.name)) return undefined;
  if (typeof m.type !== 'string' || !KINDS.has(m.type) || !Array.isArray(m.values)) {
    return undefined;
  }
  const values: MetricValue[] = [];
  for (const v of m.values as unknown[]) {
    const checked = checkValue(v);
    if (checked) values.push(checked);
  }
  return {
    name: m.name,
    help: typeof m.help === 'string' ? m.help : '',
    type: m.type as MetricKind,
    aggregator:
      typeof m.aggregator === 'string' && AGGREGATORS.has(m.aggregator)
        ? (m.aggregator as Aggregator)
        : 'sum',
    values,
  };
}

function checkValue(item: unknown): MetricValue | undefined {
  if (typeof item !== 'object' || item === null) return undefined;
  const v = item as Record<string, unknown>;
  if (typeof v.value !== 'number') return undefined;
  const labels: Record<string, string | number> = {};
  if (v.labels !== undefined) {
    if (typeof v.labels !== 'object' || v.labels === null) return undefined;
    for (const [k, l] of Object.entries(v.labels)) {
      if (!LABEL.test(k) || (typeof l !== 'string' && typeof l !== 'number')) return undefined;
      labels[k] = l;
    }
  }
  if (
    v.metricName !== undefined &&
    (typeof v.metricName !== 'string' || !NAME.test(v.metricName))
  ) {
    return undefined;
  }
  return {
    value: v.value,
    labels,
    ...(typeof v.metricName === 'string' ? { metricName: v.metricName } : {}),
  };
}

/**
 * Copies of `metrics` whose every series carries `slot` (a series that has a `slot` label of its
 * own keeps it). A metric prom-client's cluster mode leaves out (aggregator `omit`: a value that
 * makes no sense summed over processes, like `process_start_time_seconds`) is kept, since its
 * series now stay per process; two workers of one slot give the first one's.
 */
export function withSlot(metrics: readonly MetricJson[], slot: string): MetricJson[] {
  return metrics.map((m) => ({
    ...m,
    aggregator: m.aggregator === 'omit' ? 'first' : m.aggregator,
    values: m.values.map((v) =>
      v.labels[SLOT_LABEL] === undefined
        ? { ...v, labels: { ...v.labels, [SLOT_LABEL]: slot } }
        : v,
    ),
  }));
}

/**
 * `metrics` without those named in `taken`: what the application registered in prom-client's
 * default registry under a name this library reports itself (say, its own
 * `collectDefaultMetrics()`) would count the same process twice.
 */
export function without(metrics: readonly MetricJson[], taken: ReadonlySet<string>): MetricJson[] {
  return metrics.filter((m) => !taken.has(m.name));
}

/**
 * One text in the Prometheus exposition format from every process's metrics, through
 * prom-client's cluster aggregation. A name reported with different types keeps the type of its
 * first report (the primary's come first); the others are left out, so the text stays valid.
 */
export function render(prom: Prom, reports: readonly (readonly MetricJson[])[]): Promise<string> {
  const types = new Map<string, MetricKind>();
  const consistent = reports.map((metrics) =>
    metrics.filter((m) => {
      const first = types.get(m.name);
      if (first === undefined) types.set(m.name, m.type);
      return first === undefined || first === m.type;
    }),
  );
  return prom.AggregatorRegistry.aggregate(consistent).metrics();
}
