// Redis-transport bench server (bench/redis.mjs): the express + express-session app of
// ./session-app.mjs with connect-redis 9 (`new RedisStore({ client })`, default options: prefix
// "sess:", TTL from the cookie, touch = EXPIRE) over a node-redis client (`createClient`, one
// connection per worker, connected before the worker serves), under the same balancer as
// ./redis-sticky-mesh.mjs: sticky({ num: WORKERS, proxy: true, seed: SESSIONS_SEED }).
// Unlike ./sessions-connect-redis.mjs it starts no redis-server of its own: it uses the bench's
// (REDIS_PORT, required), the one the Redis transport is measured on.
import './profile-hook.mjs';
import http from 'node:http';
import { RedisStore } from 'connect-redis';
import { createClient } from 'redis';
import { sticky } from 'sticky-mesh';
import { env, ready } from './handler.mjs';
import { sessionApp } from './session-app.mjs';

const { port, host, workers } = env();
const seed = Number(process.env.SESSIONS_SEED);
if (!Number.isInteger(seed)) throw new Error('SESSIONS_SEED env is required');
const redisPort = Number(process.env.REDIS_PORT);
if (!Number.isInteger(redisPort) || redisPort <= 0) throw new Error('REDIS_PORT env is required');

const app = sticky({ num: workers, proxy: true, seed }, async () => {
  const client = createClient({ url: `redis://127.0.0.1:${redisPort}` });
  client.on('error', (err) => process.stderr.write(`redis client: ${err.message}\n`));
  await client.connect();
  return http.createServer(sessionApp(new RedisStore({ client })));
});

if (app.role === 'primary') {
  app.listen(port, host, () =>
    ready(`workers=${workers} proxy=true seed=${seed} store=connect-redis redisPort=${redisPort}`),
  );
} else {
  app.listen(port, host);
}
