/**
 * The code blocks of the README files, and a type check of them with the strictest settings.
 *
 * A ```js / ```javascript block is checked as a JavaScript module (checkJs), a ```ts /
 * ```typescript block as a TypeScript one; any other tag (```text, ```nginx, none) is not code.
 * `sticky-mesh` resolves to src/index.ts, every other package to node_modules.
 *
 * A block is a complete program unless the line before its fence is `<!-- snippet: fragment -->`:
 * a fragment is a piece of the examples around it and is checked with FRAGMENT_CONTEXT, the
 * names such pieces take from their surroundings. Complete programs are checked without it, so a
 * missing import there is an error.
 */
import { mkdirSync, readdirSync, readFileSync, writeFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import ts from 'typescript';

export const ROOT = fileURLToPath(new URL('../../', import.meta.url));

export const FRAGMENT_MARK = '<!-- snippet: fragment -->';

export interface Snippet {
  /** The markdown file, relative to the repository. */
  readonly file: string;
  /** 1-based line of the block's first code line in that file. */
  readonly line: number;
  readonly lang: 'js' | 'ts';
  readonly fragment: boolean;
  readonly code: string;
}

const LANGS: Record<string, 'js' | 'ts'> = {
  js: 'js',
  javascript: 'js',
  mjs: 'js',
  ts: 'ts',
  typescript: 'ts',
  mts: 'ts',
};

/** Every js / ts block of a markdown text, with where it starts. */
export function extractSnippets(file: string, markdown: string): Snippet[] {
  const lines = markdown.split('\n');
  const snippets: Snippet[] = [];
  for (let i = 0; i < lines.length; i++) {
    const open = /^(\s*)(`{3,}|~{3,})\s*([\w-]*)/.exec(lines[i] as string);
    if (!open) continue;
    const [, indent = '', fence = '```', tag = ''] = open;
    const end = lines.findIndex((l, j) => {
      const t = l.trim();
      return j > i && t.length >= fence.length && t === (fence[0] as string).repeat(t.length);
    });
    const close = end === -1 ? lines.length : end;
    const lang = LANGS[tag.toLowerCase()];
    if (lang) {
      snippets.push({
        file,
        line: i + 2,
        lang,
        fragment: lines[i - 1]?.trim() === FRAGMENT_MARK,
        code: lines
          .slice(i + 1, close)
          .map((l) => (l.startsWith(indent) ? l.slice(indent.length) : l))
          .join('\n'),
      });
    }
    i = close;
  }
  return snippets;
}

/** README.md and every README.md under examples/. */
export function readmeFiles(): string[] {
  const found = ['README.md'];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules') walk(rel);
      else if (entry.name === 'README.md') found.push(rel);
    }
  };
  walk('examples');
  return found;
}

/** Every .js / .mjs / .ts file under examples/ (and their .d.ts files). */
export function exampleSources(): string[] {
  const found: string[] = [];
  const walk = (dir: string) => {
    for (const entry of readdirSync(path.join(ROOT, dir), { withFileTypes: true })) {
      const rel = path.join(dir, entry.name);
      if (entry.isDirectory() && entry.name !== 'node_modules') walk(rel);
      else if (/\.(m?js|m?ts)$/.test(entry.name)) found.push(rel);
    }
  };
  walk('examples');
  return found;
}

/**
 * The names fragments take from the examples around them: an app's own pieces (`factory`,
 * `handler`, `secret`, ...) and the imports the complete examples show. Packages a fragment names
 * that are not dev dependencies of this repository (pino) are declared here as their own types
 * declare what the fragment uses.
 */
export const FRAGMENT_CONTEXT = `
declare const sticky: typeof import('sticky-mesh').sticky;
declare const ReplicatedStore: typeof import('sticky-mesh').ReplicatedStore;
declare const http: typeof import('node:http');
declare const express: typeof import('express');
declare const session: typeof import('express-session');
declare const Server: typeof import('socket.io').Server;
/** The app's server factory, as in the Usage example. */
declare const factory: import('sticky-mesh').ServerFactory;
/** The app's request handler. */
declare const handler: import('node:http').RequestListener;
/** The session cookie's secret. */
declare const secret: string;
declare const store: import('sticky-mesh').ReplicatedStore;
/** Some per-connection setup of the app's. */
declare function loadSomething(): Promise<void>;
declare module 'pino' {
  interface Logger {
    error(msg: string): void;
    warn(msg: string): void;
    info(msg: string): void;
    debug(msg: string): void;
  }
  export default function pino(): Logger;
}
`;

/** The strictest settings an app could compile the snippets with. */
export const SNIPPET_OPTIONS: ts.CompilerOptions = {
  target: ts.ScriptTarget.ES2022,
  lib: ['lib.es2023.d.ts'],
  module: ts.ModuleKind.NodeNext,
  moduleResolution: ts.ModuleResolutionKind.NodeNext,
  moduleDetection: ts.ModuleDetectionKind.Force,
  types: ['node'],
  strict: true,
  noUncheckedIndexedAccess: true,
  exactOptionalPropertyTypes: true,
  noImplicitOverride: true,
  noFallthroughCasesInSwitch: true,
  verbatimModuleSyntax: true,
  allowJs: true,
  checkJs: true,
  skipLibCheck: true,
  noEmit: true,
  paths: { 'sticky-mesh': [path.join(ROOT, 'src/index.ts')] },
};

export interface Problem {
  /** `README.md:42`, or `examples/socketio/server.js:7`. */
  readonly where: string;
  readonly message: string;
}

/** One compiled file and where its line 1 is in the markdown file it came from. */
interface Unit {
  readonly fileName: string;
  readonly text: string;
  readonly origin: string;
  readonly firstLine: number;
}

const sourceCache = new Map<string, ts.SourceFile>();

function check(units: readonly Unit[], extraRoots: readonly string[]): Problem[] {
  const virtual = new Map(units.map((u) => [u.fileName, u]));
  const host = ts.createCompilerHost(SNIPPET_OPTIONS, true);
  const { fileExists, readFile, getSourceFile } = host;
  host.fileExists = (f) => virtual.has(f) || fileExists.call(host, f);
  host.readFile = (f) => virtual.get(f)?.text ?? readFile.call(host, f);
  host.getSourceFile = (f, lang, onError) => {
    const unit = virtual.get(f);
    if (unit) return ts.createSourceFile(f, unit.text, lang, true);
    const cached = sourceCache.get(f);
    if (cached) return cached;
    const file = getSourceFile.call(host, f, lang, onError);
    if (file) sourceCache.set(f, file);
    return file;
  };
  const program = ts.createProgram({
    rootNames: [...units.map((u) => u.fileName), ...extraRoots],
    options: SNIPPET_OPTIONS,
    host,
  });
  const checked = new Set([...units.map((u) => u.fileName), ...extraRoots]);
  const diagnostics = [
    ...program.getOptionsDiagnostics(),
    ...program.getGlobalDiagnostics(),
    ...program
      .getSourceFiles()
      .filter((f) => checked.has(f.fileName))
      .flatMap((f) => [
        ...program.getSyntacticDiagnostics(f),
        ...program.getSemanticDiagnostics(f),
      ]),
  ];
  return diagnostics.map((d) => {
    const message = ts.flattenDiagnosticMessageText(d.messageText, '\n');
    if (!d.file || d.start === undefined) return { where: '(program)', message };
    const { line } = d.file.getLineAndCharacterOfPosition(d.start);
    const unit = virtual.get(d.file.fileName);
    const where = unit
      ? `${unit.origin}:${unit.firstLine + line}`
      : `${path.relative(ROOT, d.file.fileName)}:${line + 1}`;
    return { where, message: `TS${d.code}: ${message}` };
  });
}

/**
 * Type-checks the snippets (complete ones in one program, fragments with FRAGMENT_CONTEXT in
 * another) and the example sources (a third: their .d.ts files apply to them alone); returns
 * every diagnostic, located in the markdown file.
 */
export function checkSnippets(
  snippets: readonly Snippet[],
  examples: readonly string[],
): Problem[] {
  const dir = path.join(ROOT, '.snippets');
  const unit = (s: Snippet, i: number): Unit => ({
    fileName: path.join(dir, `${i}-${s.file.replace(/\W+/g, '-')}-${s.line}.${s.lang}`),
    text: s.code,
    origin: s.file,
    firstLine: s.line,
  });
  const units = snippets.map(unit);
  const complete = units.filter((_, i) => !snippets[i]?.fragment);
  const fragments = units.filter((_, i) => snippets[i]?.fragment);
  const context: Unit = {
    fileName: path.join(dir, 'fragment-context.d.ts'),
    text: FRAGMENT_CONTEXT,
    origin: 'FRAGMENT_CONTEXT',
    firstLine: 1,
  };
  return [
    ...check(complete, []),
    ...(fragments.length > 0 ? check([...fragments, context], []) : []),
    ...(examples.length > 0
      ? check(
          [],
          examples.map((e) => path.join(ROOT, e)),
        )
      : []),
  ];
}

export function readRepoFile(rel: string): string {
  return readFileSync(path.join(ROOT, rel), 'utf8');
}

/** The first complete (not fragment) block of `lang` after the line `heading` of the markdown. */
export function completeBlockAfter(
  snippets: readonly Snippet[],
  markdown: string,
  heading: string,
  lang: Snippet['lang'],
): Snippet {
  const headingLine = markdown.split('\n').indexOf(heading) + 1;
  const found = snippets.find((s) => s.line > headingLine && s.lang === lang && !s.fragment);
  if (headingLine === 0 || !found) throw new Error(`no complete ${lang} block after "${heading}"`);
  return found;
}

/**
 * Where README blocks are written to run: inside the repository, so that `sticky-mesh` resolves
 * to this package (dist/: `npm run build` first) and every other import to node_modules.
 */
export const RUN_DIR = path.join(ROOT, '.readme-run');

/**
 * Writes the snippet as an ES module `name` in RUN_DIR, TypeScript transpiled (types erased);
 * returns its path relative to test/fixtures, the form startFixture() takes.
 */
export function writeProgram(snippet: Snippet, name: string): string {
  mkdirSync(RUN_DIR, { recursive: true });
  const code =
    snippet.lang === 'ts'
      ? ts.transpileModule(snippet.code, {
          compilerOptions: { module: ts.ModuleKind.ESNext, target: ts.ScriptTarget.ES2022 },
        }).outputText
      : snippet.code;
  writeFileSync(path.join(RUN_DIR, name), code);
  return `../../.readme-run/${name}`;
}
