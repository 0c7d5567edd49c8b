// (d) @socket.io/sticky 2.0.1 configured as its README says: the primary creates an http
// server, calls setupMaster(httpServer, { loadBalancingMethod: 'least-connection' }) and listens;
// workers are forked with serialization 'advanced'; each worker creates an http server with
// the trivial handler, attaches a socket.io Server to it and calls setupWorker(io). The worker's
// http server never listens: the primary hands it connections. Plain (non-/socket.io/) requests
// reach the trivial handler. (@socket.io/cluster-adapter from the README is not used: it relays
// broadcasts only and plays no part in routing HTTP requests.)
// Bench-only addition: workers report 'bench:ready' once setupWorker has run.
import cluster from 'node:cluster';
import http from 'node:http';
import { createRequire } from 'node:module';
import { Server } from 'socket.io';
import { env, handler, readyWhenWorkersUp } from './handler.mjs';

const require = createRequire(import.meta.url);
const { setupMaster, setupWorker } = require('@socket.io/sticky');
const { port, host, workers } = env();

if (cluster.isPrimary) {
  const httpServer = http.createServer();
  setupMaster(httpServer, { loadBalancingMethod: 'least-connection' });
  httpServer.listen(port, host, readyWhenWorkersUp(workers));
  cluster.setupPrimary({ serialization: 'advanced' });
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  const httpServer = http.createServer(handler);
  const io = new Server(httpServer);
  setupWorker(io);
  process.send('bench:ready');
}
