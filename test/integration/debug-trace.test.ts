// NODE_DEBUG=sticky-mesh in a real cluster (test/fixtures/ip-app.mjs, proxy mode): the routing,
// handoff and lifecycle decisions the README's "Debugging and observability" section lists reach
// stderr (issue 19: one line appeared for two requests and a shutdown), and under a load of 2,000
// connections the lines stay bounded: each kind writes at most TRACE_LINES_PER_SECOND a second
// per process and then says how many it left out.
import http from 'node:http';
import { afterEach, describe, expect, it } from 'vitest';
import { TRACE_LINES_PER_SECOND } from '../../src/debug.js';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { request } from '../helpers/http.js';

/** The debug lines process `pid` wrote, without their `STICKY-MESH <pid>: ` prefix. */
function linesOf(app: FixtureProcess, pid: number): string[] {
  const prefix = `STICKY-MESH ${pid}: `;
  return app.stderr
    .split('\n')
    .filter((l) => l.startsWith(prefix))
    .map((l) => l.slice(prefix.length));
}

const start = (options: object) =>
  startFixture({
    fixture: 'ip-app.mjs',
    env: {
      WORKERS: '2',
      NODE_DEBUG: 'sticky-mesh',
      CLOSE_ON_SIGNAL: 'SIGUSR2',
      STICKY_OPTIONS: JSON.stringify({ proxy: true, seed: 7, ...options }),
    },
  });

async function shutdown(app: FixtureProcess): Promise<void> {
  app.signal('SIGUSR2');
  await app.waitFor('closed');
}

describe('NODE_DEBUG=sticky-mesh', () => {
  afterEach(stopFixtures);

  it('logs the routing, handoff and lifecycle decisions of a few requests and a shutdown', async () => {
    const app = await start({});
    const port = app.port();
    const a = '198.51.100.1';
    const first = await request({ port, headers: { 'x-forwarded-for': `6.6.6.6, ${a}` } });
    // A client of the other worker.
    let b = '';
    for (let i = 2; b === '' && i < 50; i++) {
      const r = await request({ port, headers: { 'x-forwarded-for': `198.51.100.${i}` } });
      if (r.body?.slot !== first.body?.slot) b = `198.51.100.${i}`;
    }
    // A kept-open connection carrying two clients, as behind nginx's upstream keep-alive.
    const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
    const replies = [];
    for (const client of [a, b, a, b]) {
      replies.push(await request({ port, agent, headers: { 'x-forwarded-for': client } }));
    }
    agent.destroy();
    await request({ port, headers: {} }); // no header: 400
    await shutdown(app);

    const primary = linesOf(app, app.pid);
    const context = app.transcript();
    const slotA = first.body?.slot;
    const pidA = first.body?.pid;
    const ups = app.events('workerUp');
    expect(ups, context).toHaveLength(2);
    for (const { slot, pid } of ups) {
      expect(primary, context).toContain(`lifecycle: slot ${slot}: forked pid ${pid}`);
      expect(primary, context).toContain(`lifecycle: slot ${slot}: pid ${pid} ready, routed to`);
      expect(primary, context).toContain(
        `lifecycle: slot ${slot}: pid ${pid} exited (code 0), as asked`,
      );
    }
    expect(primary, context).toEqual(
      expect.arrayContaining([
        expect.stringMatching(/^lifecycle: listening on 127\.0\.0\.1:\d+; forking the workers$/),
        'lifecycle: every worker is ready',
        `route: ${a} -> slot ${slotA} (address key, rendezvous hash)`,
        expect.stringMatching(new RegExp(`^handoff: to pid ${pidA} with \\d+ bytes read`)),
        `handoff: pid ${pidA} took a connection`,
        'route: no usable x-forwarded-for address and no session id: 400',
        'lifecycle: shutdown: stop accepting; workers drain (up to 10000 ms)',
        'lifecycle: shutdown: every worker has exited',
        'lifecycle: closed',
      ]),
    );
    // The kept-open connection's later requests: decided in the worker that holds it.
    const holder = replies[0]?.body;
    const other = replies.find((r) => r.body?.slot !== holder?.slot)?.body;
    expect(other, `both clients on one worker?\n${context}`).toBeDefined();
    expect(linesOf(app, holder?.pid ?? -1), context).toContain(
      `request: worker ${holder?.slot}: GET -> slot ${other?.slot} (relayed, or handed back if no channel)`,
    );
  });

  it('2,000 connections write a bounded number of lines, and say how many were left out', async () => {
    const app = await start({});
    const port = app.port();
    const before = linesOf(app, app.pid).length;
    const startedAt = Date.now();
    let next = 0;
    const one = async () => {
      while (next < 2000) {
        const i = next++;
        const r = await request({
          port,
          headers: { 'x-forwarded-for': `10.${(i >> 8) & 255}.${i & 255}.1` },
        });
        expect(r.status).toBe(200);
      }
    };
    await Promise.all(Array.from({ length: 50 }, one));
    const seconds = Math.ceil((Date.now() - startedAt) / 1000) + 1;
    // Every window's summary is out once its second is over.
    await new Promise((resolve) => setTimeout(resolve, 1100));
    const lines = linesOf(app, app.pid).slice(before);
    const context = `${lines.length} lines in ${seconds} s\n${lines.join('\n')}`;
    for (const kind of ['route', 'handoff']) {
      const ofKind = lines.filter((l) => l.startsWith(`${kind}: `));
      // At most TRACE_LINES_PER_SECOND lines and one summary per second that has begun.
      expect(ofKind.length, context).toBeLessThanOrEqual((TRACE_LINES_PER_SECOND + 1) * seconds);
      const left = ofKind
        .map((l) =>
          /more lines left out in the last second$/.test(l) ? Number(l.split(' ')[1]) : 0,
        )
        .reduce((sum, n) => sum + n, 0);
      const written = ofKind.filter((l) => !l.includes('more lines left out')).length;
      // route: one decision per connection; handoff: a send and a take per connection.
      expect(written + left, context).toBe(kind === 'route' ? 2000 : 4000);
    }
    await shutdown(app);
  });
});
