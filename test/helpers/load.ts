/**
 * HTTP load with autocannon (the load generator of bench/), one autocannon client per loopback
 * source address, so that in IP mode the load reaches every worker slot. Every answer's
 * x-worker-pid / x-worker-slot headers (test/fixtures/ip-app.mjs sets them) are recorded per
 * source with the time they arrived.
 */
import net from 'node:net';
import autocannon from 'autocannon';

export interface LoadOptions {
  readonly port: number;
  /** One autocannon client (connection) per source address, e.g. 127.0.0.10. */
  readonly sources: readonly string[];
  /** `false`: every request carries `Connection: close` (one connection per request). */
  readonly keepAlive: boolean;
  /** Upper bound of the run, in s (stop() ends it sooner). */
  readonly maxSeconds: number;
  readonly path?: string;
  /**
   * Headers of the requests each connection sends in turn (cycling), e.g. a different
   * X-Forwarded-For on each: a reverse proxy's upstream connection carrying many clients.
   */
  readonly cycle?: readonly Record<string, string>[];
}

/** An answer as the load saw it. */
export interface Answer {
  readonly source: string;
  readonly pid: number;
  readonly slot: number;
  readonly at: number;
}

export interface LoadResult {
  /** Requests answered. */
  readonly requests: number;
  /** autocannon's counts: connection errors and resets, timeouts, answers other than 2xx. */
  readonly errors: number;
  readonly timeouts: number;
  readonly non2xx: number;
  readonly answers: readonly Answer[];
  /** What autocannon reported, for failure messages. */
  readonly summary: string;
}

export interface Load {
  /** Ends the run; resolves with its counts. */
  stop(): Promise<LoadResult>;
  /** Answers so far. */
  readonly answers: readonly Answer[];
}

interface Client {
  _connect(): void;
  on(event: 'headers', listener: (info: { headers: string[] }) => void): void;
}

/** Starts the load; it runs until `stop()` or `maxSeconds`. */
export function startLoad(options: LoadOptions): Load {
  const answers: Answer[] = [];
  let index = 0;
  const setupClient = (client: Client) => {
    const source = options.sources[index++ % options.sources.length] as string;
    bindSource(client, source);
    client.on('headers', ({ headers }) => {
      const pid = Number(header(headers, 'x-worker-pid'));
      const slot = Number(header(headers, 'x-worker-slot'));
      answers.push({ source, pid, slot, at: Date.now() });
    });
  };
  let finished: ((r: LoadResult) => void) | undefined;
  const done = new Promise<LoadResult>((resolve) => {
    finished = resolve;
  });
  const instance = autocannon(
    {
      url: `http://127.0.0.1:${options.port}${options.path ?? '/'}`,
      connections: options.sources.length,
      duration: options.maxSeconds,
      headers: options.keepAlive ? {} : { connection: 'close' },
      ...(options.cycle ? { requests: options.cycle.map((headers) => ({ headers })) } : {}),
      setupClient,
      timeout: 10,
    },
    (err: Error | null, r: Record<string, unknown>) => {
      const num = (k: string) => Number(r?.[k] ?? 0);
      finished?.({
        requests: num('2xx') + num('non2xx'),
        errors: num('errors'),
        timeouts: num('timeouts'),
        non2xx: num('non2xx'),
        answers,
        summary: err
          ? String(err)
          : JSON.stringify({
              '2xx': r['2xx'],
              non2xx: r.non2xx,
              errors: r.errors,
              timeouts: r.timeouts,
              resets: r.resets,
              statusCodeStats: r.statusCodeStats,
            }),
      });
    },
  );
  return {
    answers,
    stop() {
      instance.stop();
      return done;
    },
  };
}

/** Makes every (re)connection of an autocannon client come from `source`. */
function bindSource(client: Client, source: string): void {
  const protoConnect = Object.getPrototypeOf(client)._connect as () => void;
  client._connect = function connectFromSource(this: Client) {
    const original = net.connect;
    // autocannon connects with net.connect(port, host) inside this call, and only there.
    (net as { connect: unknown }).connect = (port: number, host: string) =>
      original({ port, host, localAddress: source });
    try {
      protoConnect.call(this);
    } finally {
      (net as { connect: unknown }).connect = original;
    }
  };
}

function header(raw: readonly string[], name: string): string | undefined {
  for (let i = 0; i + 1 < raw.length; i += 2) {
    if ((raw[i] as string).toLowerCase() === name) return raw[i + 1];
  }
  return undefined;
}
