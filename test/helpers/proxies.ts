/**
 * Real reverse proxies for system tests: nginx and HAProxy, each started in the foreground with
 * a configuration written to a temporary directory, listening on loopback only, and stopped (and
 * awaited) on teardown.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export interface RunningProxy {
  readonly port: number;
  readonly ports: number[];
  output(): string;
  stop(): Promise<void>;
}

export async function freePort(): Promise<number> {
  const probe = net.createServer();
  await new Promise<void>((resolve) => probe.listen(0, '127.0.0.1', resolve));
  const { port } = probe.address() as net.AddressInfo;
  await new Promise((resolve) => probe.close(resolve));
  return port;
}

async function waitForPort(port: number, child: ChildProcess, output: () => string): Promise<void> {
  const deadline = Date.now() + 10_000;
  while (Date.now() < deadline) {
    if (child.exitCode !== null) throw new Error(`proxy exited early:\n${output()}`);
    const ok = await new Promise<boolean>((resolve) => {
      const s = net.connect(port, '127.0.0.1', () => {
        s.destroy();
        resolve(true);
      });
      s.on('error', () => resolve(false));
    });
    if (ok) return;
    await new Promise((r) => setTimeout(r, 50));
  }
  throw new Error(`proxy did not listen on ${port}:\n${output()}`);
}

async function start(
  command: string,
  args: string[],
  ports: number[],
  dir: string,
): Promise<RunningProxy> {
  const child = spawn(command, args, { stdio: ['ignore', 'pipe', 'pipe'], detached: true });
  let out = '';
  child.stdout?.on('data', (c) => {
    out += c;
  });
  child.stderr?.on('data', (c) => {
    out += c;
  });
  const exited = new Promise<void>((resolve) => child.once('exit', () => resolve()));
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null && child.pid !== undefined) {
      try {
        process.kill(-child.pid, 'SIGKILL');
      } catch {}
      await exited;
    }
    await rm(dir, { recursive: true, force: true });
  };
  try {
    for (const port of ports) await waitForPort(port, child, () => out);
  } catch (err) {
    await stop();
    throw err;
  }
  return { port: ports[0] as number, ports, output: () => out, stop };
}

/**
 * The main context an unprivileged nginx in the foreground needs in `dir` (pid file, temporary
 * paths, no access log) around `http`, the text of its `http { }` block.
 */
function nginxConf(
  dir: string,
  http: string,
  { errorLog, workerConnections }: { errorLog: string; workerConnections: number },
): string {
  return `
user root;
worker_processes 1;
daemon off;
error_log ${errorLog} warn;
pid ${dir}/nginx.pid;
events { worker_connections ${workerConnections}; }
http {
  access_log off;
  client_body_temp_path ${dir}/body; proxy_temp_path ${dir}/proxy;
  fastcgi_temp_path ${dir}/fastcgi; uwsgi_temp_path ${dir}/uwsgi; scgi_temp_path ${dir}/scgi;
${http}
}
`;
}

/** nginx in front of `upstreamPort`, HTTP/1.1 with an upstream keep-alive pool. */
export async function startNginx(upstreamPort: number): Promise<RunningProxy> {
  const dir = await mkdtemp(join(tmpdir(), 'sticky-mesh-nginx-'));
  const port = await freePort();
  const conf = nginxConf(
    dir,
    `  upstream app { server 127.0.0.1:${upstreamPort}; keepalive 8; }
  server {
    listen 127.0.0.1:${port};
    location / {
      proxy_pass http://app;
      proxy_http_version 1.1;
      proxy_set_header Connection "";
      proxy_set_header X-Forwarded-For $proxy_add_x_forwarded_for;
    }
  }`,
    { errorLog: `${dir}/error.log`, workerConnections: 512 },
  );
  await writeFile(join(dir, 'nginx.conf'), conf);
  return start('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], [port], dir);
}

/**
 * nginx running a configuration of the caller's: `httpConfig(port)` returns what goes inside
 * `http { }` (upstreams, servers, maps), with a server that listens on 127.0.0.1:`port`, a free
 * loopback port; this adds the main context (nginxConf). Its error log goes to output().
 * Resolves once nginx accepts connections on `port`.
 */
export async function startNginxWith(httpConfig: (port: number) => string): Promise<RunningProxy> {
  const port = await freePort();
  const http = httpConfig(port); // before mkdtemp: when it throws, there is nothing to remove
  const dir = await mkdtemp(join(tmpdir(), 'sticky-mesh-nginx-'));
  const conf = nginxConf(dir, http, { errorLog: 'stderr', workerConnections: 1024 });
  await writeFile(join(dir, 'nginx.conf'), conf);
  return start('nginx', ['-p', dir, '-c', join(dir, 'nginx.conf')], [port], dir);
}

/** HAProxy in TCP mode in front of `upstreamPort`: one port with send-proxy, one with v2. */
export async function startHaproxy(upstreamPort: number): Promise<RunningProxy> {
  const dir = await mkdtemp(join(tmpdir(), 'sticky-mesh-haproxy-'));
  const v1 = await freePort();
  const v2 = await freePort();
  const conf = `
global
  maxconn 512
defaults
  mode tcp
  timeout connect 2s
  timeout client 10s
  timeout server 10s
listen v1
  bind 127.0.0.1:${v1}
  server app 127.0.0.1:${upstreamPort} send-proxy
listen v2
  bind 127.0.0.1:${v2}
  server app 127.0.0.1:${upstreamPort} send-proxy-v2
`;
  await writeFile(join(dir, 'haproxy.cfg'), conf);
  return start('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], [v1, v2], dir);
}

/** The installed HAProxy's version from `haproxy -v` (e.g. [2, 6]); undefined if unreadable. */
export function haproxyVersion(): [major: number, minor: number] | undefined {
  try {
    const text = execFileSync('haproxy', ['-v'], { encoding: 'utf8' });
    const m = /HAProxy version (\d+)\.(\d+)/.exec(text);
    return m ? [Number(m[1]), Number(m[2])] : undefined;
  } catch {
    return undefined;
  }
}

/** One listening port of a proxy and what it does there. */
export interface Listener {
  readonly name: string;
  readonly port: number;
}

/**
 * HAProxy in HTTP mode in front of `upstreamPort`, adding the RFC 7239 `Forwarded` element
 * `proto=http;for=<client address>` as its `option forwarded` does (HAProxy 2.7+): appended to
 * the client's last Forwarded line after ", " when HAProxy's validation accepts the client's
 * lines, on a line of its own otherwise.
 *
 * HAProxy 2.6 (Debian 12's) has no `option forwarded`; there `http-request` rules write each of
 * those two shapes, on a listener of its own: 'own line' always adds a line, 'appended' appends
 * to every line the client sent (the same as appending to the last one when the client sent one
 * line) or adds a line when it sent none. `forwarded` (2.7+) or both (2.6) are the listeners.
 */
export async function startHaproxyForwarded(
  upstreamPort: number,
): Promise<{ proxy: RunningProxy; listeners: Listener[] }> {
  const version = haproxyVersion();
  const native = version !== undefined && (version[0] > 2 || (version[0] === 2 && version[1] >= 7));
  const rules: Record<string, string[]> = native
    ? { 'option forwarded': ['option forwarded'] }
    : {
        'own line (what option forwarded does with an invalid header)': [
          'http-request add-header forwarded "proto=http;for=%[src]"',
        ],
        'appended (what option forwarded does with a valid header)': [
          'http-request replace-header forwarded ^(.*)$ "\\1, proto=http;for=%[src]"',
          'http-request add-header forwarded "proto=http;for=%[src]" unless { req.fhdr_cnt(forwarded) gt 0 }',
        ],
      };
  const dir = await mkdtemp(join(tmpdir(), 'sticky-mesh-haproxy-'));
  const listeners: Listener[] = [];
  for (const name of Object.keys(rules)) listeners.push({ name, port: await freePort() });
  const conf = [
    'global',
    '  maxconn 512',
    'defaults',
    '  mode http',
    '  timeout connect 2s',
    '  timeout client 10s',
    '  timeout server 10s',
    ...listeners.flatMap(({ name, port }, i) => [
      `listen forwarded${i}`,
      `  bind 127.0.0.1:${port}`,
      ...(rules[name] ?? []).map((rule) => `  ${rule}`),
      `  server app 127.0.0.1:${upstreamPort}`,
    ]),
    '',
  ].join('\n');
  await writeFile(join(dir, 'haproxy.cfg'), conf);
  const ports = listeners.map((l) => l.port);
  const proxy = await start('haproxy', ['-f', join(dir, 'haproxy.cfg'), '-db'], ports, dir);
  return { proxy, listeners };
}
