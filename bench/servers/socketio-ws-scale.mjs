// Socket.io over WebSocket only, behind sticky-mesh in IP mode (no sessionAffinity, no store):
// the server of bench/websockets-scale.mjs. Each worker's factory builds an http server (the
// trivial handler for plain requests) with a Socket.io server on it, transports ['websocket'],
// pingInterval / pingTimeout from env PING_INTERVAL / PING_TIMEOUT (ms). Env PORT, WORKERS.
// READY once the port is bound and every worker is up.
//
// Bench-only report: on SIGUSR2 every process of the cluster (the bench signals the whole
// process group) writes one line `MEM <json>` to stdout: its pid, role and slot;
// process.memoryUsage() and its V8 heap spaces, then memoryUsage() again after a full garbage
// collection (gc() exposed at run time through v8.setFlagsFromString, so the command line stays
// plain); in workers also the Socket.io clients it holds now and the disconnects it has seen (by
// reason). Env MEM_GC=0 leaves the collection out (a control: the one at baseline is not what
// makes the primary's young generation grow later).
import http from 'node:http';
import v8 from 'node:v8';
import vm from 'node:vm';
import { Server } from 'socket.io';
import { sticky } from 'sticky-mesh';
import { env, handler, ready } from './handler.mjs';

v8.setFlagsFromString('--expose-gc');
const gc = vm.runInNewContext('gc');

const { port, host, workers } = env();
const pingInterval = Number(process.env.PING_INTERVAL || 25_000);
const pingTimeout = Number(process.env.PING_TIMEOUT || 20_000);

let io;
let connections = 0;
const disconnects = {};

const app = sticky({ num: workers }, () => {
  const server = http.createServer(handler);
  io = new Server(server, { transports: ['websocket'], pingInterval, pingTimeout });
  io.on('connection', (socket) => {
    connections++;
    socket.on('disconnect', (reason) => {
      disconnects[reason] = (disconnects[reason] ?? 0) + 1;
    });
  });
  return server;
});

const memory = () => {
  const m = process.memoryUsage();
  return { rss: m.rss, heapUsed: m.heapUsed, heapTotal: m.heapTotal, external: m.external };
};

// Each V8 heap space with memory in it: [size, used, physical] in bytes.
const spaces = () =>
  Object.fromEntries(
    v8
      .getHeapSpaceStatistics()
      .filter((x) => x.space_size > 0)
      .map((x) => [x.space_name, [x.space_size, x.space_used_size, x.physical_space_size]]),
  );

process.on('SIGUSR2', () => {
  const before = memory();
  const spacesBefore = spaces();
  if (process.env.MEM_GC !== '0') gc();
  const after = memory();
  const line = {
    pid: process.pid,
    role: app.role,
    slot: app.role === 'worker' ? app.slot : null,
    before,
    after,
    spaces: spacesBefore,
    ...(io ? { clients: io.engine.clientsCount, connections, disconnects } : {}),
  };
  process.stdout.write(`MEM ${JSON.stringify(line)}\n`);
});

if (app.role === 'primary') {
  app.listen(port, host, () =>
    ready(`workers=${workers} pingInterval=${pingInterval} pingTimeout=${pingTimeout}`),
  );
} else {
  app.listen(port, host);
}
