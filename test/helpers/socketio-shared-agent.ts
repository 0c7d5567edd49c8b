/**
 * Socket.io long-polling clients sharing ONE keep-alive agent, as behind a reverse proxy's
 * upstream pool: every polling exchange is an HTTP request, and the requests of different clients
 * are interleaved on shared connections, told apart only by their X-Forwarded-For. runAll() runs
 * CLIENTS such clients at once against a fixture that serves socketio-server.mjs's app
 * (socketio-app.mjs, socketio-rr.mjs) and reports what each client and the servers saw.
 */
import type { ClientRequest, ClientRequestArgs, OutgoingHttpHeaders } from 'node:http';
import http from 'node:http';
import type { Duplex } from 'node:stream';
import { io, type Socket } from 'socket.io-client';
import type { FixtureProcess } from './cluster.js';

export const CLIENTS = 40;
export const WORKERS = 4;
/**
 * Idle connections the shared agent keeps, as nginx's `keepalive 4` does for an upstream: busy
 * connections are not capped (each client's long-poll GET holds one until the server has a packet
 * for it; a cap below the client count starves the heartbeats even with a single worker), but
 * every request that finds an idle connection takes it, whichever client it is for.
 */
const MAX_FREE_SOCKETS = 4;
const PING_INTERVAL = 300;
const PING_TIMEOUT = 2_000;
/** How long each client stays connected after its hello: several ping cycles. */
const HOLD_MS = 2_000;
export const ROUND_TRIPS = 4;

/** The fixture environment the clients are tuned for (socketio-server.mjs reads it). */
export const APP_ENV = {
  WORKERS: String(WORKERS),
  TRANSPORTS: 'polling',
  PING_INTERVAL: String(PING_INTERVAL),
  PING_TIMEOUT: String(PING_TIMEOUT),
};

export interface Hello {
  pid: number;
  slot: number;
}

export interface Ack {
  echo: string;
  pid: number;
  slot: number;
}

/** What happened to one client, from its side, up to the moment the test closes it. */
export interface ClientRun {
  readonly forwardedFor: string;
  readonly socket: Socket;
  hello: Hello | undefined;
  connectError: string | undefined;
  readonly disconnects: string[];
  readonly acks: Ack[];
  readonly ackErrors: string[];
  pings: number;
  closing: boolean;
}

/**
 * A keep-alive agent that counts its connections and requests, and how often it reused a
 * connection for a different client than the connection's previous request was for.
 */
export class CountingAgent extends http.Agent {
  opened = 0;
  reused = 0;
  reusedForAnotherClient = 0;
  private readonly lastClient = new WeakMap<Duplex, string>();

  get requestCount(): number {
    return this.opened + this.reused; // maxSockets is unlimited: no request waits in a queue
  }

  override createConnection(
    options: ClientRequestArgs,
    callback?: (err: Error | null, stream: Duplex) => void,
  ): Duplex | null | undefined {
    this.opened++;
    const socket = super.createConnection(options, callback);
    const headers = options.headers;
    const client = Array.isArray(headers)
      ? undefined
      : (headers as OutgoingHttpHeaders | undefined)?.['x-forwarded-for'];
    if (socket && typeof client === 'string') this.lastClient.set(socket, client);
    return socket;
  }

  override reuseSocket(socket: Duplex, request: ClientRequest): void {
    this.reused++;
    const client = String(request.getHeader('x-forwarded-for'));
    const last = this.lastClient.get(socket);
    if (last !== undefined && last !== client) this.reusedForAnotherClient++;
    this.lastClient.set(socket, client);
    super.reuseSocket(socket, request);
  }
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

function explain(details: unknown): string {
  if (details === undefined) return '';
  if (details instanceof Error) {
    const { description, context } = details as Error & {
      description?: unknown;
      context?: unknown;
    };
    return JSON.stringify({
      description: String(description ?? ''),
      context: String(context ?? ''),
    });
  }
  try {
    return JSON.stringify(details);
  } catch {
    return String(details);
  }
}

/**
 * One polling-only client on the shared agent: waits for its hello, then stays connected for
 * HOLD_MS doing ROUND_TRIPS acknowledged emits. Never throws and leaves the client open (the
 * caller closes every client at once, after reading the servers' log): records what went wrong.
 */
async function runClient(port: number, agent: http.Agent, index: number): Promise<ClientRun> {
  const forwardedFor = `203.0.113.${index + 1}`;
  const socket: Socket = io(`http://127.0.0.1:${port}`, {
    agent: agent as never,
    transports: ['polling'],
    extraHeaders: { 'x-forwarded-for': forwardedFor },
    reconnection: false,
    forceNew: true,
  });
  const run: ClientRun = {
    forwardedFor,
    socket,
    hello: undefined,
    connectError: undefined,
    disconnects: [],
    acks: [],
    ackErrors: [],
    pings: 0,
    closing: false,
  };
  socket.io.on('ping', () => {
    run.pings++;
  });
  socket.on('disconnect', (reason, details) => {
    if (!run.closing) run.disconnects.push(`${reason} ${explain(details)}`);
  });
  const hello = await new Promise<Hello | string>((resolve) => {
    const timer = setTimeout(() => resolve('no hello within 8000 ms'), 8_000);
    socket.once('hello', (h: Hello) => {
      clearTimeout(timer);
      resolve(h);
    });
    socket.once('connect_error', (err) => {
      clearTimeout(timer);
      resolve(`connect_error: ${err.message} ${explain(err)}`);
    });
    socket.once('disconnect', (reason) => {
      clearTimeout(timer);
      resolve(`disconnected before hello: ${reason}`);
    });
  });
  if (typeof hello === 'string') {
    run.connectError = hello;
    return run;
  }
  run.hello = hello;
  for (let i = 0; i < ROUND_TRIPS; i++) {
    await sleep(HOLD_MS / ROUND_TRIPS);
    if (!socket.connected) break;
    try {
      const ack = await socket.timeout(3_000).emitWithAck('ping', `${forwardedFor} #${i}`);
      run.acks.push(ack as Ack);
    } catch (err) {
      run.ackErrors.push(String(err));
    }
  }
  return run;
}

export interface Outcome {
  readonly runs: ClientRun[];
  /** The shared agent, for its counts. */
  readonly agent: CountingAgent;
  /** Server-side `connectionError` lines printed while every client was still open. */
  readonly serverErrors: { code: unknown; message: unknown; forwardedFor: unknown }[];
  /** Of those, the ones that reached a worker other than the one holding the session. */
  readonly misrouted: number;
  /** Server-side connections that carried requests of more than one client. */
  readonly sharedConnections: number;
  readonly failed: ClientRun[];
  readonly sessionUnknown: number;
  readonly summary: string;
}

/**
 * All CLIENTS clients at once on ONE shared keep-alive agent against `app`. The servers' log is
 * read before any client is closed: closing a polling client races its last requests against the
 * end of its session, which engine.io may also answer with "Session ID unknown".
 */
export async function runAll(app: FixtureProcess): Promise<Outcome> {
  const agent = new CountingAgent({ keepAlive: true, maxFreeSockets: MAX_FREE_SOCKETS });
  const runs: ClientRun[] = [];
  try {
    await Promise.all(
      Array.from({ length: CLIENTS }, (_, i) =>
        runClient(app.port(), agent, i).then((run) => {
          runs.push(run);
        }),
      ),
    );
    // Every client is still open; give the workers' last lines time to arrive.
    await sleep(200);
    for (const run of runs) run.closing = true;
    const errorLines = app.events('connectionError');
    const serverErrors = errorLines.map((l) => ({
      code: l.code,
      message: l.message,
      forwardedFor: l.forwardedFor,
    }));
    const sessionPid = new Map(app.events('connection').map((l) => [l.sid, l.pid]));
    const misrouted = errorLines.filter(
      (l) => sessionPid.has(l.sid) && sessionPid.get(l.sid) !== l.pid,
    ).length;
    const sharedConnections = app.events('sharedConnection').length;
    const failed = runs.filter(
      (r) =>
        r.connectError !== undefined ||
        r.disconnects.length > 0 ||
        r.ackErrors.length > 0 ||
        r.acks.length < ROUND_TRIPS,
    );
    const sessionUnknown = serverErrors.filter((e) => e.message === 'Session ID unknown').length;
    const summary = [
      `${runs.length} clients, ${failed.length} failed:`,
      `connect_error ${runs.filter((r) => r.connectError !== undefined).length},`,
      `disconnected ${runs.filter((r) => r.disconnects.length > 0).length},`,
      `ack errors ${runs.reduce((n, r) => n + r.ackErrors.length, 0)};`,
      `server connectionError ${serverErrors.length} (Session ID unknown ${sessionUnknown},`,
      `${misrouted} of all at a worker other than the session's);`,
      `agent: ${agent.requestCount} requests on ${agent.opened} connections,`,
      `${agent.reusedForAnotherClient} reused a connection last used for another client;`,
      `worker-side connections that carried several clients ${sharedConnections}`,
      ...failed
        .slice(0, 5)
        .map(
          (r) =>
            `\n  ${r.forwardedFor}: ${r.connectError ?? ''} ${r.disconnects.join('; ')} ${r.ackErrors.join('; ')}`,
        ),
    ].join(' ');
    return {
      runs,
      agent,
      serverErrors,
      misrouted,
      sharedConnections,
      failed,
      sessionUnknown,
      summary,
    };
  } finally {
    for (const run of runs) {
      run.closing = true;
      run.socket.close();
    }
    agent.destroy();
  }
}
