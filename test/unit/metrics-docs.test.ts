// The metrics as documented and drawn: the README's table lists exactly the sticky_mesh_* metrics
// the library registers (name, type, labels), and the Grafana dashboard under examples/ queries
// only metrics the library exposes.
import { readFileSync } from 'node:fs';
import { describe, expect, it } from 'vitest';
import {
  type PrimarySource,
  type PrimaryStats,
  primaryRegistry,
} from '../../src/metrics/primary-registry.js';
import { loadPromClient, type Registry } from '../../src/metrics/prom.js';
import { workerRegistry } from '../../src/metrics/worker-registry.js';

const prom = loadPromClient();
const root = new URL('../../', import.meta.url);

interface Family {
  type: string;
  labels: string[];
  /** Reported by the workers: the primary adds `slot` to every series. */
  worker: boolean;
}

/** Every metric family the library registers, in the primary (with either transport) and workers. */
function registered(): Map<string, Family> {
  const stats = { slots: [], sessions: {} } as unknown as PrimaryStats;
  const source: PrimarySource = {
    stats: () => stats,
    refusals: () => ({ pendingCap: 0, badRequest: 0, timeout: 0, tooLarge: 0, badProxy: 0 }),
    queued: () => 0,
    table: () => ({ sessions: 0, dataLength: 0, size: 0 }),
  };
  const families = new Map<string, Family>();
  const add = (registry: Registry, worker: boolean) => {
    for (const m of registry.getMetricsAsArray() as unknown as {
      name: string;
      type: string;
      labelNames?: string[];
    }[]) {
      families.set(m.name, { type: m.type, labels: [...(m.labelNames ?? [])], worker });
    }
  };
  add(primaryRegistry(prom, source, 'multicast').registry, false);
  add(primaryRegistry(prom, source, 'redis').registry, false);
  add(
    workerRegistry(prom, {
      stats: () => ({ connections: 0, handedBack: 0, relayed: 0 }),
      store: () => undefined,
    }).registry,
    true,
  );
  return families;
}

/** Names a query can use for a family: histograms and summaries have their series' suffixes. */
function seriesNames(families: Map<string, Family>): Set<string> {
  const names = new Set<string>();
  for (const [name, f] of families) {
    names.add(name);
    if (f.type === 'histogram') for (const s of ['_bucket', '_sum', '_count']) names.add(name + s);
    if (f.type === 'summary') for (const s of ['_sum', '_count']) names.add(name + s);
  }
  return names;
}

/** The README's Metrics table: name, type and labels of each row. */
function documented(): Map<string, { type: string; labels: string[] }> {
  const readme = readFileSync(new URL('README.md', root), 'utf8');
  const rows = new Map<string, { type: string; labels: string[] }>();
  for (const line of readme.split('\n')) {
    const m = /^\| `(sticky_mesh_[a-z0-9_]+)` \| (\w+) \|([^|]*)\|/.exec(line);
    if (!m) continue;
    const labels = [...(m[3] as string).matchAll(/`([a-z_]+)`/g)].map((l) => l[1] as string);
    rows.set(m[1] as string, { type: m[2] as string, labels: labels.sort() });
  }
  return rows;
}

const KEYWORDS = new Set(['by', 'without', 'on', 'ignoring', 'group_left', 'group_right', 'bool']);
const OPERATORS = new Set(['and', 'or', 'unless', 'offset']);

/** The metric names a PromQL expression selects (functions, labels and keywords aside). */
function promqlMetricNames(expr: string): string[] {
  const bare = expr
    .replace(/"(?:[^"\\]|\\.)*"/g, '""') // label values, which may hold anything
    .replace(/\{[^}]*\}/g, ' ') // label matchers
    .replace(/\[[^\]]*\]/g, ' ') // range and subquery durations
    .replace(/\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)/g, ' '); // groupings
  const names: string[] = [];
  for (const m of bare.matchAll(/(?<![\w$.])([a-zA-Z_:][a-zA-Z0-9_:]*)\s*(\()?/g)) {
    const word = m[1] as string;
    if (m[2] !== undefined || KEYWORDS.has(word) || OPERATORS.has(word)) continue;
    names.push(word);
  }
  return names;
}

/** Every PromQL expression of the dashboard: panel targets (rows too) and template queries. */
function dashboardQueries(): string[] {
  const dashboard = JSON.parse(
    readFileSync(new URL('examples/grafana/sticky-mesh.json', root), 'utf8'),
  ) as {
    panels: { targets?: { expr: string }[]; panels?: { targets?: { expr: string }[] }[] }[];
    templating: { list: { type: string; query?: { query: string } | string }[] };
  };
  const panels = dashboard.panels.flatMap((p) => [p, ...(p.panels ?? [])]);
  const exprs = panels.flatMap((p) => (p.targets ?? []).map((t) => t.expr));
  for (const v of dashboard.templating.list) {
    if (v.type !== 'query') continue;
    const q = typeof v.query === 'string' ? v.query : (v.query?.query ?? '');
    // label_values(metric, label): only its first argument is a metric.
    const m = /^label_values\(\s*([^,]+),/.exec(q);
    exprs.push(m ? (m[1] as string) : q);
  }
  return exprs;
}

describe('the metrics documentation', () => {
  it("lists in the README's table exactly the sticky_mesh_* metrics registered, with type and labels", () => {
    const families = registered();
    const rows = documented();
    const expected = new Map(
      [...families]
        .filter(([name]) => name.startsWith('sticky_mesh_'))
        .map(([name, f]) => [
          name,
          {
            type: f.type,
            labels: [...new Set([...f.labels, ...(f.worker ? ['slot'] : [])])].sort(),
          },
        ]),
    );
    expect(rows.size).toBeGreaterThan(40);
    expect(Object.fromEntries(rows)).toEqual(Object.fromEntries(expected));
  });
});

describe('the Grafana dashboard', () => {
  it('reads metric names out of PromQL', () => {
    expect(
      promqlMetricNames(
        'histogram_quantile(0.99, sum by (le) (rate(a_bucket{x="b{c}",instance=~"$instance"}[$__rate_interval]))) / on(slot) group_left b_total offset 5m',
      ),
    ).toEqual(['a_bucket', 'b_total']);
    expect(promqlMetricNames('sum(x) and max without (slot) (y) > bool 1e3')).toEqual(['x', 'y']);
  });

  it('queries only metrics the library exposes', async () => {
    const defaults = new prom.Registry();
    prom.collectDefaultMetrics({ register: defaults });
    const families = registered();
    for (const m of defaults.getMetricsAsArray() as unknown as { name: string; type: string }[]) {
      families.set(m.name, { type: m.type, labels: [], worker: true });
    }
    const exposed = seriesNames(families);
    const used = new Set(dashboardQueries().flatMap(promqlMetricNames));
    const unknown = [...used].filter((name) => !exposed.has(name));
    expect(unknown).toEqual([]);
    // It draws the library's own metrics, not only Node's.
    const own = [...used].filter((name) => name.startsWith('sticky_mesh_'));
    expect(own.length).toBeGreaterThan(40);
  });
});
