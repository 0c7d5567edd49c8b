// Session-store bench server (bench/sessions.mjs): the express + express-session app of
// ./session-app.mjs with express-session's own MemoryStore (`new session.MemoryStore()`, one per
// worker, nothing shared or replicated), under the same balancer as the other two servers:
//   sticky({ num: WORKERS, proxy: true, seed: SESSIONS_SEED }).listen(PORT, '127.0.0.1')
// The unreplicated limit: a worker serves only the sessions made on it (the bench sends every
// request of a session to the worker that made it), so what ReplicatedStore adds over it is the
// cost of replication. Its replicas are not meant to agree: the bench sums the workers' session
// counters instead of comparing digests.
import './profile-hook.mjs';
import http from 'node:http';
import session from 'express-session';
import { sticky } from 'sticky-mesh';
import { env, ready } from './handler.mjs';
import { sessionApp } from './session-app.mjs';

const { port, host, workers } = env();
const seed = Number(process.env.SESSIONS_SEED);
if (!Number.isInteger(seed)) throw new Error('SESSIONS_SEED env is required');

const app = sticky({ num: workers, proxy: true, seed }, () =>
  http.createServer(sessionApp(new session.MemoryStore())),
);

if (app.role === 'primary') {
  app.listen(port, host, () =>
    ready(`workers=${workers} proxy=true seed=${seed} store=MemoryStore`),
  );
} else {
  app.listen(port, host);
}
