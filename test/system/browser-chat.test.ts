/**
 * The chat example in a real browser (Debian's Chromium driven by playwright-core): two people,
 * each in a browser context of their own (own cookies), each pinned to a different worker, set
 * their names through the page's form and chat. Each sees the other's message under the name the
 * sender's session holds, over a WebSocket.
 *
 * Both contexts connect from 127.0.0.1, and in IP mode the address is the routing key, so they
 * would share a worker: the example runs with PROXY=1 and each context sends its own
 * X-Forwarded-For (Playwright's extraHTTPHeaders reach every request of the context, the
 * WebSocket handshake included), chosen by asking /whoami until the two land on different
 * workers. Playwright makes the fresh user data directory itself (it refuses --user-data-dir in
 * `args` for launch(), and launchPersistentContext has a single context).
 *
 * Screenshots of both pages go to test-results/ (ignored by git). Needs /usr/bin/chromium;
 * skipped by name without it, a failure under REQUIRE_SYSTEM_TESTS=1.
 */
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { type Browser, chromium, type Page } from 'playwright-core';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';
import { hasTool } from '../helpers/system.js';

/** The little of the DOM the page functions below use: they run in the page (no DOM lib here). */
declare const document: {
  getElementById(id: string): { textContent: string | null } | null;
  querySelectorAll(selector: string): Iterable<{ textContent: string | null }> & { length: number };
};

const CHROMIUM = '/usr/bin/chromium';
const WORKERS = 4;
const resultsDir = fileURLToPath(new URL('../../test-results/', import.meta.url));

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** What a page shows about itself. */
interface Shown {
  pageWorker: string;
  socketWorker: string;
  transport: string;
  name: string;
  messages: string[];
}

function shown(page: Page): Promise<Shown> {
  return page.evaluate(() => {
    const text = (id: string) => document.getElementById(id)?.textContent ?? '';
    return {
      pageWorker: text('page-worker'),
      socketWorker: text('socket-worker'),
      transport: text('transport'),
      name: text('name'),
      messages: [...document.querySelectorAll('#messages li')].map((li) => li.textContent ?? ''),
    };
  });
}

/** The worker slot /whoami answers for a client that says it is `forwardedFor`. */
async function slotOf(port: number, forwardedFor: string): Promise<number> {
  const reply = await request({
    port,
    path: '/whoami',
    headers: { 'x-forwarded-for': forwardedFor },
  });
  if (reply.status !== 200) {
    throw new Error(`/whoami for ${forwardedFor}: ${reply.status} ${reply.text}`);
  }
  return (JSON.parse(reply.text) as { slot: number }).slot;
}

describe.skipIf(!hasTool('chromium'))('the chat example in Chromium (needs chromium)', () => {
  let app: FixtureProcess;
  let port: number;
  let browser: Browser | undefined;

  beforeAll(async () => {
    app = await startFixture({
      fixture: '../../examples/socketio/server.js',
      env: { PORT: '0', WORKERS: String(WORKERS), PROXY: '1' },
      until: null,
    });
    const line = new RegExp(`chat on http://localhost:(\\d+) with ${WORKERS} workers`);
    const deadline = Date.now() + 15_000;
    while (!line.test(app.stdout)) {
      if (Date.now() > deadline || app.exitStatus !== undefined) {
        throw new Error(`the example did not start\n${app.transcript()}`);
      }
      await sleep(50);
    }
    port = Number(line.exec(app.stdout)?.[1]);
    browser = await chromium.launch({
      executablePath: CHROMIUM,
      headless: true,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
      ],
      timeout: 30_000,
    });
  }, 60_000);

  afterAll(async () => {
    await browser?.close();
    await stopFixtures();
  });

  it('two people on different workers chat under their session names, over WebSockets', async () => {
    if (!browser) throw new Error('no browser');
    // Two client addresses that sticky-mesh routes to different workers.
    const first = '203.0.113.1';
    const firstSlot = await slotOf(port, first);
    let second: string | undefined;
    let secondSlot: number | undefined;
    for (let i = 2; i < 64 && second === undefined; i++) {
      const slot = await slotOf(port, `203.0.113.${i}`);
      if (slot !== firstSlot) {
        second = `203.0.113.${i}`;
        secondSlot = slot;
      }
    }
    if (second === undefined) throw new Error('every address went to one worker');

    const people = [
      { name: 'Alice', forwardedFor: first, slot: firstSlot },
      { name: 'Bob', forwardedFor: second, slot: secondSlot },
    ];
    const pages: Page[] = [];
    for (const person of people) {
      const context = await browser.newContext({
        extraHTTPHeaders: { 'x-forwarded-for': person.forwardedFor },
        viewport: { width: 800, height: 600 },
      });
      context.setDefaultTimeout(10_000);
      const page = await context.newPage();
      const response = await page.goto(`http://127.0.0.1:${port}/`);
      expect(response?.status()).toBe(200);
      // Connected, greeted by its worker, and upgraded from polling to a WebSocket.
      await page.waitForFunction(
        () =>
          document.getElementById('transport')?.textContent === 'websocket' &&
          document.getElementById('socket-worker')?.textContent !== '…',
      );
      pages.push(page);
    }
    const [alice, bob] = pages as [Page, Page];

    // Each sets a name through the form: POST /name stores it in the session.
    for (const [i, page] of pages.entries()) {
      const name = people[i]?.name ?? '';
      await page.fill('#name-input', name);
      await page.click('#name-form button');
      await page.waitForFunction((n) => document.getElementById('name')?.textContent === n, name);
    }

    await alice.fill('#chat-input', 'hello from Alice');
    await alice.click('#chat-form button');
    await bob.waitForFunction(() => document.querySelectorAll('#messages li').length >= 1);
    await bob.fill('#chat-input', 'hi Alice, Bob here');
    await bob.click('#chat-form button');
    for (const page of pages) {
      await page.waitForFunction(() => document.querySelectorAll('#messages li').length >= 2);
    }

    await mkdir(resultsDir, { recursive: true });
    const views = await Promise.all(pages.map(shown));
    for (const [i, page] of pages.entries()) {
      await page.screenshot({
        path: `${resultsDir}browser-chat-${people[i]?.name.toLowerCase()}.png`,
        fullPage: true,
      });
    }
    const context = `${JSON.stringify(views, null, 2)}\n${app.transcript()}`;
    const [aliceView, bobView] = views as [Shown, Shown];

    // Different workers, each page and its socket on the one its address routes to.
    expect(aliceView.socketWorker, context).toBe(String(people[0]?.slot));
    expect(bobView.socketWorker, context).toBe(String(people[1]?.slot));
    expect(aliceView.socketWorker, context).not.toBe(bobView.socketWorker);
    expect(aliceView.pageWorker, context).toBe(aliceView.socketWorker);
    expect(bobView.pageWorker, context).toBe(bobView.socketWorker);
    for (const view of views) expect(view.transport, context).toBe('websocket');

    // Each message reached both pages once, under the name its sender's session holds.
    // ("anonymous" instead means the socket's session is not the page's: its handshake carried no
    // session cookie, so the session POST /name wrote to is one the socket never reads.)
    const expected = [
      `Alice: hello from Alice (via worker ${aliceView.socketWorker})`,
      `Bob: hi Alice, Bob here (via worker ${bobView.socketWorker})`,
    ];
    expect(bobView.messages, context).toEqual(expected);
    expect(aliceView.messages, context).toEqual(expected);
  });
});
