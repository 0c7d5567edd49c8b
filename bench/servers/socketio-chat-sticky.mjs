// The same Socket.io chat (examples/socketio/chat.js) on @socket.io/sticky 2.0.1 +
// @socket.io/cluster-adapter, set up as their READMEs say: the primary creates an http server,
// calls setupMaster(httpServer, { loadBalancingMethod: 'least-connection' }) and setupPrimary(),
// forks workers with serialization 'advanced' and listens; each worker builds the chat server
// (never listening itself) with the cluster adapter and calls setupWorker(io). Ids: engine.io's
// default generateId and express-session's default genid (no sticky-mesh id makers).
// Session store: express-session's MemoryStore (ReplicatedStore needs a sticky-mesh cluster).
// The chat's Socket.io handshake does not create sessions (saveUninitialized: false and the
// bench's clients send no cookie), so the store is only read, never written, in this bench.
// Bench-only addition: workers report 'bench:ready' once setupWorker has run. Env PORT, WORKERS.
import cluster from 'node:cluster';
import http from 'node:http';
import { createRequire } from 'node:module';
import { createAdapter, setupPrimary } from '@socket.io/cluster-adapter';
import session from 'express-session';
import { createChatServer } from '../../examples/socketio/chat.js';
import { env, readyWhenWorkersUp } from './handler.mjs';

const require = createRequire(import.meta.url);
const { setupMaster, setupWorker } = require('@socket.io/sticky');
const { port, host, workers } = env();

if (cluster.isPrimary) {
  const httpServer = http.createServer();
  setupMaster(httpServer, { loadBalancingMethod: 'least-connection' });
  setupPrimary();
  httpServer.listen(port, host, readyWhenWorkersUp(workers));
  cluster.setupPrimary({ serialization: 'advanced' });
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  // createChatServer does not return its Socket.io server; the adapter factory is called with
  // each namespace (nsp.server is the Server) as soon as io.adapter() is set, so a wrapper
  // around the cluster adapter's factory hands it to setupWorker.
  const clusterAdapter = createAdapter();
  let io = null;
  function adapter(nsp) {
    io = nsp.server;
    return clusterAdapter(nsp);
  }
  createChatServer({
    slot: cluster.worker.id - 1,
    store: new session.MemoryStore(),
    adapter,
  });
  if (!io) throw new Error('no Socket.io server seen by the adapter factory');
  setupWorker(io);
  process.send('bench:ready');
}
