// A chat on sticky-mesh: Express + express-session with ReplicatedStore + Socket.io with the
// cluster adapter, on every core. What `npm start` runs; examples/socketio/README.md explains it.
//
//   PORT            port to listen on (default 3000)
//   WORKERS         worker processes (default: one per CPU)
//   PROXY=1         behind a reverse proxy: route by X-Forwarded-For (sticky's `proxy` option)
//   SESSION_SECRET  signs the session cookie (same on every machine; a fixed demo value if unset)
//   REDIS_URL       run across machines: Socket.io broadcasts go through @socket.io/redis-adapter
//                   and the sessions replicate through Redis (sticky's `redis` option). Without
//                   it everything stays on this machine and no Redis is needed.
//   PING_INTERVAL   Socket.io ping interval in ms (default 25000; the tests shorten it)
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import os from 'node:os';
import { createAdapter as clusterAdapter, setupPrimary } from '@socket.io/cluster-adapter';
import express from 'express';
import session from 'express-session';
import { Server } from 'socket.io';
import { ReplicatedStore, sticky } from 'sticky-mesh';

const env = process.env;
const port = Number(env.PORT ?? 3000);
const workers = Number(env.WORKERS ?? os.availableParallelism());
const redisUrl = env.REDIS_URL;
const page = readFileSync(new URL('./index.html', import.meta.url), 'utf8');

const app = sticky(
  {
    num: workers,
    proxy: env.PROXY === '1',
    // Session ids and Socket.io ids name the worker that made them: every request of a Socket.io
    // session (polling, upgrade) reaches that worker, with no table and no race.
    sessionAffinity: true,
    // The cluster adapter relays binary payloads between workers.
    serialization: 'advanced',
    ...(redisUrl ? { redis: redisUrl } : {}),
  },
  () => {
    const web = express();
    const sessions = session({
      store: new ReplicatedStore(),
      secret: env.SESSION_SECRET ?? 'sticky-mesh demo secret: set SESSION_SECRET',
      resave: false,
      saveUninitialized: false,
      genid: app.genid,
      cookie: { sameSite: 'lax', maxAge: 24 * 3600 * 1000 },
    });
    web.use(sessions);
    web.use(express.json({ limit: '4kb' }));
    web.get('/', (req, res) => {
      res.type('html').send(
        page
          .replace('{{PAGE_SLOT}}', String(app.slot))
          .replace('{{PAGE_PID}}', String(process.pid))
          .replace('{{NAME}}', escapeHtml(req.session.name ?? '')),
      );
    });
    web.get('/whoami', (req, res) => {
      res.json({ slot: app.slot, pid: process.pid, name: req.session.name ?? null });
    });
    web.post('/name', (req, res) => {
      const name = String(req.body?.name ?? '')
        .trim()
        .slice(0, 40);
      if (!name) return res.status(400).json({ error: 'a name is needed' });
      req.session.name = name;
      res.json({ slot: app.slot, name });
    });

    const server = http.createServer(web);
    const io = new Server(server, {
      pingInterval: Number(env.PING_INTERVAL ?? 25_000),
      pingTimeout: Number(env.PING_TIMEOUT ?? 20_000),
      maxHttpBufferSize: 1e6,
    });
    io.engine.generateId = app.generateId;
    // The chat knows who you are from the same session the pages use.
    io.engine.use(sessions);
    if (redisUrl) void useRedisAdapter(io);
    else io.adapter(clusterAdapter());

    io.on('connection', (socket) => {
      const req = socket.request;
      socket.emit('hello', { slot: app.slot, pid: process.pid, name: req.session?.name ?? null });
      socket.on('chat', (text, ack) => {
        // Reload: the name may have been set (on any worker) after this socket connected.
        req.session?.reload(() => {
          const message = {
            id: `${app.slot}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`,
            name: req.session?.name ?? 'anonymous',
            text: String(text).slice(0, 2000),
            slot: app.slot,
            at: Date.now(),
          };
          io.emit('chat', message);
          if (typeof ack === 'function') ack(message);
        });
      });
      // Echoes a payload of any size (up to maxHttpBufferSize) with its SHA-256.
      socket.on('echo', (data, ack) => {
        if (typeof ack !== 'function') return;
        const bytes = Buffer.isBuffer(data) ? data : Buffer.from(String(data));
        ack({
          slot: app.slot,
          length: bytes.length,
          sha256: createHash('sha256').update(bytes).digest('hex'),
        });
      });
    });
    return server;
  },
);

/** Broadcasts reach the sockets of every worker of every machine through Redis pub/sub. */
async function useRedisAdapter(io) {
  const [{ createAdapter }, { Redis }] = await Promise.all([
    import('@socket.io/redis-adapter'),
    import('ioredis'),
  ]);
  const pub = new Redis(redisUrl);
  io.adapter(createAdapter(pub, pub.duplicate()));
}

function escapeHtml(text) {
  return text.replace(
    /[&<>"']/g,
    (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c],
  );
}

if (app.role === 'primary') {
  // The cluster adapter's relay between workers lives in the primary.
  if (!redisUrl) setupPrimary();
  app.on('workerUp', ({ slot, pid }) => console.log(`worker ${slot} up (pid ${pid})`));
  app.on('workerExit', ({ slot, pid, code, signal, planned }) => {
    if (!planned) console.log(`worker ${slot} (pid ${pid}) exited: ${signal ?? code}; respawning`);
  });
}

app.listen(port, () => {
  if (app.role === 'primary') {
    console.log(
      `sticky-mesh chat on http://localhost:${app.address().port} with ${workers} workers`,
    );
  }
});
