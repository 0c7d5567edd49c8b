import net from 'node:net';
import { describe } from './errors.js';
import { listenCalled } from './node-internals.js';
import { hasMethods } from './validate.js';

/**
 * What sticky() was given where it wants a server factory, and what a factory returned where it
 * must return a server, in words an error can use. The usual mistakes (an Express, Connect or
 * Koa app, a request handler, a factory without `return`, a server told to listen) are named with
 * what to write instead. A server is an `http.Server` or `https.Server`: any `net.Server`.
 */

/** An app of a web framework, which is a request handler (or makes one), not a server. */
interface FrameworkApp {
  what: string;
  /** How to make a server of it. */
  wrap: string;
}

/** Express and Connect apps are functions with `use` and `handle`; a Koa app has `callback`. */
export function frameworkApp(value: unknown): FrameworkApp | undefined {
  if (typeof value === 'function') {
    const app = value as unknown as Record<string, unknown>;
    if (typeof app.use !== 'function' || typeof app.handle !== 'function') return undefined;
    const what = typeof app.set === 'function' ? 'an Express app' : 'a Connect app';
    return { what, wrap: 'http.createServer(app)' };
  }
  if (hasMethods(value, 'callback', 'use', 'listen')) {
    return { what: 'a Koa app', wrap: 'http.createServer(app.callback())' };
  }
  return undefined;
}

/**
 * A function of two parameters or more, `(req, res)` or `(req, res, next)`, is a request
 * handler: the factory takes no request.
 */
export function isRequestHandler(value: unknown): value is (...args: unknown[]) => unknown {
  return typeof value === 'function' && value.length >= 2;
}

/**
 * What is wrong with `value` given to sticky() in place of the factory, as a sentence for an
 * error; `undefined` when it is a function that may be a factory or a server not told to listen.
 */
export function factoryArgumentProblem(value: unknown): string | undefined {
  const app = frameworkApp(value);
  if (app) {
    return `sticky() got ${app.what} in place of the factory: write \`sticky(() => ${app.wrap})\``;
  }
  if (isRequestHandler(value)) {
    return (
      `sticky() got a function of ${value.length} parameters in place of the factory, a request ` +
      'handler? The factory takes no request and returns the server: write ' +
      '`sticky(() => http.createServer(handler))`'
    );
  }
  if (typeof value === 'function') return undefined;
  if (value instanceof net.Server) {
    return listenCalled(value)
      ? 'sticky() got a server on which listen() was called: the primary owns the port, so ' +
          'pass the server without calling listen() and call listen() on what sticky() returns: ' +
          '`sticky(http.createServer(app)).listen(3000)`'
      : undefined;
  }
  return `sticky() expects a server factory or an http(s).Server, got ${whatValue(value)}`;
}

/**
 * What is wrong with `value`, returned by the factory (its promise awaited), as a sentence for
 * an error; `undefined` when it is a server nobody told to listen.
 */
export function returnedProblem(value: unknown): string | undefined {
  if (value instanceof net.Server) {
    return listenCalled(value)
      ? 'the server factory returned a server on which listen() was called: the primary owns ' +
          "the port and hands each connection to the worker's server, so return the server " +
          'without calling listen() (`return http.createServer(app)`)'
      : undefined;
  }
  const app = frameworkApp(value);
  if (app) return `the server factory returned ${app.what}, not a server: return \`${app.wrap}\``;
  if (value === undefined) {
    return (
      'the server factory returned undefined (did it forget `return`?): it must return the ' +
      'server, e.g. `return http.createServer(app)`'
    );
  }
  if (typeof value === 'function') {
    return (
      'the server factory returned a function, not a server: if it is a request handler, ' +
      'return `http.createServer(handler)`'
    );
  }
  return (
    `the server factory returned ${whatValue(value)}, not an http.Server or https.Server: ` +
    'return the server, e.g. `return http.createServer(app)`'
  );
}

/** `describe()`, and for an object its class and whether it has a server's methods. */
function whatValue(value: unknown): string {
  if (typeof value !== 'object' || value === null || Array.isArray(value)) return describe(value);
  const name: unknown = (value as { constructor?: { name?: unknown } }).constructor?.name;
  const what = typeof name === 'string' && name !== 'Object' ? `an object (${name})` : 'an object';
  return hasMethods(value, 'listen', 'emit') ? what : `${what} without listen/emit`;
}
