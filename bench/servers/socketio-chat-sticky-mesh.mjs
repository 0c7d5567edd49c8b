// Socket.io chat (examples/socketio/chat.js) on sticky-mesh, wired as examples/socketio/server.js
// does without REDIS_URL: IP mode, sessionAffinity, serialization 'advanced', ReplicatedStore,
// @socket.io/cluster-adapter in the workers and setupPrimary() in the primary. READY once the
// port is bound and every worker is up. Env PORT, WORKERS.
import { createAdapter, setupPrimary } from '@socket.io/cluster-adapter';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { createChatServer } from '../../examples/socketio/chat.js';
import { env, ready } from './handler.mjs';

const { port, host, workers } = env();
const app = sticky({ num: workers, sessionAffinity: true, serialization: 'advanced' }, () =>
  createChatServer({
    slot: app.slot,
    store: new ReplicatedStore(),
    genid: app.genid,
    generateId: app.generateId,
    adapter: createAdapter(),
  }),
);
if (app.role === 'primary') {
  setupPrimary();
  app.listen(port, host, () => ready(`workers=${workers}`));
} else {
  app.listen(port, host);
}
