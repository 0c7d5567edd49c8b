// The README's code as a user copies it: every js / ts block of README.md and examples/**/README.md
// and every source file under examples/ type-checks with the strictest settings (strict,
// noUncheckedIndexedAccess, exactOptionalPropertyTypes, checkJs for JavaScript), against src/.
import { describe, expect, it } from 'vitest';
import {
  checkSnippets,
  exampleSources,
  extractSnippets,
  readmeFiles,
  readRepoFile,
} from '../helpers/snippets.js';

const snippets = readmeFiles().flatMap((file) => extractSnippets(file, readRepoFile(file)));

describe('README snippets', () => {
  it('finds the blocks to check (the extraction works)', () => {
    expect(snippets.length).toBeGreaterThan(5);
    expect(snippets.filter((s) => !s.fragment).length).toBeGreaterThan(2);
  });

  it('every snippet and example type-checks under strict settings', () => {
    const problems = checkSnippets(snippets, exampleSources());
    expect(problems.map((p) => `${p.where}: ${p.message}`)).toEqual([]);
  }, 60_000);
});
