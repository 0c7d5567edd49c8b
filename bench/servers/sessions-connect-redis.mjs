// Session-store bench server (bench/sessions.mjs): the express + express-session app of
// ./session-app.mjs with connect-redis 9 (`new RedisStore({ client })`, default options: prefix
// "sess:", TTL from the cookie, touch = EXPIRE) over a node-redis client (`createClient`, one
// connection per worker, connected before the worker serves), under the same balancer as the
// ReplicatedStore server: sticky({ num: WORKERS, proxy: true, seed: SESSIONS_SEED }).
//
// The primary first starts its own redis-server on a free loopback port,
//   redis-server --port P --bind 127.0.0.1 --save '' --appendonly no
// as its child (same process group: the bench kills it with the server and counts its CPU as
// the server's), waits for "Ready to accept connections", passes P to the workers in REDIS_PORT
// and only then binds PORT and forks them. Needs `redis-server` on PATH (Debian: apt-get
// install redis-server).
import './profile-hook.mjs';
import http from 'node:http';
import { RedisStore } from 'connect-redis';
import { createClient } from 'redis';
import { sticky } from 'sticky-mesh';
import { env, ready } from './handler.mjs';
import { startRedis } from './redis.mjs';
import { sessionApp } from './session-app.mjs';

const { port, host, workers } = env();
const seed = Number(process.env.SESSIONS_SEED);
if (!Number.isInteger(seed)) throw new Error('SESSIONS_SEED env is required');

const app = sticky({ num: workers, proxy: true, seed }, async () => {
  const client = createClient({ url: `redis://127.0.0.1:${process.env.REDIS_PORT}` });
  client.on('error', (err) => process.stderr.write(`redis client: ${err.message}\n`));
  await client.connect();
  return http.createServer(sessionApp(new RedisStore({ client })));
});

if (app.role === 'primary') {
  const redis = await startRedis();
  process.env.REDIS_PORT = String(redis.port);
  app.listen(port, host, () =>
    ready(
      `workers=${workers} proxy=true seed=${seed} store=connect-redis redis=${redis.version} redisPort=${redis.port} redisPid=${redis.pid}`,
    ),
  );
} else {
  app.listen(port, host);
}
