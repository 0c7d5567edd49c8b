// The million-session bench server (bench/scale-sessions.mjs): a sticky-mesh cluster in IP mode
// (the default routing) whose workers each hold a ReplicatedStore (default options), with
// `multicast` or `redis` when asked:
//   sticky({ num: WORKERS, [multicast: { secret, ipv4 }] [redis: 'redis://127.0.0.1:P'] })
//     .listen(PORT, '127.0.0.1')
// Environment: PORT, WORKERS, CONTROL_DIR (required), MODE ('ipc' | 'multicast' | 'redis'),
// MCAST_SECRET and MCAST_IPV4 (multicast), REDIS_PORT (redis), SESSION_BYTES [1024],
// UNRESPONSIVE_TIMEOUT [sticky's default].
//
// Bench-only control, over unix sockets in CONTROL_DIR (a path, so the bench reaches processes in
// other network namespaces without any network): the primary listens on primary.sock, each
// worker on w<slot>.sock (a respawned worker takes its slot's path over). Routes (JSON):
//   GET  /mem                        two forced GCs (node --expose-gc), then this process's
//                                    memoryUsage(), pid, and for a worker its store's session
//                                    count
//   GET  /count                      a worker's store's session count (the count its table
//                                    keeps as it applies changes: O(1), no walk)
//   POST /fill?count=N&inflight=K    a worker writes N new sessions through its store
//                                    (store.set, K in flight, each awaited): { writes, errors,
//                                    jsonBytes, ms }
//   GET  /stats                      the primary's app.stats()
//   GET  /eld                        the primary's event-loop delay (perf_hooks, 10 ms
//                                    resolution) since the last call: { p50, p99, max } in ms
// With PROFILE_DIR set (profiling runs, not the measured ones): POST /profile?ms=T records a CPU
// profile of this process for T ms (node:inspector) into PROFILE_DIR/<role>-<pid>.cpuprofile, and
// PROFILE_BOOT_MS=T does the same from the process's start.
// The cluster's own port answers every request with a 2-byte body (the routing probe's target).
// stdout: `LISTENING <hrtime ns>` when the primary has bound its port (after the transport's
// start), `READY ...` once every worker is ready.
import { randomBytes } from 'node:crypto';
import { unlinkSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import { Session } from 'node:inspector';
import path from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { env, handler, ready } from './handler.mjs';

const { port, host, workers } = env();
const CONTROL_DIR = process.env.CONTROL_DIR;
if (!CONTROL_DIR) throw new Error('CONTROL_DIR env is required');
const MODE = process.env.MODE || 'ipc';
const SESSION_BYTES = Number(process.env.SESSION_BYTES || 1024);
const COOKIE_MAX_AGE = 3_600_000;

function transportOptions() {
  if (MODE === 'multicast') {
    const secret = process.env.MCAST_SECRET;
    const ipv4 = process.env.MCAST_IPV4;
    if (!secret || !ipv4) throw new Error('MCAST_SECRET and MCAST_IPV4 env are required');
    return { multicast: { secret, ipv4 } };
  }
  if (MODE === 'redis') {
    const redisPort = Number(process.env.REDIS_PORT);
    if (!Number.isInteger(redisPort)) throw new Error('REDIS_PORT env is required');
    return { redis: `redis://127.0.0.1:${redisPort}` };
  }
  return {};
}

function fullGc() {
  globalThis.gc?.();
  globalThis.gc?.();
}

function json(res, body) {
  const text = JSON.stringify(body);
  res.writeHead(200, { 'content-type': 'application/json', 'content-length': text.length });
  res.end(text);
}

const PROFILE_DIR = process.env.PROFILE_DIR;
function profile(ms, role) {
  const session = new Session();
  session.connect();
  const post = (m, p) =>
    new Promise((resolve, reject) =>
      session.post(m, p, (err, r) => (err ? reject(err) : resolve(r))),
    );
  return (async () => {
    await post('Profiler.enable');
    await post('Profiler.setSamplingInterval', { interval: 500 });
    await post('Profiler.start');
    await new Promise((r) => setTimeout(r, ms));
    const { profile: prof } = await post('Profiler.stop');
    const file = path.join(PROFILE_DIR, `${role}-${process.pid}-${Date.now()}.cpuprofile`);
    writeFileSync(file, JSON.stringify(prof));
    session.disconnect();
    return { file };
  })();
}
if (PROFILE_DIR && process.env.PROFILE_BOOT_MS) {
  const role =
    process.env.STICKY_MESH_SLOT === undefined ? 'primary' : `w${process.env.STICKY_MESH_SLOT}`;
  void profile(Number(process.env.PROFILE_BOOT_MS), `boot-${role}`);
}

function control(file, routes) {
  if (PROFILE_DIR)
    routes['/profile'] = (q) => profile(Number(q.get('ms')), file.replace('.sock', ''));
  const sock = path.join(CONTROL_DIR, file);
  try {
    unlinkSync(sock);
  } catch {}
  const server = http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://control');
    const route = routes[url.pathname];
    if (!route) {
      res.writeHead(404).end();
      return;
    }
    try {
      json(res, await route(url.searchParams));
    } catch (err) {
      res.writeHead(500).end(String(err?.stack ?? err));
    }
  });
  // exclusive: a worker binds the path itself (not through the cluster primary).
  server.listen({ path: sock, exclusive: true });
  return server;
}

// A session as express-session saves it: its cookie, a user, and filler up to SESSION_BYTES of
// JSON (random base64url text, as a real profile would not compress either).
const FILLER = randomBytes(48 * 1024).toString('base64url');
function newSession(i) {
  const base = {
    cookie: {
      originalMaxAge: COOKIE_MAX_AGE,
      expires: new Date(Date.now() + COOKIE_MAX_AGE),
      httpOnly: true,
      path: '/',
    },
    user: `user-${i}`,
    n: i,
    profile: '',
  };
  const room = Math.max(0, SESSION_BYTES - JSON.stringify(base).length);
  const at = (i * 7919) % (FILLER.length - room);
  base.profile = FILLER.slice(at, at + room);
  return base;
}

// UNRESPONSIVE_TIMEOUT (ms): sticky's unresponsiveTimeout, when the bench sets it.
const unresponsive = process.env.UNRESPONSIVE_TIMEOUT
  ? { unresponsiveTimeout: Number(process.env.UNRESPONSIVE_TIMEOUT) }
  : {};

const app = sticky({ num: workers, ...unresponsive, ...transportOptions() }, () => {
  const slot = Number(process.env.STICKY_MESH_SLOT);
  const store = new ReplicatedStore();
  const count = () => store.table?.sessions ?? Number.NaN;
  control(`w${slot}.sock`, {
    '/count': () => ({ slot, pid: process.pid, count: count() }),
    '/mem': () => {
      fullGc();
      return { slot, pid: process.pid, count: count(), mem: process.memoryUsage() };
    },
    '/fill': async (q) => {
      const total = Number(q.get('count'));
      const inflight = Number(q.get('inflight') || 64);
      const started = process.hrtime.bigint();
      let next = 0;
      let writes = 0;
      let errors = 0;
      let jsonBytes = 0;
      const loop = async () => {
        while (next < total) {
          const i = next++;
          const sess = newSession(i);
          jsonBytes += JSON.stringify(sess).length;
          try {
            await store.set(randomBytes(24).toString('base64url'), sess);
            writes++;
          } catch {
            errors++;
          }
        }
      };
      await Promise.all(Array.from({ length: inflight }, loop));
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      return { slot, writes, errors, jsonBytes, ms };
    },
  });
  return http.createServer(handler);
});

if (app.role === 'primary') {
  app.on('error', (err) => {
    process.stderr.write(`sticky: ${err.message}\n`);
    process.exit(1);
  });
  app.on('listening', () => process.stdout.write(`LISTENING ${process.hrtime.bigint()}\n`));
  const eld = monitorEventLoopDelay({ resolution: 10 });
  eld.enable();
  control('primary.sock', {
    '/eld': () => {
      const r = {
        p50: eld.percentile(50) / 1e6,
        p99: eld.percentile(99) / 1e6,
        max: eld.max / 1e6,
      };
      eld.reset();
      return r;
    },
    '/mem': () => {
      fullGc();
      return { pid: process.pid, mem: process.memoryUsage() };
    },
    '/stats': () => app.stats(),
  });
  app.listen(port, host, () => ready(`workers=${workers} mode=${MODE}`));
} else {
  app.listen(port, host);
}
