// The README's main examples run as printed: the Usage example (JavaScript) and the TypeScript
// section's app (transpiled, types erased) are extracted from README.md, started as programs with
// PORT=0, and serve a request. They import `sticky-mesh` by name, which resolves to this package
// (dist/: `npm run build` first) because they are written inside the repository.
import { mkdirSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import ts from 'typescript';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { extractSnippets, ROOT, readRepoFile, type Snippet } from '../helpers/snippets.js';

const RUN_DIR = path.join(ROOT, '.readme-run');
const readme = readRepoFile('README.md');
const snippets = extractSnippets('README.md', readme);

/** The first block of `lang` after the heading `heading`. */
function blockAfter(heading: string, lang: Snippet['lang']): Snippet {
  const headingLine = readme.split('\n').indexOf(heading) + 1;
  const found = snippets.find((s) => s.line > headingLine && s.lang === lang);
  if (headingLine === 0 || !found) throw new Error(`no ${lang} block after "${heading}"`);
  return found;
}

/** Writes the snippet as a program (TypeScript transpiled) and starts it. */
async function run(snippet: Snippet, name: string, env: Record<string, string>) {
  mkdirSync(RUN_DIR, { recursive: true });
  const code =
    snippet.lang === 'ts'
      ? ts.transpileModule(snippet.code, {
          compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        }).outputText
      : snippet.code;
  writeFileSync(path.join(RUN_DIR, name), code);
  // The fixture runner takes paths under test/fixtures: this one is the repository's .readme-run.
  return startFixture({ fixture: `../../.readme-run/${name}`, env, until: null });
}

/** Waits until the program printed a line matching `pattern`; returns the match. */
function printed(app: FixtureProcess, pattern: RegExp): Promise<RegExpExecArray> {
  return vi.waitFor(
    () => {
      const match = pattern.exec(app.stdout);
      if (!match) throw new Error(`no line matching ${pattern} yet\n${app.transcript()}`);
      return match;
    },
    { timeout: 20_000, interval: 50 },
  );
}

function get(port: number, cookie?: string): Promise<{ text: string; cookie: string | undefined }> {
  return new Promise((resolve, reject) => {
    const req = http.get(
      { host: '127.0.0.1', port, path: '/', agent: false, headers: cookie ? { cookie } : {} },
      (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (chunk: string) => {
          text += chunk;
        });
        res.on('end', () =>
          resolve({ text, cookie: res.headers['set-cookie']?.[0]?.split(';')[0] }),
        );
      },
    );
    req.on('error', reject);
  });
}

describe('the README examples run', () => {
  afterEach(stopFixtures);
  afterAll(() => rmSync(RUN_DIR, { recursive: true, force: true }));

  it('Usage: starts, awaits ready() and says hello from a worker', async () => {
    const app = await run(blockAfter('## Usage', 'js'), 'usage.mjs', { PORT: '0' });
    const [, port] = await printed(app, /ready on http:\/\/localhost:(\d+)/);
    const { text } = await get(Number(port));
    expect(text, app.transcript()).toMatch(/^hello from worker [0-3]\n$/);
  });

  it('TypeScript: starts, awaits ready() and counts visits in the replicated session', async () => {
    const app = await run(blockAfter('## TypeScript', 'ts'), 'typescript.mjs', {
      PORT: '0',
      SESSION_SECRET: 'test secret',
    });
    const [, port] = await printed(app, /listening on http:\/\/localhost:(\d+)/);
    const first = await get(Number(port));
    expect(first.text, app.transcript()).toMatch(/^visit 1, worker [01]\n$/);
    expect(first.cookie).toBeDefined();
    const second = await get(Number(port), first.cookie);
    expect(second.text, app.transcript()).toMatch(/^visit 2, worker [01]\n$/);
  });
});
