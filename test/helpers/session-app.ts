/**
 * Talking to clusters of test/fixtures/session-app.mjs (express-session with ReplicatedStore under
 * sticky-mesh in proxy mode): one request with a session cookie from a chosen client, and the
 * primary's stats.
 */
import { expect } from 'vitest';
import { FixtureProcess } from './cluster.js';
import { request } from './http.js';

/** What the fixture's routes answer: every answer has the worker's `slot`, the rest by route. */
export interface Answer {
  slot: number;
  /** GET /me (null once logged out), GET /has. */
  user?: string | null;
  /** GET /me, POST /inc. */
  count?: number | null;
  /** GET /digest: how many sessions the worker holds, and a SHA-256 of them all. */
  sessions?: number;
  digest?: string;
  /** GET /has. */
  found?: boolean;
  /** POST /bulk. */
  written?: number;
  /** POST /login. */
  sid?: string;
  /** POST /write: how the store call settled within 3 s, and its error if it rejected. */
  settled?: 'resolved' | 'rejected' | 'pending' | 'answered';
  /** POST /raw-write: the primary's reason for refusing the write (null: it took it). */
  refused?: string | null;
  code?: string | null;
  message?: string;
}

export interface SessionReply {
  readonly body: Answer;
  /** The cookie the answer set, or else the one sent. */
  readonly cookie: string | undefined;
}

/**
 * How a test reaches a cluster: the fixture process (its `listening` port on loopback), a port,
 * or a Unix socket the fixture forwards to its port (CONTROL_SOCKET, for a cluster inside a
 * network namespace).
 */
export type SessionAppTarget =
  | FixtureProcess
  | { readonly port: number }
  | { readonly socketPath: string };

export type Method = 'GET' | 'POST';

export interface CallOptions {
  /** The session cookie to send (`connect.sid=...`), if any. */
  readonly cookie?: string | undefined;
  /** X-Forwarded-For, the balancer's routing key (proxy mode); default 10.0.0.1. */
  readonly client?: string | undefined;
  /** ms for the whole exchange; default request()'s (5000). */
  readonly timeoutMs?: number;
  /** The request as a failure message names it; default `${method} ${path}`. */
  readonly what?: string;
}

/**
 * One request to the fixture, which must answer 200 (a failing test prints what came back);
 * resolves with the parsed answer and the session cookie to send next.
 */
export async function callSessionApp(
  target: SessionAppTarget,
  method: Method,
  path: string,
  options: CallOptions = {},
): Promise<SessionReply> {
  const { cookie, client = '10.0.0.1', timeoutMs, what = `${method} ${path}` } = options;
  const r = await request({
    ...(target instanceof FixtureProcess
      ? { port: target.port() }
      : 'socketPath' in target
        ? { port: 0, socketPath: target.socketPath }
        : { port: target.port }),
    method,
    path,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
    headers: { 'x-forwarded-for': client, ...(cookie ? { cookie } : {}) },
  });
  expect(r.status, `${what}: ${r.text}`).toBe(200);
  return {
    body: JSON.parse(r.text) as Answer,
    cookie: r.headers['set-cookie']?.[0]?.split(';')[0] ?? cookie,
  };
}

/**
 * `callSessionApp` as `call(target, method, path, cookie?, client?)`, with `defaults` (a test
 * file's timeout) for every call.
 */
export function sessionAppCaller(defaults: Pick<CallOptions, 'timeoutMs'> = {}) {
  return (
    target: SessionAppTarget,
    method: Method,
    path: string,
    cookie?: string,
    client?: string,
  ): Promise<SessionReply> => callSessionApp(target, method, path, { ...defaults, cookie, client });
}

/**
 * The primary's `app.stats()`: SIGUSR2 makes the fixture print them as a `stats` line. Rejects
 * after `timeoutMs` (default waitFor's, 10000) with the fixture's transcript.
 */
export async function sessionAppStats<Stats = Record<string, unknown>>(
  app: FixtureProcess,
  timeoutMs?: number,
): Promise<Stats> {
  const from = app.received.length;
  app.signal('SIGUSR2');
  const { line } = await app.waitFor('stats', {
    from,
    ...(timeoutMs === undefined ? {} : { timeoutMs }),
  });
  return line as unknown as Stats;
}
