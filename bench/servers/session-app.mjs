// The express + express-session app of the session-store benchmarks (bench/sessions.mjs,
// bench/redis.mjs), shared by their servers (./sessions-sticky-mesh.mjs and
// ./redis-sticky-mesh.mjs: ReplicatedStore; ./sessions-connect-redis.mjs and
// ./redis-connect-redis.mjs: connect-redis): the same middleware options, routes and session
// contents, so the servers differ only in the `store` passed in.
//
// express-session as the sticky-mesh test fixture uses it (test/fixtures/session-app.mjs):
// resave false, saveUninitialized false, cookie maxAge 1 h, store defaults (touch on: a request
// that reads a session without changing it calls store.touch, and express-session ends the
// response only once the touch has completed; a request that changes it saves it first).
//
// Every response carries `x-worker` (pid) and `x-slot` (the sticky-mesh slot), so the bench
// checks that each request reached the worker it chose with X-Forwarded-For.
//
// Routes (JSON answers):
//   GET  /                 "ok" (the bench's readiness probe; no session)
//   POST /login?user=U     new session { user, n: 0, profile } of about SESSION_BYTES of JSON
//   GET  /me               the session's user and n (a read: express-session touches it)
//   POST /write[?w=ID]     n + 1, and w = ID when given: always a change, so always a save;
//                          answers { slot, n, at }: at = process.hrtime.bigint() when the
//                          route ran, before express-session saved the session
//   GET  /value?sid=SID    debug: the store's copy of session SID, read with store.get (no
//                          middleware, no touch): { slot, w, n }, w and n null when absent
//   GET  /digest           debug: every session the store holds (store.all()): how many, the sum
//                          of their n, their mean JSON size and a SHA-256 of [sid, user, n, w]
//                          sorted by sid (equal digests on all workers = converged replicas)
//   GET  /applied          bench-only, ReplicatedStore servers (recordingServer): see below
// Environment: SESSION_BYTES (default 1024): target JSON size of a session as the store gets it.
import { createHash, randomBytes } from 'node:crypto';
import diagnostics_channel from 'node:diagnostics_channel';
import http from 'node:http';
import express from 'express';
import session from 'express-session';

const slot = Number(process.env.STICKY_MESH_SLOT);
const pid = String(process.pid);
const MAX_RECORDS = 2_000_000;

export const COOKIE_MAX_AGE = 3_600_000;
export const sessionBytes = () => Number(process.env.SESSION_BYTES || 1024);

// A session's fields besides express-session's cookie: user, n (a counter) and a random profile
// string sized so that the session's JSON, cookie included, is about `bytes` long.
export function sessionFields(user, bytes = sessionBytes()) {
  const fields = { user, n: 0, profile: '' };
  const sample = JSON.stringify({
    cookie: {
      originalMaxAge: COOKIE_MAX_AGE,
      expires: new Date().toISOString(),
      httpOnly: true,
      path: '/',
    },
    ...fields,
  });
  const room = Math.max(0, bytes - sample.length);
  // Random printable characters (base64url: nothing that JSON escapes).
  const profile = randomBytes(Math.ceil((room * 3) / 4) + 3)
    .toString('base64url')
    .slice(0, room);
  fields.profile = profile;
  return fields;
}

// store[method](...args) as a promise, whether the store answers through a callback
// (express-session's MemoryStore) or a promise (ReplicatedStore, connect-redis), whichever
// comes first.
function call(store, method, ...args) {
  return new Promise((resolve, reject) => {
    const r = store[method](...args, (err, v) => (err ? reject(err) : resolve(v)));
    if (r && typeof r.then === 'function') r.then(resolve, reject);
  });
}

function header(res) {
  res.setHeader('x-worker', pid);
  res.setHeader('x-slot', String(slot));
}

// The express app over `store`; `extra(web)` may add routes (before the session middleware).
export function sessionApp(store, extra) {
  const web = express();
  web.disable('x-powered-by');
  web.disable('etag');
  web.use((_req, res, next) => {
    header(res);
    next();
  });
  web.get('/', (_req, res) => res.type('text/plain').send('ok'));
  web.get('/value', async (req, res, next) => {
    try {
      const s = await call(store, 'get', String(req.query.sid ?? ''));
      res.json({ slot, w: s?.w ?? null, n: s?.n ?? null });
    } catch (err) {
      next(err);
    }
  });
  web.get('/digest', async (_req, res, next) => {
    try {
      const all = (await call(store, 'all')) ?? {};
      // ReplicatedStore answers { sid: session }, connect-redis an array of sessions with `id`.
      const pairs = Array.isArray(all)
        ? all.map((s) => [s.id, s])
        : Object.entries(all).map(([sid, s]) => [sid, s]);
      pairs.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
      let sum = 0;
      let bytes = 0;
      const entries = pairs.map(([sid, s]) => {
        sum += Number(s.n) || 0;
        const { id: _id, ...rest } = s;
        bytes += JSON.stringify(rest).length;
        return [sid, s.user ?? null, s.n ?? null, s.w ?? null];
      });
      const digest = createHash('sha256').update(JSON.stringify(entries)).digest('hex');
      res.json({
        slot,
        sessions: entries.length,
        sum,
        meanBytes: entries.length ? bytes / entries.length : 0,
        digest,
      });
    } catch (err) {
      next(err);
    }
  });
  extra?.(web);
  web.use(
    session({
      store,
      secret: 'bench secret',
      resave: false,
      saveUninitialized: false,
      cookie: { maxAge: COOKIE_MAX_AGE },
    }),
  );
  web.post('/login', (req, res) => {
    Object.assign(req.session, sessionFields(String(req.query.user ?? 'anon')));
    res.json({ slot, sid: req.sessionID });
  });
  web.get('/me', (req, res) => {
    res.json({ slot, user: req.session.user ?? null, n: req.session.n ?? null });
  });
  web.post('/write', (req, res) => {
    const at = process.hrtime.bigint(); // before express-session saves the session
    req.session.n = (req.session.n ?? 0) + 1;
    if (req.query.w !== undefined) req.session.w = Number(req.query.w);
    res.json({ slot, n: req.session.n, at: String(at) });
  });
  return web;
}

// A worker's http server of sessionApp(store) for a ReplicatedStore `store`, with bench-only
// instrumentation, GET /applied (drains the list): this worker's times of applying the changes
// other processes made (other workers' writes, and with Redis other clusters' too). It
// subscribes to sticky-mesh's diagnostics channel `sticky-mesh:replicated`, which a worker
// publishes `{ change }` on once its replica has applied a change made elsewhere, and takes
// process.hrtime.bigint() there (CLOCK_MONOTONIC, one clock for every process of the machine,
// so comparable with the bench's own readings) for each replicated `set` whose session JSON
// carries a write id `"w":ID`, recording [ID, ns]. It reads what the channel hands it; the store
// itself is not touched.
export function recordingServer(store) {
  let applied = [];
  diagnostics_channel.subscribe('sticky-mesh:replicated', ({ change }) => {
    if (change?.op !== 'set' || typeof change.data !== 'string') return;
    const t = process.hrtime.bigint();
    const m = /"w":(\d+)/.exec(change.data);
    if (m && applied.length < MAX_RECORDS) applied.push(`${m[1]}:${t}`);
  });
  const web = sessionApp(store, (w) => {
    w.get('/applied', (_req, res) => {
      const out = applied;
      applied = [];
      res.type('text/plain').send(out.join('\n'));
    });
  });
  return http.createServer(web);
}
