// Socket.io chat (examples/socketio/chat.js) on sticky-mesh, wired as examples/socketio/server.js
// does without REDIS_URL: IP mode, sessionAffinity, serialization 'advanced', ReplicatedStore,
// @socket.io/cluster-adapter in the workers and setupPrimary() in the primary. READY once the
// port is bound and every worker is up. Env PORT, WORKERS; STICKY_AFFINITY=0 turns
// sessionAffinity off (the primary then never reads request bytes: IP mode alone) and leaves out
// sticky-mesh's id makers (genid / generateId: express-session's and engine.io's own ids), the
// same server otherwise.
import { createAdapter, setupPrimary } from '@socket.io/cluster-adapter';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { createChatServer } from '../../examples/socketio/chat.js';
import { env, ready } from './handler.mjs';

const { port, host, workers } = env();
const affinity = process.env.STICKY_AFFINITY !== '0';
const app = sticky({ num: workers, sessionAffinity: affinity, serialization: 'advanced' }, () =>
  createChatServer({
    slot: app.slot,
    store: new ReplicatedStore(),
    ...(affinity ? { genid: app.genid, generateId: app.generateId } : {}),
    adapter: createAdapter(),
  }),
);
if (app.role === 'primary') {
  setupPrimary();
  app.listen(port, host, () => ready(`workers=${workers} sessionAffinity=${affinity}`));
} else {
  app.listen(port, host);
}
