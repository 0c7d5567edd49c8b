// Redis-transport bench server (bench/redis.mjs): the express + express-session app of
// ./session-app.mjs with sticky-mesh's ReplicatedStore (default options) in a cluster that
// replicates through Redis:
//   sticky({ num: WORKERS, proxy: true, seed: SESSIONS_SEED,
//            redis: 'redis://127.0.0.1:REDIS_PORT' }).listen(PORT, '127.0.0.1')
// The primary holds the machine's Redis connections (a command connection for the Lua writes and
// a subscriber); the workers' stores are fed over IPC by the hub, as without Redis. Several of
// these servers on one redis-server (each its own PORT) are several machines of one sticky-mesh
// cluster (same default cluster name), and see each other's sessions. The redis-server is the
// bench's (REDIS_PORT, required). Needs dist/ (npm run build) and ioredis.
//
// Bench-only instrumentation:
// - GET /applied (drains the list): this worker's times of applying writes it was sent by its
//   hub (from another worker of this cluster, or from another cluster through Redis; see
//   ./session-app.mjs recordingServer).
// - SIGUSR2 to the primary: it prints `STATS <json>` (its stats().redis and stats().sessions,
//   the transport's and the hub's counters) on stdout.
import './profile-hook.mjs';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { env, ready } from './handler.mjs';
import { recordingServer } from './session-app.mjs';

const { port, host, workers } = env();
const seed = Number(process.env.SESSIONS_SEED);
if (!Number.isInteger(seed)) throw new Error('SESSIONS_SEED env is required');
const redisPort = Number(process.env.REDIS_PORT);
if (!Number.isInteger(redisPort) || redisPort <= 0) throw new Error('REDIS_PORT env is required');

const app = sticky(
  { num: workers, proxy: true, seed, redis: `redis://127.0.0.1:${redisPort}` },
  () => recordingServer(new ReplicatedStore()),
);

if (app.role === 'primary') {
  process.on('SIGUSR2', () => {
    const s = app.stats();
    process.stdout.write(`STATS ${JSON.stringify({ redis: s.redis, hub: s.sessions })}\n`);
  });
  app.on('error', (err) => {
    process.stderr.write(`sticky: ${err.message}\n`);
    process.exit(1);
  });
  app.listen(port, host, () =>
    ready(
      `workers=${workers} proxy=true seed=${seed} store=ReplicatedStore+redis redisPort=${redisPort}`,
    ),
  );
} else {
  app.listen(port, host);
}
