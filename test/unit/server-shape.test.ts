// The usual mistakes with the factory (issue 19): an Express app returned instead of a server, an
// Express app or a request handler in place of the factory, a factory without `return`, a server
// told to listen. Each is named in its error with what to write instead.
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import express from 'express';
import { afterEach, describe, expect, it } from 'vitest';
import { StickyMeshError } from '../../src/errors.js';
import {
  factoryArgumentProblem,
  frameworkApp,
  isRequestHandler,
  returnedProblem,
} from '../../src/server-shape.js';
import { makeServer } from '../../src/worker/server.js';

const servers: net.Server[] = [];
afterEach(() => {
  for (const s of servers.splice(0)) s.close();
});

/** A server `listen()` was called on, still resolving its host (not bound yet). */
function listenPending(): http.Server {
  const server = http.createServer();
  servers.push(server);
  server.listen(0, 'localhost');
  return server;
}

function listening(): Promise<http.Server> {
  const server = http.createServer();
  servers.push(server);
  return new Promise((resolve) => server.listen(0, '127.0.0.1', () => resolve(server)));
}

/** A Connect app's shape (connect is not installed): a handler with use, handle and listen. */
function connect(): unknown {
  const app = (_req: unknown, _res: unknown, _next?: unknown) => undefined;
  return Object.assign(app, { use() {}, handle() {}, listen() {} });
}
/** A Koa app's shape (koa is not installed): an EventEmitter with listen, use and callback. */
const koa = Object.assign(Object.create({ listen() {}, emit() {} }), {
  use() {},
  callback() {},
});
class OwnServer extends net.Server {}

describe('frameworkApp', () => {
  it('names Express, Connect and Koa apps with how to make a server of each', () => {
    expect(frameworkApp(express())).toEqual({
      what: 'an Express app',
      wrap: 'http.createServer(app)',
    });
    expect(frameworkApp(connect())).toEqual({
      what: 'a Connect app',
      wrap: 'http.createServer(app)',
    });
    expect(frameworkApp(koa)).toEqual({
      what: 'a Koa app',
      wrap: 'http.createServer(app.callback())',
    });
  });

  it.each([
    ['a server', http.createServer()],
    ['a factory', () => http.createServer()],
    ['a request handler', (_req: unknown, _res: unknown) => undefined],
    ['undefined', undefined],
    ['a plain object', { use() {} }],
  ])('is undefined for %s', (_name, value) => {
    expect(frameworkApp(value)).toBeUndefined();
  });

  it('an Express app is a function with listen and emit: a check for those alone takes it', () => {
    const app = express();
    expect(typeof app.listen).toBe('function');
    expect(typeof app.emit).toBe('function');
  });
});

describe('isRequestHandler', () => {
  it.each([
    ['(req, res)', (_req: unknown, _res: unknown) => undefined, true],
    ['(req, res, next)', (_req: unknown, _res: unknown, _next: unknown) => undefined, true],
    ['an Express app', express(), true],
    ['() => server', () => http.createServer(), false],
    ['(worker) => server', (_worker: unknown) => http.createServer(), false],
    ['async () => server', async () => http.createServer(), false],
    ['a server', http.createServer(), false],
  ])('%s -> %s', (_name, value, expected) => {
    expect(isRequestHandler(value)).toBe(expected);
  });
});

describe('factoryArgumentProblem (sticky() given something in place of the factory)', () => {
  it.each([
    [
      'an Express app',
      express(),
      'sticky() got an Express app in place of the factory: write `sticky(() => http.createServer(app))`',
    ],
    [
      'a Connect app',
      connect(),
      'sticky() got a Connect app in place of the factory: write `sticky(() => http.createServer(app))`',
    ],
    [
      'a Koa app',
      koa,
      'sticky() got a Koa app in place of the factory: write `sticky(() => http.createServer(app.callback()))`',
    ],
  ])('%s: says what it is and what to write', (_name, value, text) => {
    expect(factoryArgumentProblem(value)).toBe(text);
  });

  it('a request handler: says it looks like one and what to write', () => {
    const problem = factoryArgumentProblem((_req: unknown, res: http.ServerResponse) => res.end());
    expect(problem).toMatch(
      /^sticky\(\) got a function of 2 parameters in place of the factory, a request handler\?/,
    );
    expect(problem).toContain('`sticky(() => http.createServer(handler))`');
  });

  it('a server on which listen() was called, bound or not yet: the primary owns the port', async () => {
    for (const server of [listenPending(), await listening()]) {
      expect(factoryArgumentProblem(server)).toMatch(
        /^sticky\(\) got a server on which listen\(\) was called: the primary owns the port.*`sticky\(http\.createServer\(app\)\)\.listen\(3000\)`$/,
      );
    }
  });

  it.each([
    ['a factory', () => http.createServer()],
    ['an async factory', async () => http.createServer()],
    ['an http.Server', http.createServer()],
    ['an https.Server', https.createServer()],
    ['a net.Server subclass', new OwnServer()],
  ])('%s is accepted', (_name, value) => {
    expect(factoryArgumentProblem(value)).toBeUndefined();
  });

  it.each([
    [{}, 'an object without listen/emit'],
    [null, 'null'],
    [undefined, 'undefined'],
    ['app', '"app"'],
    [new Map(), 'an object (Map) without listen/emit'],
  ])('%s: names what it got', (value, what) => {
    expect(factoryArgumentProblem(value)).toBe(
      `sticky() expects a server factory or an http(s).Server, got ${what}`,
    );
  });
});

describe('returnedProblem (what the factory returned)', () => {
  it.each([
    [
      'an Express app',
      express(),
      'the server factory returned an Express app, not a server: return `http.createServer(app)`',
    ],
    [
      'a Koa app',
      koa,
      'the server factory returned a Koa app, not a server: return `http.createServer(app.callback())`',
    ],
    [
      'undefined',
      undefined,
      'the server factory returned undefined (did it forget `return`?): it must return the server, e.g. `return http.createServer(app)`',
    ],
    [
      'a request handler',
      (_req: unknown, _res: unknown) => undefined,
      'the server factory returned a function, not a server: if it is a request handler, return `http.createServer(handler)`',
    ],
    [
      'an object',
      { app: express() },
      'the server factory returned an object without listen/emit, not an http.Server or https.Server: return the server, e.g. `return http.createServer(app)`',
    ],
    [
      'null',
      null,
      'the server factory returned null, not an http.Server or https.Server: return the server, e.g. `return http.createServer(app)`',
    ],
  ])('%s', (_name, value, text) => {
    expect(returnedProblem(value)).toBe(text);
  });

  it('a server on which listen() was called, bound or not yet', async () => {
    for (const server of [listenPending(), await listening()]) {
      expect(returnedProblem(server)).toMatch(
        /^the server factory returned a server on which listen\(\) was called: the primary owns the port/,
      );
    }
  });

  it('an http or https server nobody told to listen is fine', () => {
    expect(returnedProblem(http.createServer())).toBeUndefined();
    expect(returnedProblem(https.createServer())).toBeUndefined();
  });
});

describe('makeServer (the worker runs the factory)', () => {
  async function failure(factory: () => unknown, routesRequests = false): Promise<StickyMeshError> {
    try {
      await makeServer(factory as never, routesRequests);
    } catch (err) {
      expect(err).toBeInstanceOf(StickyMeshError);
      return err as StickyMeshError;
    }
    throw new Error('makeServer accepted it');
  }

  it('a factory that throws: ERR_STICKY_FACTORY_FAILED, the thrown error as cause', async () => {
    const thrown = new Error('wrong option');
    const err = await failure(() => {
      throw thrown;
    });
    expect(err.code).toBe('ERR_STICKY_FACTORY_FAILED');
    expect(err.message).toBe('sticky-mesh: the server factory failed: Error: wrong option');
    expect(err.cause).toBe(thrown);
  });

  it.each([
    ['an Express app', () => express(), 'returned an Express app, not a server'],
    ['a promise of an Express app', async () => express(), 'returned an Express app, not a server'],
    ['nothing', () => undefined, 'returned undefined (did it forget `return`?)'],
    ['a listening server', () => listenPending(), 'returned a server on which listen() was called'],
  ])(
    'a factory that returns %s: ERR_STICKY_FACTORY_FAILED saying so',
    async (_name, factory, text) => {
      const err = await failure(factory);
      expect(err.code).toBe('ERR_STICKY_FACTORY_FAILED');
      expect(err.message).toContain(`sticky-mesh: the server factory ${text}`);
    },
  );

  it('a server told to listen is closed: the listen it asked for is called off', async () => {
    const server = listenPending();
    await failure(() => server);
    await new Promise((resolve) => setTimeout(resolve, 50));
    expect(server.listening).toBe(false);
  });

  it('an https server where request heads are read: refused; elsewhere accepted', async () => {
    const err = await failure(() => https.createServer(), true);
    expect(err.message).toMatch(/returned an https\.Server, but proxy mode and sessionAffinity/);
    const server = https.createServer();
    await expect(makeServer(() => server, false)).resolves.toBe(server);
  });
});
