// The chat itself: an Express app with sessions and a Socket.io server on one http.Server.
// server.js runs it on a sticky-mesh cluster; the tests also run it without stickiness (a plain
// cluster) to show what breaks.
import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import express from 'express';
import session from 'express-session';
import { Server } from 'socket.io';

const page = readFileSync(new URL('./index.html', import.meta.url), 'utf8');

/**
 * Builds one worker's server.
 * @param {object} options
 * @param {number} options.slot the worker's number, shown to users
 * @param {import('express-session').Store} options.store the express-session store (a
 *   ReplicatedStore)
 * @param {(req?: unknown) => string} [options.genid] session id maker (sticky's, so ids name the
 *   worker)
 * @param {(req?: unknown) => string} [options.generateId] the same for Socket.io's ids
 * @param {Parameters<Server['adapter']>[0]} [options.adapter] the Socket.io adapter that relays
 *   broadcasts to the other workers
 * @param {NodeJS.ProcessEnv} [options.env]
 */
export function createChatServer({ slot, store, genid, generateId, adapter, env = process.env }) {
  const web = express();
  const sessions = session({
    store,
    secret: env.SESSION_SECRET ?? 'sticky-mesh demo secret: set SESSION_SECRET',
    resave: false,
    saveUninitialized: false,
    ...(genid ? { genid } : {}),
    cookie: { sameSite: 'lax', maxAge: 24 * 3600 * 1000 },
  });
  web.use(sessions);
  web.use(express.json({ limit: '4kb' }));
  web.get('/', (req, res) => {
    // Start the session with the page: the cookie is then set before the page's Socket.io
    // handshake, so the chat and the pages share one session (and its name).
    req.session.since ??= Date.now();
    res.type('html').send(
      page
        .replace('{{PAGE_SLOT}}', String(slot))
        .replace('{{PAGE_PID}}', String(process.pid))
        .replace('{{NAME}}', escapeHtml(req.session.name ?? '')),
    );
  });
  web.get('/whoami', (req, res) => {
    res.json({ slot, pid: process.pid, name: req.session.name ?? null });
  });
  web.post('/name', (req, res) => {
    const name = String(req.body?.name ?? '')
      .trim()
      .slice(0, 40);
    if (!name) {
      res.status(400).json({ error: 'a name is needed' });
      return;
    }
    req.session.name = name;
    res.json({ slot, name });
  });

  const server = http.createServer(web);
  const io = new Server(server, {
    pingInterval: Number(env.PING_INTERVAL ?? 25_000),
    pingTimeout: Number(env.PING_TIMEOUT ?? 20_000),
    // Room for a 1 MB message even as base64 over polling (binary grows by a third there).
    maxHttpBufferSize: 1.5e6,
  });
  if (generateId) io.engine.generateId = generateId;
  if (env.ENGINE_ERRORS === '1') {
    // For the tests: engine.io's own record of refused requests (say, "Session ID unknown").
    io.engine.on('connection_error', (e) =>
      console.log(
        JSON.stringify({
          event: 'connectionError',
          slot,
          pid: process.pid,
          code: e.code,
          message: e.message,
        }),
      ),
    );
  }
  // The chat knows who you are from the same session the pages use.
  io.engine.use(sessions);
  if (adapter) io.adapter(adapter);

  io.on('connection', (socket) => {
    const req = /** @type {import('./session.js').HandshakeRequest} */ (socket.request);
    socket.emit('hello', { slot, pid: process.pid, name: req.session?.name ?? null });
    socket.on('chat', (text, ack) => {
      // Reload: the name may have been set (on any worker) after this socket connected.
      req.session?.reload(() => {
        const message = {
          id: `${slot}-${process.pid}-${Date.now()}-${Math.random().toString(36).slice(2)}`,
          name: req.session?.name ?? 'anonymous',
          text: String(text).slice(0, 2000),
          slot,
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
        slot,
        length: bytes.length,
        sha256: createHash('sha256').update(bytes).digest('hex'),
      });
    });
  });
  return server;
}

/** @type {Record<string, string>} */
const ENTITIES = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

/** @param {string} text */
function escapeHtml(text) {
  return text.replace(/[&<>"']/g, (c) => ENTITIES[c] ?? c);
}
