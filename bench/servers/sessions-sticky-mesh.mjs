// Session-store bench server (bench/sessions.mjs): the express + express-session app of
// ./session-app.mjs with sticky-mesh's ReplicatedStore (default options), under
//   sticky({ num: WORKERS, proxy: true, seed: SESSIONS_SEED }).listen(PORT, '127.0.0.1')
// Every worker keeps a full replica; the hub in the primary forwards each write to the other
// workers. Needs dist/ (npm run build); imported by the package's own name.
//
// Bench-only instrumentation, GET /applied (drains the list): this worker's times of applying
// other workers' writes (./session-app.mjs recordingServer).
import './profile-hook.mjs';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { env, ready } from './handler.mjs';
import { recordingServer } from './session-app.mjs';

const { port, host, workers } = env();
const seed = Number(process.env.SESSIONS_SEED);
if (!Number.isInteger(seed)) throw new Error('SESSIONS_SEED env is required');

const app = sticky({ num: workers, proxy: true, seed }, () =>
  recordingServer(new ReplicatedStore()),
);

if (app.role === 'primary') {
  app.listen(port, host, () =>
    ready(`workers=${workers} proxy=true seed=${seed} store=ReplicatedStore`),
  );
} else {
  app.listen(port, host);
}
