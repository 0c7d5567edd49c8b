/**
 * HTTP(S) clients bound to a chosen loopback source address. In IP mode the source address is the
 * routing key, so every helper here takes `source` (127.0.0.N) and, unless given an agent, opens a
 * fresh connection per request (agent: false).
 */
import type { IncomingHttpHeaders } from 'node:http';
import http from 'node:http';
import https from 'node:https';
import net, { type Socket } from 'node:net';

/** What the fixture's workers answer (test/fixtures/ip-app.mjs). */
export interface WorkerReply {
  readonly pid: number;
  readonly slot: number;
  readonly remote: string | null;
  readonly bytes?: number;
  readonly sha256?: string;
  readonly slept?: number;
}

export interface Reply {
  readonly status: number;
  readonly headers: IncomingHttpHeaders;
  readonly text: string;
  /** Parsed JSON body, or undefined when the body is not JSON. */
  readonly body: WorkerReply | undefined;
  readonly socket: Socket;
}

export interface RequestOptions {
  readonly port: number;
  /** Local address to bind, e.g. 127.0.0.7; default 127.0.0.1. */
  readonly source?: string;
  readonly host?: string;
  readonly method?: 'GET' | 'POST';
  readonly path?: string;
  readonly body?: Buffer;
  readonly tls?: boolean;
  /** Default false: a fresh connection for this request only. */
  readonly agent?: http.Agent | false;
  /** ms for the whole exchange; default 5000. */
  readonly timeoutMs?: number;
  /** Extra request headers. */
  readonly headers?: Record<string, string>;
  /**
   * Connect to this Unix socket instead of host:port (a fixture in a network namespace
   * forwards one to its port: the test process cannot reach into the namespace otherwise).
   */
  readonly socketPath?: string;
}

/** `count` loopback source addresses starting at 127.0.0.`first`. */
export function loopbackSources(count: number, first = 2): string[] {
  return Array.from({ length: count }, (_, i) => `127.0.0.${first + i}`);
}

export function request(options: RequestOptions): Promise<Reply> {
  const { port, source = '127.0.0.1', host = '127.0.0.1', method = 'GET', path = '/' } = options;
  const timeoutMs = options.timeoutMs ?? 5_000;
  const headers: Record<string, string | number> = { ...options.headers };
  if (options.body !== undefined) {
    headers['content-type'] = 'application/octet-stream';
    headers['content-length'] = options.body.length;
  }
  const common = {
    ...(options.socketPath
      ? { socketPath: options.socketPath }
      : { host, port, localAddress: source }),
    method,
    path,
    headers,
    agent: options.agent ?? false,
  };
  return new Promise((resolve, reject) => {
    const req = options.tls
      ? https.request({ ...common, rejectUnauthorized: false })
      : http.request(common);
    const timer = setTimeout(() => {
      req.destroy(
        new Error(`${method} ${path} from ${source}: no complete reply in ${timeoutMs} ms`),
      );
    }, timeoutMs);
    req.on('error', (err) => {
      clearTimeout(timer);
      reject(err);
    });
    // A keep-alive agent detaches the socket from the response once it ends: keep it here.
    let socket: Socket | undefined;
    req.on('socket', (s) => {
      socket = s;
    });
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (chunk: Buffer) => chunks.push(chunk));
      res.on('error', (err) => {
        clearTimeout(timer);
        reject(err);
      });
      res.on('end', () => {
        clearTimeout(timer);
        const text = Buffer.concat(chunks).toString('utf8');
        let body: WorkerReply | undefined;
        try {
          body = JSON.parse(text) as WorkerReply;
        } catch {
          body = undefined;
        }
        resolve({
          status: res.statusCode ?? 0,
          headers: res.headers,
          text,
          body,
          socket: socket ?? res.socket,
        });
      });
    });
    req.end(options.body);
  });
}

/** GET that must answer 200 with a worker reply; anything else rejects with what came back. */
export async function getWorker(options: RequestOptions): Promise<WorkerReply> {
  const reply = await request(options);
  if (reply.status !== 200 || reply.body === undefined) {
    throw new Error(
      `${options.path ?? '/'} from ${options.source ?? '127.0.0.1'}: status ${reply.status}, body ${JSON.stringify(reply.text)}`,
    );
  }
  return reply.body;
}

export interface RawExchange {
  /** Everything the server sent, as latin1 text. */
  readonly data: string;
  /** How the connection ended: the server closed it (FIN or reset), or we gave up. */
  readonly ending: 'server-end' | 'server-reset' | 'timeout' | 'error';
  readonly error?: string;
}

/**
 * Opens a plain TCP connection from `source`, writes `send`, and collects what the server sends
 * until it closes the connection or `timeoutMs` passes (then we destroy it ourselves).
 */
export function rawExchange(options: {
  port: number;
  source: string;
  send: string;
  timeoutMs: number;
}): Promise<RawExchange> {
  return new Promise((resolve) => {
    const socket = net.connect({
      host: '127.0.0.1',
      port: options.port,
      localAddress: options.source,
    });
    const chunks: Buffer[] = [];
    let ending: RawExchange['ending'] | undefined;
    let error: string | undefined;
    const timer = setTimeout(() => {
      ending ??= 'timeout';
      socket.destroy();
    }, options.timeoutMs);
    socket.on('connect', () => socket.write(options.send));
    socket.on('data', (chunk: Buffer) => chunks.push(chunk));
    socket.on('end', () => {
      ending ??= 'server-end';
      socket.end();
    });
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (err.code === 'ECONNRESET') ending ??= 'server-reset';
      else {
        ending ??= 'error';
        error = `${err.code ?? ''} ${err.message}`;
      }
    });
    socket.on('close', () => {
      clearTimeout(timer);
      const data = Buffer.concat(chunks).toString('latin1');
      resolve({ data, ending: ending ?? 'server-end', ...(error === undefined ? {} : { error }) });
    });
  });
}

/** A minimal HTTP/1.1 GET that asks to keep the connection open. */
export function rawGet(path = '/'): string {
  return `GET ${path} HTTP/1.1\r\nHost: localhost\r\nConnection: keep-alive\r\n\r\n`;
}

/**
 * The worker that answers the first of `sources`, and every source it serves (the clients that
 * lose their worker when it goes).
 */
export async function workerOfFirst(
  port: number,
  sources: readonly string[],
): Promise<{ slot: number; pid: number; clients: string[] }> {
  const replies = await Promise.all(sources.map((source) => getWorker({ port, source })));
  const { slot, pid } = replies[0] as WorkerReply;
  return { slot, pid, clients: sources.filter((_, i) => replies[i]?.slot === slot) };
}
