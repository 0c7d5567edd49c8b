// A chat on sticky-mesh: Express + express-session with ReplicatedStore + Socket.io with the
// cluster adapter, on every core. What `npm start` runs; examples/socketio/README.md explains it.
//
//   PORT            port to listen on (default 3000)
//   WORKERS         worker processes (default: one per CPU)
//   PROXY=1         behind a reverse proxy: route by X-Forwarded-For (sticky's `proxy` option)
//   TRUSTED_PROXIES with PROXY=1: how many proxies of yours append to X-Forwarded-For (default 1:
//                   nginx alone; 2 for a CDN in front of nginx). The key is the address the
//                   outermost of them wrote, so what a client writes there cannot pick its worker
//   SESSION_SECRET  signs the session cookie (same on every machine; a fixed demo value if unset)
//   REDIS_URL       run across machines: Socket.io broadcasts go through @socket.io/redis-adapter
//                   and the sessions replicate through Redis (sticky's `redis` option). Without
//                   it everything stays on this machine and no Redis is needed.
//   PING_INTERVAL   Socket.io ping interval in ms (default 25000; the tests shorten it)
//   PING_TIMEOUT    Socket.io ping timeout in ms (default 20000)
//   ENGINE_ERRORS=1 print engine.io's connection errors as JSON lines (the tests count them)
//   METRICS_PORT    serve Prometheus metrics of the whole machine on this port (sticky's
//                   `metrics` option; 0 takes a free one); needs prom-client. Unset: none
//   METRICS_HOST    address of that endpoint (default 127.0.0.1: not reachable from elsewhere)
import os from 'node:os';
import { createAdapter as clusterAdapter, setupPrimary } from '@socket.io/cluster-adapter';
import { createAdapter as createRedisAdapter } from '@socket.io/redis-adapter';
import { Redis } from 'ioredis';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { createChatServer } from './chat.js';

const env = process.env;
const port = Number(env.PORT ?? 3000);
const workers = Number(env.WORKERS ?? os.availableParallelism());
const redisUrl = env.REDIS_URL;

const app = sticky(
  {
    num: workers,
    proxy: env.PROXY === '1',
    // Behind nginx (examples/socketio/README.md): the key is the address nginx appended, never
    // one the client wrote into its own X-Forwarded-For.
    trustedProxies: Number(env.TRUSTED_PROXIES ?? 1),
    // Session ids and Socket.io ids name the worker that made them: every request of a Socket.io
    // session (polling, upgrade) reaches that worker, with no table and no race.
    sessionAffinity: true,
    // The cluster adapter relays binary payloads between workers.
    serialization: 'advanced',
    ...(redisUrl ? { redis: redisUrl } : {}),
    ...(env.METRICS_PORT
      ? { metrics: { port: Number(env.METRICS_PORT), host: env.METRICS_HOST ?? '127.0.0.1' } }
      : {}),
  },
  (worker) =>
    createChatServer({
      slot: worker.slot,
      store: new ReplicatedStore(),
      genid: worker.genid,
      generateId: worker.generateId,
      adapter: redisUrl ? redisAdapter(redisUrl) : clusterAdapter(),
    }),
);

/**
 * Broadcasts reach the sockets of every worker of every machine through Redis pub/sub.
 * @param {string} url
 */
function redisAdapter(url) {
  const pub = new Redis(url);
  return createRedisAdapter(pub, pub.duplicate());
}

if (app.role === 'primary') {
  // The cluster adapter's relay between workers lives in the primary.
  if (!redisUrl) setupPrimary();
  app.on('workerUp', ({ slot, pid }) => console.log(`worker ${slot} up (pid ${pid})`));
  app.on('metricsListening', ({ address, port }) =>
    console.log(
      `metrics on http://${address.includes(':') ? `[${address}]` : address}:${port}/metrics`,
    ),
  );
  app.on('workerExit', ({ slot, pid, code, signal, planned }) => {
    if (!planned) console.log(`worker ${slot} (pid ${pid}) exited: ${signal ?? code}; respawning`);
  });
  // `kill -HUP <primary pid>` (or app.reload()) replaces the workers with the code on disk now.
  app.on('reload', (step) => {
    if (step.step === 'start') console.log('reload: replacing the workers one by one');
    if (step.step === 'switch') {
      console.log(
        `reload: worker ${step.slot} is pid ${step.pid} now (pid ${step.previousPid} drains)`,
      );
    }
    if (step.step === 'failed') console.log(`reload failed at worker ${step.slot}: ${step.reason}`);
    if (step.step === 'done') console.log('reload: done');
  });
}

app.listen(port);
const address = await app.ready();
if (app.role === 'primary') {
  console.log(`sticky-mesh chat on http://localhost:${address.port} with ${workers} workers`);
}
