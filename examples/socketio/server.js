// A minimal Socket.io app on a sticky-mesh cluster: every browser is pinned to one worker by its
// IP address, so Socket.io's long-polling requests and the WebSocket upgrade all reach the
// process that holds its session.
//
//   PORT       port to listen on (default 3000)
//   WORKERS    worker processes (default: one per CPU)
//   REDIS_URL  run across machines: Socket.io broadcasts go through @socket.io/redis-adapter,
//              and the machine's sessions replicate through Redis (sticky's `redis` option).
//              Without it everything stays on this machine and no Redis is needed.
import { readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { Server } from 'socket.io';
import { sticky } from 'sticky-mesh';

const port = Number(process.env.PORT ?? 3000);
const workers = Number(process.env.WORKERS ?? os.availableParallelism());
const page = readFileSync(new URL('./index.html', import.meta.url));
const redisUrl = process.env.REDIS_URL;

const app = sticky({ num: workers, ...(redisUrl ? { redis: redisUrl } : {}) }, () => {
  const server = http.createServer((req, res) => {
    if (req.url === '/' || req.url === '/index.html') {
      res.writeHead(200, { 'content-type': 'text/html; charset=utf-8' });
      res.end(page);
    } else if (req.url === '/whoami') {
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(JSON.stringify({ pid: process.pid, slot: app.slot }));
    } else {
      res.writeHead(404).end();
    }
  });
  const io = new Server(server);
  if (redisUrl) useRedisAdapter(io);
  io.on('connection', (socket) => {
    socket.emit('hello', { pid: process.pid, slot: app.slot });
    socket.on('ping', (text, ack) => {
      if (typeof ack === 'function') ack({ echo: String(text).slice(0, 200), pid: process.pid });
    });
  });
  return server;
});

/** Broadcasts reach the sockets of every worker of every machine through Redis pub/sub. */
async function useRedisAdapter(io) {
  const [{ createAdapter }, { Redis }] = await Promise.all([
    import('@socket.io/redis-adapter'),
    import('ioredis'),
  ]);
  const pub = new Redis(redisUrl);
  io.adapter(createAdapter(pub, pub.duplicate()));
}

if (app.role === 'primary') {
  app.on('workerUp', ({ slot, pid }) => console.log(`worker ${slot} up (pid ${pid})`));
  app.on('workerExit', ({ slot, pid, code, signal, planned }) => {
    if (!planned) console.log(`worker ${slot} (pid ${pid}) exited: ${signal ?? code}; respawning`);
  });
}

app.listen(port, () => {
  if (app.role === 'primary') {
    console.log(
      `sticky-mesh example on http://localhost:${app.address().port} with ${workers} workers`,
    );
  }
});
