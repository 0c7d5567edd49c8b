// Session-store bench server (bench/sessions.mjs): the express + express-session app of
// ./session-app.mjs with sticky-mesh's ReplicatedStore (default options), under
//   sticky({ num: WORKERS, proxy: true, seed: SESSIONS_SEED }).listen(PORT, '127.0.0.1')
// Every worker keeps a full replica; the hub in the primary forwards each write to the other
// workers. Needs dist/ (npm run build); imported by the package's own name.
//
// Bench-only instrumentation, GET /applied (drains the list): this worker's times of applying
// other workers' writes. A 'message' listener added after the store was created (so after the
// store's own IPC listener, which applies the change synchronously: EventEmitter calls
// listeners in the order they were added) takes process.hrtime.bigint() (CLOCK_MONOTONIC, one
// clock for every process of the machine, so comparable with the bench's own readings) for each
// replicated `set` whose session JSON carries a write id `"w":ID`, and records [ID, ns].
// It reads only the change the worker was sent; the store itself is not touched.
import http from 'node:http';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { env, ready } from './handler.mjs';
import { sessionApp } from './session-app.mjs';

const { port, host, workers } = env();
const seed = Number(process.env.SESSIONS_SEED);
if (!Number.isInteger(seed)) throw new Error('SESSIONS_SEED env is required');
const MAX_RECORDS = 2_000_000;

const app = sticky({ num: workers, proxy: true, seed }, () => {
  const store = new ReplicatedStore();
  let applied = [];
  process.on('message', (msg) => {
    const change = msg?.change;
    if (change?.op !== 'set' || typeof change.data !== 'string') return;
    const t = process.hrtime.bigint();
    const m = /"w":(\d+)/.exec(change.data);
    if (m && applied.length < MAX_RECORDS) applied.push(`${m[1]}:${t}`);
  });
  const web = sessionApp(store, (w) => {
    w.get('/applied', (_req, res) => {
      const out = applied;
      applied = [];
      res.type('text/plain').send(out.join('\n'));
    });
  });
  return http.createServer(web);
});

if (app.role === 'primary') {
  app.listen(port, host, () =>
    ready(`workers=${workers} proxy=true seed=${seed} store=ReplicatedStore`),
  );
} else {
  app.listen(port, host);
}
