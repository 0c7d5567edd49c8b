/**
 * Routing-key spoofing through `Forwarded` (issue 14), behind real proxies. With
 * `header: 'forwarded'` and `trustedProxies: 1` the key is the element the proxy appended, so a
 * client lands on the worker of the address it connects from, whatever Forwarded header it
 * writes itself. Each client here claims the address of another client, one whose worker is not
 * its own, in the shapes that made the old element splitter read the client's claim: an escaped
 * backslash before a closing quote (`x="a\\"`, valid RFC 7230), an unterminated quote, and more.
 *
 * nginx runs the `$proxy_add_forwarded` map nginx documents for the Forwarded header: a client's
 * header that is valid RFC 7239 syntax gets `, for=<address>` appended on its line, anything else
 * is replaced. HAProxy runs `option forwarded` (2.7+): appended to the client's last line when its
 * own validation accepts the client's lines (it stops checking once it has seen for, by, host and
 * proto), a line of its own otherwise. HAProxy 2.6 (Debian 12's) lacks that option; there
 * test/helpers/proxies.ts writes both of its shapes with `http-request` rules.
 *
 * Needs nginx and haproxy; skipped by name without them, a failure under REQUIRE_SYSTEM_TESTS=1.
 */
import { afterEach, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';
import {
  type Listener,
  type RunningProxy,
  startHaproxyForwarded,
  startNginxWith,
} from '../helpers/proxies.js';
import { hasTool } from '../helpers/system.js';

/** 127.0.0.100 ... 127.0.0.111: one address, so one routing key, per client. */
const SOURCES = loopbackSources(12, 100);
const OPTIONS = { proxy: true, header: 'forwarded', trustedProxies: 1, seed: 7 };

/**
 * Forwarded headers a client writes to claim `claimed` (written here as JavaScript literals: `\\`
 * is one backslash on the wire).
 */
const SPOOFS: readonly (readonly [name: string, header: (claimed: string) => string])[] = [
  ['an escaped backslash, then the closing quote', (c) => `for=${c};x="a\\\\"`],
  ['two escaped backslashes, then the closing quote', (c) => `for=${c};x="\\\\\\\\"`],
  ['an unterminated quote', (c) => `for=${c};x="`],
  [
    "for, by, host and proto (all HAProxy's validation reads), then an unterminated quote",
    (c) => `proto=http;host=a;by=_x;for=${c};x="`,
  ],
  ['a quoted claim with an escaped quote', (c) => `for="${c}";x="\\"", for=${c}`],
  ['a claim as the last element', (c) => `for=192.0.2.1, for=${c}`],
  ['a trailing backslash', (c) => `for=${c}\\`],
  ['a claim after a stray quote', (c) => `x", for=${c}`],
];

let proxies: RunningProxy[] = [];

afterEach(async () => {
  try {
    await Promise.all(proxies.map((p) => p.stop()));
  } finally {
    proxies = [];
    await stopFixtures();
  }
});

async function startApp(): Promise<FixtureProcess> {
  return startFixture({
    fixture: 'ip-app.mjs',
    env: { WORKERS: '4', STICKY_OPTIONS: JSON.stringify(OPTIONS) },
  });
}

/**
 * Through each listener: every source's slot without a Forwarded header of its own, then with
 * each spoof claiming a source on another slot. Returns every problem seen, with what was seen.
 */
async function spoofProblems(listeners: readonly Listener[]): Promise<string[]> {
  const problems: string[] = [];
  for (const { name, port } of listeners) {
    const slotOf = new Map<string, number>();
    const replies = await Promise.all(SOURCES.map((source) => request({ port, source })));
    replies.forEach((r, i) => {
      const source = SOURCES[i] as string;
      if (r.status === 200 && Number.isInteger(r.body?.slot))
        slotOf.set(source, r.body?.slot ?? -1);
      else problems.push(`${name}: ${source} without a header of its own: ${r.status} ${r.text}`);
    });
    if (new Set(slotOf.values()).size < 2) {
      problems.push(`${name}: every source on one slot (${JSON.stringify([...slotOf])})`);
      continue;
    }
    /** A source routed to another slot than `source`'s: the address a spoof claims. */
    const claimFor = (source: string) =>
      SOURCES.find((other) => slotOf.get(other) !== slotOf.get(source)) as string;
    for (const [spoof, header] of SPOOFS) {
      await Promise.all(
        SOURCES.map(async (source) => {
          const claimed = claimFor(source);
          const forwarded = header(claimed);
          const r = await request({ port, source, headers: { forwarded } });
          const seen = `${name}: ${source} sent ${JSON.stringify(forwarded)} (${spoof})`;
          if (r.status !== 200) problems.push(`${seen}: ${r.status} ${r.text}`);
          else if (r.body?.slot !== slotOf.get(source)) {
            const whose = r.body?.slot === slotOf.get(claimed) ? `, the slot of ${claimed}` : '';
            problems.push(`${seen}: slot ${r.body?.slot}${whose}, want ${slotOf.get(source)}`);
          }
        }),
      );
    }
  }
  return problems;
}

// --- nginx and the map nginx documents for the Forwarded header -------------------------------

/** RFC 7239 syntax as a PCRE (token, quoted-string with quoted-pairs, pairs, elements, list). */
const TOKEN = "[!#$%&'*+.^_`|~0-9A-Za-z-]+";
const QUOTED = '"([\\t \\x21\\x23-\\x5B\\x5D-\\x7E\\x80-\\xFF]|\\\\[\\t \\x21-\\x7E\\x80-\\xFF])*"';
const PAIR = `${TOKEN}=(${TOKEN}|${QUOTED})`;
const ELEMENT = `(${PAIR})?(;(${PAIR})?)*`;
const VALID_FORWARDED = `^(,[ \\t]*)*${ELEMENT}([ \\t]*,([ \\t]*${ELEMENT})?)*$`;

/** A double-quoted nginx string holding `text` (nginx unescapes \\ and \" in it). */
const nginxQuoted = (text: string) => `"${text.replaceAll('\\', '\\\\').replaceAll('"', '\\"')}"`;

/** nginx's `http { }` content: `$proxy_add_forwarded` as nginx documents it, set as Forwarded. */
function nginxForwarded(appPort: number, port: number): string {
  return `
  map $remote_addr $proxy_forwarded_elem {
    ~^[0-9.]+$ "for=$remote_addr";
    ~^[0-9A-Fa-f:.]+$ "for=\\"[$remote_addr]\\"";
    default "for=unknown";
  }
  map $http_forwarded $proxy_add_forwarded {
    ${nginxQuoted(`~${VALID_FORWARDED}`)} "$http_forwarded, $proxy_forwarded_elem";
    default "$proxy_forwarded_elem";
  }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://127.0.0.1:${appPort};
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header Forwarded $proxy_add_forwarded;
    }
  }`;
}

describe.skipIf(!hasTool('nginx'))(
  "behind nginx's documented $proxy_add_forwarded map, trustedProxies: 1 (needs nginx)",
  () => {
    it('routes every client by the address nginx appended, never by the one it wrote', async () => {
      const app = await startApp();
      const nginx = await startNginxWith((port) => nginxForwarded(app.port(), port));
      proxies.push(nginx);
      const problems = await spoofProblems([{ name: 'nginx', port: nginx.port }]);
      const report = () =>
        `${problems.length} problem(s):\n${problems.join('\n')}\n--- nginx ---\n${nginx.output()}\n${app.transcript()}`;
      expect(problems, problems.length > 0 ? report() : '').toEqual([]);
    });
  },
);

describe.skipIf(!hasTool('haproxy'))(
  "behind HAProxy's option forwarded (or its two shapes before 2.7), trustedProxies: 1 (needs haproxy)",
  () => {
    it('routes every client by the address HAProxy added, never by the one it wrote', async () => {
      const app = await startApp();
      const { proxy, listeners } = await startHaproxyForwarded(app.port());
      proxies.push(proxy);
      const problems = await spoofProblems(listeners);
      const report = () =>
        `${problems.length} problem(s):\n${problems.join('\n')}\n--- haproxy ---\n${proxy.output()}\n${app.transcript()}`;
      expect(problems, problems.length > 0 ? report() : '').toEqual([]);
    });
  },
);
