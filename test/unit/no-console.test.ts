// Library code logs through the `logger` option or the debug channel, never the console: an
// application that gave no logger must not find sticky-mesh's lines on its stdout or stderr.
import { readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { describe, expect, it } from 'vitest';

const SRC = fileURLToPath(new URL('../../src/', import.meta.url));

/** `console.x`, `console['x']`, `globalThis.console`: any use of the console object. */
const CONSOLE_USE = /\bconsole\s*(?:\.|\[|\?\.)|globalThis\s*\.\s*console\b/;

function sourceFiles(dir = SRC): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((entry) => {
    const full = path.join(dir, entry.name);
    if (entry.isDirectory()) return sourceFiles(full);
    return entry.name.endsWith('.ts') ? [full] : [];
  });
}

/** `file:line: text` for every line of `text` that uses the console. */
function consoleUses(file: string, text: string): string[] {
  return text
    .split('\n')
    .flatMap((line, i) => (CONSOLE_USE.test(line) ? [`${file}:${i + 1}: ${line.trim()}`] : []));
}

describe('src/ never writes to the console', () => {
  it('no source file uses console', () => {
    const files = sourceFiles();
    expect(files.length).toBeGreaterThan(20);
    expect(files.map((f) => path.relative(SRC, f))).toContain(path.join('master', 'primary.ts'));
    const uses = files.flatMap((f) => consoleUses(path.relative(SRC, f), readFileSync(f, 'utf8')));
    expect(uses).toEqual([]);
  });

  it('the scan finds a use when there is one (the check itself works)', () => {
    const uses = (line: string) => consoleUses('x.ts', `const a = 1;\n${line}\n`);
    expect(uses("    console.error('x');")).toEqual(["x.ts:2: console.error('x');"]);
    expect(uses('console . warn(m)')).toHaveLength(1);
    expect(uses("console['log'](m)")).toHaveLength(1);
    expect(uses('globalThis.console.log(m)')).toHaveLength(1);
    // Prose naming console as a logger one may pass is not a use.
    expect(uses(' * anything with error methods (console, pino, winston)')).toEqual([]);
  });
});
