// The README's complete examples run as printed: each is extracted from README.md, written as a
// program (TypeScript transpiled, types erased), started with PORT=0, and does what the README
// says. They import `sticky-mesh` by name, which resolves to this package (dist/: `npm run build`
// first) because they are written inside the repository. The examples that bind fixed ports or a
// fixed interface address (Metrics, multicastStore, and examples/socketio/README.md's cluster
// adapter example) run in a network namespace of their own, in test/system/readme-run.test.ts.

import { rmSync } from 'node:fs';
import http from 'node:http';
import { afterAll, afterEach, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import { establishedTcpSockets, listeningTcpSockets } from '../helpers/proc.js';
import {
  completeBlockAfter,
  extractSnippets,
  RUN_DIR,
  readmeFiles,
  readRepoFile,
  type Snippet,
  writeProgram,
} from '../helpers/snippets.js';
import { hasTool } from '../helpers/system.js';

const readme = readRepoFile('README.md');
const snippets = extractSnippets('README.md', readme);
const blockAfter = (heading: string, lang: Snippet['lang']) =>
  completeBlockAfter(snippets, readme, heading, lang);

/**
 * The complete blocks of README.md and examples/**\/README.md, by file and the heading they
 * follow, and the tests that run them (here or in test/system).
 */
const RUN = [
  ['README.md', '## Usage', 'js'],
  ['README.md', '## TypeScript', 'ts'],
  ['README.md', '## Sessions: `ReplicatedStore`', 'ts'],
  ['README.md', '## Sessions across machines: multicast', 'js'], // test/system/readme-run.test.ts
  ['README.md', '## Metrics', 'js'], // test/system/readme-run.test.ts
  // test/system/readme-run.test.ts
  ['examples/socketio/README.md', '## Broadcasts between workers: the cluster adapter', 'js'],
] as const;

function run(snippet: Snippet, name: string, env: Record<string, string>) {
  return startFixture({ fixture: writeProgram(snippet, name), env, until: null });
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

/** The port a program that prints nothing listens on (the one TCP port its primary holds). */
function listeningPort(app: FixtureProcess): Promise<number> {
  return vi.waitFor(
    async () => {
      const ports = (await listeningTcpSockets()).filter((s) => s.pids.includes(app.pid));
      if (ports.length !== 1) {
        throw new Error(`${app.pid} listens on ${ports.length} ports\n${app.transcript()}`);
      }
      return (ports[0] as { port: number }).port;
    },
    { timeout: 20_000, interval: 50 },
  );
}

/**
 * GET `path` on a new keep-alive connection from `source`; with the connection still open, the
 * pid of the worker that holds its server end (not the primary, which only hands it over).
 */
async function getFrom(
  app: FixtureProcess,
  port: number,
  source: string,
  path: string,
  cookie?: string,
) {
  const agent = new http.Agent({ keepAlive: true, localAddress: source });
  try {
    const reply = await request({
      port,
      source,
      path,
      agent,
      timeoutMs: 10_000,
      ...(cookie === undefined ? {} : { headers: { cookie } }),
    });
    const peer = `${source}:${reply.socket.localPort}`;
    // The example listens on `::`, so ss shows the peer IPv4-mapped: [::ffff:127.0.0.2]:port.
    const held = (await establishedTcpSockets()).filter(
      (s) => s.localPort === port && s.peer.replace(/^\[::ffff:(.*)\]/, '$1') === peer,
    );
    const pids = [...new Set(held.flatMap((s) => s.pids))].filter((pid) => pid !== app.pid);
    if (pids.length !== 1) {
      throw new Error(`connection ${peer} held by ${JSON.stringify(held)}\n${app.transcript()}`);
    }
    return {
      text: reply.text,
      status: reply.status,
      cookie: reply.headers['set-cookie']?.[0]?.split(';')[0],
      worker: pids[0] as number,
    };
  } finally {
    agent.destroy();
  }
}

describe('the README examples run', () => {
  afterEach(stopFixtures);
  afterAll(() => rmSync(RUN_DIR, { recursive: true, force: true }));

  it('runs every complete js / ts block of README.md and examples/**/README.md (here or in test/system)', () => {
    const complete = readmeFiles().flatMap((file) =>
      extractSnippets(file, readRepoFile(file))
        .filter((s) => !s.fragment)
        .map((s) => `${file}:${s.line}`),
    );
    const run = RUN.map(([file, heading, lang]) => {
      const markdown = readRepoFile(file);
      const block = completeBlockAfter(extractSnippets(file, markdown), markdown, heading, lang);
      return `${file}:${block.line}`;
    });
    expect(run, 'complete blocks (file:line) run here or in test/system; add to RUN').toEqual(
      complete,
    );
  });

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

  it.skipIf(!hasTool('ss'))(
    'ReplicatedStore: counts visits 1 then 2 in one session, served by two different workers (needs ss)',
    async () => {
      const app = await run(blockAfter('## Sessions: `ReplicatedStore`', 'ts'), 'sessions.mjs', {
        PORT: '0',
        SESSION_SECRET: 'test secret',
      });
      const port = await listeningPort(app);
      const [home = '', ...others] = loopbackSources(40);
      const first = await getFrom(app, port, home, '/');
      expect(first.text, app.transcript()).toBe('visits: 1');
      expect(first.cookie, app.transcript()).toBeDefined();
      // IP mode routes by the client address: find one that another worker serves. A path the
      // app does not serve (404) saves no session (saveUninitialized: false).
      let away: string | undefined;
      for (const source of others) {
        const probe = await getFrom(app, port, source, '/probe');
        expect(probe.status, app.transcript()).toBe(404);
        if (probe.worker !== first.worker) {
          away = source;
          break;
        }
      }
      if (away === undefined) {
        throw new Error(`every source reached worker ${first.worker}\n${app.transcript()}`);
      }
      const second = await getFrom(app, port, away, '/', first.cookie);
      expect(second.text, app.transcript()).toBe('visits: 2');
      expect(second.worker, `${home} and ${away} reached the same worker`).not.toBe(first.worker);
    },
  );
});
