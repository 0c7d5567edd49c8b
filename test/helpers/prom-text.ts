/**
 * A small reader of the Prometheus text exposition format (version 0.0.4), for tests: every
 * sample line as name, labels and value, and each family's TYPE. Throws on a line it cannot
 * read, and on a series given twice (Prometheus refuses such a scrape), so a malformed
 * exposition fails the test that reads it.
 */

export interface Sample {
  readonly name: string;
  readonly labels: Readonly<Record<string, string>>;
  readonly value: number;
}

export interface Exposition {
  readonly samples: Sample[];
  /** TYPE of each family, by family name. */
  readonly types: Map<string, string>;
  /** Samples of `name` whose labels include every one of `labels`. */
  find(name: string, labels?: Record<string, string>): Sample[];
  /** The sum of those samples' values (0 if none). */
  sum(name: string, labels?: Record<string, string>): number;
}

const SAMPLE = /^([a-zA-Z_:][a-zA-Z0-9_:]*)(\{(.*)\})?\s+(\S+)(\s+-?\d+)?$/;
const LABEL = /\s*([a-zA-Z_][a-zA-Z0-9_]*)="((?:[^"\\]|\\.)*)"\s*(,|$)/y;

export function parseExposition(text: string): Exposition {
  const samples: Sample[] = [];
  const types = new Map<string, string>();
  const seen = new Set<string>();
  for (const [i, line] of text.split('\n').entries()) {
    if (line.trim() === '') continue;
    if (line.startsWith('#')) {
      const type = /^# TYPE (\S+) (counter|gauge|histogram|summary|untyped)$/.exec(line);
      if (type && types.has(type[1] as string)) throw new Error(`line ${i + 1}: a second TYPE`);
      if (type) types.set(type[1] as string, type[2] as string);
      else if (!/^# HELP \S+ /.test(line)) throw new Error(`line ${i + 1}: ${line}`);
      continue;
    }
    const m = SAMPLE.exec(line);
    if (!m) throw new Error(`line ${i + 1} is not a sample: ${line}`);
    const labels = parseLabels(m[3] ?? '', line);
    const series = `${m[1]}${JSON.stringify(Object.entries(labels).sort())}`;
    if (seen.has(series)) throw new Error(`line ${i + 1} repeats a series: ${line}`);
    seen.add(series);
    samples.push({
      name: m[1] as string,
      labels,
      value: num(m[4] as string, line),
    });
  }
  const matches = (s: Sample, name: string, labels: Record<string, string>) =>
    s.name === name && Object.entries(labels).every(([k, v]) => s.labels[k] === v);
  const find = (name: string, labels: Record<string, string> = {}) =>
    samples.filter((s) => matches(s, name, labels));
  return {
    samples,
    types,
    find,
    sum: (name, labels) => find(name, labels).reduce((n, s) => n + s.value, 0),
  };
}

function parseLabels(text: string, line: string): Record<string, string> {
  const labels: Record<string, string> = {};
  LABEL.lastIndex = 0;
  while (LABEL.lastIndex < text.length) {
    const m = LABEL.exec(text);
    if (!m) throw new Error(`bad labels in: ${line}`);
    labels[m[1] as string] = (m[2] as string).replace(/\\(.)/g, (_, c: string) =>
      c === 'n' ? '\n' : c,
    );
  }
  return labels;
}

function num(text: string, line: string): number {
  // Prometheus reads these case-insensitively (prom-client writes NaN as `Nan`).
  const word = text.toLowerCase();
  if (word === '+inf' || word === 'inf') return Number.POSITIVE_INFINITY;
  if (word === '-inf') return Number.NEGATIVE_INFINITY;
  if (word === 'nan') return Number.NaN;
  const n = Number(text);
  if (Number.isNaN(n)) throw new Error(`bad value in: ${line}`);
  return n;
}
