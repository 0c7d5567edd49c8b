// The shape of src/ as docs/architecture.md describes it: no import cycle (type-only imports
// included), process roles kept apart, and files small enough to read in one sitting.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));
/** "No source file over ~400 lines". */
const MAX_LINES = 400;

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** The src/ files a file imports (static, type-only and dynamic imports of relative paths). */
function importsOf(file: string): string[] {
  const text = readFileSync(file, 'utf8');
  const specifiers = [
    ...text.matchAll(/\bfrom\s+'(\.[^']+)'/g),
    ...text.matchAll(/\bimport\s*\(\s*'(\.[^']+)'\s*\)/g),
    ...text.matchAll(/^import\s+'(\.[^']+)'/gm),
  ].map((m) => m[1] as string);
  return specifiers.map((s) => path.resolve(path.dirname(file), s.replace(/\.js$/, '.ts')));
}

const rel = (file: string) => path.relative(SRC, file);
const files = sourceFiles();
const graph = new Map(files.map((f) => [f, importsOf(f)]));

/** Every cycle found by depth-first search, each as the list of files around it. */
function cycles(): string[][] {
  const found: string[][] = [];
  const state = new Map<string, 'open' | 'done'>();
  const stack: string[] = [];
  const visit = (file: string) => {
    state.set(file, 'open');
    stack.push(file);
    for (const next of graph.get(file) ?? []) {
      if (state.get(next) === 'open') found.push([...stack.slice(stack.indexOf(next)), next]);
      else if (!state.has(next)) visit(next);
    }
    stack.pop();
    state.set(file, 'done');
  };
  for (const file of files) if (!state.has(file)) visit(file);
  return found;
}

describe('src/ layout', () => {
  it('has source files to check (the walk found them)', () => {
    expect(files.length).toBeGreaterThan(30);
    expect(files.map(rel)).toContain(path.join('master', 'primary.ts'));
  });

  it('every relative import names a file that exists', () => {
    const missing = [...graph].flatMap(([file, imports]) =>
      imports.filter((i) => !graph.has(i)).map((i) => `${rel(file)} -> ${rel(i)}`),
    );
    expect(missing).toEqual([]);
  });

  it('has no import cycle, type-only imports included', () => {
    expect(cycles().map((c) => c.map(rel).join(' -> '))).toEqual([]);
  });

  it('finds a cycle when there is one (the check itself works)', () => {
    const a = path.join(SRC, 'a.ts');
    const b = path.join(SRC, 'b.ts');
    graph.set(a, [b]);
    graph.set(b, [a]);
    files.push(a, b);
    try {
      expect(cycles().map((c) => c.map(rel).join(' -> '))).toEqual(['a.ts -> b.ts -> a.ts']);
    } finally {
      graph.delete(a);
      graph.delete(b);
      files.splice(files.indexOf(a), 2);
    }
  });

  it.each([
    ['master', ['worker']],
    ['worker', ['master']],
    ['replication', ['master', 'worker']],
    ['routing', ['master', 'worker', 'replication']],
    ['protocol', ['master', 'worker', 'replication', 'routing']],
  ])('%s/ imports nothing from %j', (folder, forbidden) => {
    const offending = [...graph]
      .filter(([file]) => rel(file).startsWith(`${folder}${path.sep}`))
      .flatMap(([file, imports]) =>
        imports
          .filter((i) => forbidden.some((f) => rel(i).startsWith(`${f}${path.sep}`)))
          .map((i) => `${rel(file)} -> ${rel(i)}`),
      );
    expect(offending).toEqual([]);
  });

  it('keeps the roles apart in metrics/: its worker side imports nothing of master/, its primary side nothing of worker/', () => {
    const role = (file: string) => {
      const r = rel(file);
      if (r.startsWith(`metrics${path.sep}worker`)) return 'worker';
      if (/^metrics[/\\](primary|scrape)/.test(r)) return 'master';
      return r.split(path.sep)[0];
    };
    const offending = [...graph].flatMap(([file, imports]) =>
      imports
        .filter((i) => {
          const [from, to] = [role(file), role(i)];
          return (from === 'worker' && to === 'master') || (from === 'master' && to === 'worker');
        })
        .map((i) => `${rel(file)} -> ${rel(i)}`),
    );
    expect(offending).toEqual([]);
    expect(files.map(rel)).toContain(path.join('metrics', 'worker.ts'));
  });

  it(`has no source file over ${MAX_LINES} lines`, () => {
    const long = files
      .map((f) => [rel(f), readFileSync(f, 'utf8').split('\n').length] as const)
      .filter(([, lines]) => lines > MAX_LINES);
    expect(long).toEqual([]);
  });
});
