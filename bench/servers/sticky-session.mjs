// (c) sticky-session 1.1.2 configured as its README says: the same server object in every
// process, `sticky.listen(server, port, { workers })`; false in the master, true in workers.
// Its master listens on all interfaces (the README form takes no host); the bench connects to
// 127.0.0.1. Bench-only addition: each worker tells the master it has installed its
// 'message' listener (handles sent before that are lost), and the master prints READY once the
// port is bound and every worker said so.
import http from 'node:http';
import { createRequire } from 'node:module';
import { env, handler, readyWhenWorkersUp } from './handler.mjs';

const require = createRequire(import.meta.url);
const sticky = require('sticky-session');
const { port, workers } = env();

const server = http.createServer(handler);

if (!sticky.listen(server, port, { workers })) {
  server.once('listening', readyWhenWorkersUp(workers));
} else {
  process.send('bench:ready');
}
