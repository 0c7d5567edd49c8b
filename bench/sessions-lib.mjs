// Shared code of the session-store benches (bench/sessions.mjs, bench/redis.mjs): the client side
// of the express + express-session app of bench/servers/session-app.mjs, which both measure
// behind sticky-mesh's proxy-mode balancer, choosing each request's worker with X-Forwarded-For:
//   - client addresses per slot (slotKeys), a session made on a chosen worker (login), the
//     replicas' convergence check (converge) and the workers' apply records (fetchApplied);
//   - the closed-loop autocannon load, `POST /write` and `GET /me` over sessions of their own per
//     connection (setupLoad, runLoad, loadFigures, sumCheck);
//   - the open-loop writer of the latency measurements and its figures from the workers' apply
//     records (latencySessions, sendWrite, runOpenLoop, applyFigures);
//   - the machine and the package versions for the report (machineInfo).
// Generic HTTP, CPU accounting and report helpers: bench/lib.mjs.

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import http from 'node:http';
import path from 'node:path';
import * as lib from './lib.mjs';
import { dist, fmtInt, ms, nowNs, pool, request, requestJson, sleep } from './lib.mjs';

// keys[s]: at least `need` X-Forwarded-For addresses (198.18.x.y) that the balancer routes to slot
// s of `workers`; pick(key, liveSlots) is the balancer's own hash.
export function slotKeys(pick, workers, need) {
  const live = Array.from({ length: workers }, (_, s) => s);
  const keys = live.map(() => []);
  for (let n = 1; keys.some((k) => k.length < need); n++) {
    if ((n & 255) === 0 || (n & 255) === 255) continue;
    if (n > 65_000) throw new Error('not enough client addresses for every slot');
    const key = `198.18.${n >> 8}.${n & 255}`;
    keys[pick(key, live)].push(key);
  }
  return keys;
}

// A new session on `slot` (from client address `key`): { sid, cookie, slot, key }.
export async function login(port, slot, key, user) {
  const r = await requestJson(port, {
    method: 'POST',
    path: `/login?user=${encodeURIComponent(user)}`,
    headers: { 'x-forwarded-for': key },
  });
  if (r.json.slot !== slot)
    throw new Error(`login via ${key}: answered by slot ${r.json.slot}, expected ${slot} (hash?)`);
  const setCookie = [].concat(r.headers['set-cookie'] ?? []);
  const cookie = setCookie.map((c) => c.split(';')[0]).find((c) => c.startsWith('connect.sid='));
  if (!cookie) throw new Error('login: no connect.sid cookie');
  return { sid: r.json.sid, cookie, slot, key };
}

// GET /digest on every slot of every target { port, keys } until all agree (up to 5 s):
// { converged, ms, digests }.
export async function converge(targets) {
  const t0 = Date.now();
  for (;;) {
    const digests = (
      await Promise.all(
        targets.map(({ port, keys }) =>
          Promise.all(
            keys.map((k, s) =>
              requestJson(port, { path: '/digest', headers: { 'x-forwarded-for': k[0] } }).then(
                (r) => {
                  if (r.json.slot !== s)
                    throw new Error(`digest: slot ${r.json.slot}, expected ${s}`);
                  return r.json;
                },
              ),
            ),
          ),
        ),
      )
    ).flat();
    if (digests.every((d) => d.digest === digests[0].digest))
      return { converged: true, ms: Date.now() - t0, digests };
    if (Date.now() - t0 > 5000) return { converged: false, ms: Date.now() - t0, digests };
    await sleep(20);
  }
}

// Drains GET /applied of the worker that `key` reaches: Map write id -> apply time (hrtime ns).
export async function fetchApplied(port, key) {
  const r = await request(port, { path: '/applied', headers: { 'x-forwarded-for': key } });
  if (r.status !== 200) throw new Error(`GET /applied: HTTP ${r.status}`);
  const m = new Map();
  for (const line of r.body.split('\n')) {
    if (!line) continue;
    const [id, t] = line.split(':');
    m.set(Number(id), BigInt(t));
  }
  return m;
}

// ---------------------------------------------------------------------------------------------
// Closed-loop load (autocannon).

// Connection i is a client of slot i mod workers, from its own address keys[slot][1 + ...], with
// sessionsPerConn sessions of its own made on that slot: { port, clients, connections }.
export async function setupLoad(port, { keys, workers, connections, sessionsPerConn }) {
  const jobs = [];
  for (let i = 0; i < connections; i++) {
    const slot = i % workers;
    const key = keys[slot][1 + Math.floor(i / workers)];
    for (let j = 0; j < sessionsPerConn; j++) jobs.push([i, slot, key, `c${i}-s${j}`]);
  }
  const made = await pool(jobs, 16, ([, slot, key, user]) => login(port, slot, key, user));
  const clients = Array.from({ length: connections }, (_, i) => ({
    slot: i % workers,
    sessions: [],
  }));
  for (const [n, [i]] of jobs.entries()) clients[i].sessions.push(made[n]);
  return { port, clients, connections };
}

// A client's request list: of every `cycle` requests one POST /write, the others GET /me.
function clientRequests(client, cycle) {
  const ss = client.sessions;
  const req = (kind, s) => ({
    method: kind === 'w' ? 'POST' : 'GET',
    path: kind === 'w' ? '/write' : '/me',
    headers: { cookie: s.cookie, 'x-forwarded-for': s.key },
  });
  if (cycle === 1) return ss.map((s) => req('w', s));
  const out = [];
  for (let j = 0; j < ss.length * cycle; j++) {
    if (j % cycle === cycle - 1) out.push(req('w', ss[Math.floor(j / cycle) % ss.length]));
    else out.push(req('r', ss[j % ss.length]));
  }
  return out;
}

// Counters runLoad fills: per-kind response times (lat.r, lat.w, while active), wrong-slot and
// non-2xx answers (while active), and writes acknowledged (always, warm-up included).
export function newLoadCounters() {
  return lib.newCounters({ mismatches: 0, non2xx: 0, ackedWrites: 0, lat: { r: [], w: [] } });
}

// One autocannon run of `seconds` over ctx (setupLoad's), one write in `cycle` requests.
export function runLoad(ctx, cycle, seconds, counters) {
  let index = 0;
  const setupClient = (client) => {
    const c = ctx.clients[index++ % ctx.clients.length];
    client.setRequests(clientRequests(c, cycle));
    const proto = Object.getPrototypeOf(client);
    // With pipelining 1 a connection has one request in flight: the response being parsed
    // answers the last request written (a reconnect writes a new one first).
    let lastKind = '?';
    lib.connectFrom(client, undefined, () => {
      if (counters.active) counters.connects++;
    });
    client._doRequest = function doRequest() {
      const before = this.reqsMade;
      proto._doRequest.call(this);
      if (this.reqsMade !== before)
        lastKind = this.requestIterator.currentRequest?.method === 'POST' ? 'w' : 'r';
    };
    client.on('headers', (info) => {
      if (counters.active && Number(lib.rawHeader(info.headers, 'x-slot')) !== c.slot)
        counters.mismatches++;
    });
    client.on('response', (status, _bytes, duration) => {
      const kind = lastKind;
      const ok = status >= 200 && status < 300;
      if (ok && kind === 'w') counters.ackedWrites++;
      if (!counters.active) return;
      if (!ok) counters.non2xx++;
      else counters.lat[kind === 'w' ? 'w' : 'r'].push(duration);
    });
    lib.countConnErrors(client, counters);
  };
  return lib.runAutocannon({ port: ctx.port, connections: ctx.connections, seconds, setupClient });
}

// The figures of a measured runLoad period (r: autocannon's result, counters: the period's) and
// of the convergence check after it (conv: converge's).
export function loadFigures(r, counters, conv) {
  const reads = dist(counters.lat.r);
  const writes = dist(counters.lat.w);
  return {
    duration: r.duration,
    rps: (reads.n + writes.n) / r.duration,
    readsPerS: reads.n / r.duration,
    writesPerS: writes.n / r.duration,
    all: dist([...counters.lat.r, ...counters.lat.w]),
    reads,
    writes,
    errors: r.errors,
    timeouts: r.timeouts,
    non2xx: counters.non2xx,
    mismatches: counters.mismatches,
    connErrors: Object.fromEntries(counters.connErrors),
    converged: conv.converged,
    convergeMs: conv.ms,
    sessions: conv.digests[0].sessions,
    sumN: conv.digests.map((d) => d.sum),
    ackedWrites: counters.ackedWrites,
  };
}

// Sum of n on the replicas vs acknowledged writes: equal up to requests in flight when
// autocannon stopped (twice: warm-up and measured period, at most r.connections each).
export function sumCheck(r) {
  if (!r.sumN) return '';
  const sums = [...new Set(r.sumN)];
  const extra = sums[0] - r.ackedWrites;
  const ok = sums.length === 1 && extra >= 0 && extra <= 2 * r.connections;
  return `${ok ? 'ok' : '**MISMATCH**'} (sum n ${sums.map(fmtInt).join('/')}, acked ${fmtInt(r.ackedWrites)})`;
}

// Paced load, open loop: `seconds` at `rate` requests/s over ctx's sessions (setupLoad's), of
// every `cycle` requests one `POST /write`, the others `GET /me`, as the closed-loop load sends
// them but at a fixed rate below saturation, so response times are what a request costs, not a
// queue. A 1 ms timer sends every request due since the start (a slow server gets a queue, not
// fewer requests), each to its session's worker over that worker's keep-alive agent (at most 16
// sockets). Resolves once the requests in flight have settled (at most 10 s more) with
// { sent, elapsed (s), reads, writes (response times, ms: t0 just before the request, to its
// last byte), non2xx, errors, mismatches }.
export async function runPaced(ctx, cycle, rate, seconds) {
  const sessions = ctx.clients.flatMap((c) => c.sessions);
  const agents = new Map();
  const agentOf = (slot) => {
    if (!agents.has(slot)) agents.set(slot, new http.Agent({ keepAlive: true, maxSockets: 16 }));
    return agents.get(slot);
  };
  const rec = { sent: 0, reads: [], writes: [], non2xx: 0, errors: 0, mismatches: 0 };
  const inflight = new Set();
  const send = (j) => {
    const s = sessions[Math.floor(j / cycle) % sessions.length];
    const write = j % cycle === cycle - 1;
    const t0 = nowNs();
    const p = request(ctx.port, {
      method: write ? 'POST' : 'GET',
      path: write ? '/write' : '/me',
      headers: { cookie: s.cookie, 'x-forwarded-for': s.key },
      agent: agentOf(s.slot),
    }).then(
      (r) => {
        if (r.status < 200 || r.status > 299) rec.non2xx++;
        else if (Number(r.headers['x-slot']) !== s.slot) rec.mismatches++;
        else (write ? rec.writes : rec.reads).push(ms(r.end - t0));
      },
      () => {
        rec.errors++;
      },
    );
    inflight.add(p);
    p.finally(() => inflight.delete(p));
  };
  const start = nowNs();
  const endNs = start + BigInt(Math.round(seconds * 1e9));
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = nowNs();
      const due = Math.floor((Number((now < endNs ? now : endNs) - start) / 1e9) * rate);
      while (rec.sent < due) send(rec.sent++);
      if (now >= endNs) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  rec.elapsed = Number(nowNs() - start) / 1e9;
  const t = Date.now();
  while (inflight.size && Date.now() - t < 10_000) await Promise.allSettled([...inflight]);
  for (const a of agents.values()) a.destroy();
  return rec;
}

// ---------------------------------------------------------------------------------------------
// Open-loop writes (latency).

// perSlot sessions on every slot of keys (from its first address), interleaved so that
// consecutive writes go to different workers.
export async function latencySessions(port, keys, perSlot) {
  const jobs = [];
  for (let s = 0; s < keys.length; s++)
    for (let j = 0; j < perSlot; j++) jobs.push([s, keys[s][0], `lat-${s}-${j}`]);
  const made = await pool(jobs, 16, ([s, key, user]) => login(port, s, key, user));
  const order = [];
  for (let j = 0; j < perSlot; j++)
    for (let s = 0; s < keys.length; s++) order.push(made[s * perSlot + j]);
  return order;
}

// Sends `POST /write?w=ID` for session s to ctx.port over ctx.agents[s.slot] (ID from
// ctx.nextId) and records it in rec: returns { id, slot, t0, ack, at, ok, done } (t0: hrtime
// just before the request; ack: of the response; at: when the route ran on the writer; done:
// settles with the request). An error counts under ctx.writeErrorCode(err, s) when the ctx has
// one, else under its code.
export function sendWrite(ctx, s, rec) {
  const id = ctx.nextId++;
  const t0 = nowNs();
  const w = { id, slot: s.slot, t0, ack: null, at: null, ok: false, done: null };
  rec.writes.set(id, w);
  const p = request(ctx.port, {
    method: 'POST',
    path: `/write?w=${id}`,
    headers: { cookie: s.cookie, 'x-forwarded-for': s.key },
    agent: ctx.agents[s.slot],
  }).then(
    (r) => {
      w.ack = r.end;
      if (r.status !== 200) rec.non2xx++;
      else if (Number(r.headers['x-slot']) !== s.slot) rec.mismatches++;
      else {
        w.ok = true;
        w.at = BigInt(JSON.parse(r.body).at);
      }
    },
    (err) => {
      rec.errors++;
      const code = ctx.writeErrorCode ? ctx.writeErrorCode(err, s) : (err.code ?? err.message);
      rec.errorCodes.set(code, (rec.errorCodes.get(code) || 0) + 1);
    },
  );
  rec.inflight.add(p);
  w.done = p.finally(() => rec.inflight.delete(p));
  return w;
}

// `seconds` of writes at `rate` per second, open loop: a 1 ms timer sends every write due since
// the start (a slow server gets a queue, not fewer writes), cycling through ctx.sessions (ctx.k
// the next). alongside(rec, endNs), when given, is started just before the timer and awaited
// after it. Resolves once the writes in flight have settled (at most 10 s more) with rec:
// writes (id -> sendWrite's record), sent, errors, non2xx, mismatches, errorCodes, elapsed (s),
// and the fields of `extra`.
export async function runOpenLoop(ctx, seconds, rate, extra = {}, alongside = undefined) {
  const rec = {
    writes: new Map(),
    inflight: new Set(),
    sent: 0,
    errors: 0,
    non2xx: 0,
    mismatches: 0,
    errorCodes: new Map(),
    ...extra,
  };
  const start = nowNs();
  const endNs = start + BigInt(seconds) * 1_000_000_000n;
  const beside = alongside?.(rec, endNs);
  await new Promise((resolve) => {
    const timer = setInterval(() => {
      const now = nowNs();
      const elapsed = (now < endNs ? now : endNs) - start;
      const due = Math.floor((Number(elapsed) / 1e9) * rate);
      while (rec.sent < due) {
        rec.sent++;
        sendWrite(ctx, ctx.sessions[ctx.k++ % ctx.sessions.length], rec);
      }
      if (now >= endNs) {
        clearInterval(timer);
        resolve();
      }
    }, 1);
  });
  rec.elapsed = Number(nowNs() - start) / 1e9;
  await beside;
  const t = Date.now();
  while (rec.inflight.size && Date.now() - t < 10_000) await Promise.allSettled([...rec.inflight]);
  return rec;
}

// Write-to-visible figures of acknowledged writes (sendWrite's records) from the apply times
// timesOf(w) lists for each, one per worker that should apply it (undefined: no record came):
// each (apply - t0, every (write, worker)), fromHandler (apply - the time the route ran on the
// writer), all (the last of a write's workers - t0, for writes every worker recorded: measured,
// of them allBeforeAck before the writer's response) and missing (records that never came).
export function applyFigures(writes, timesOf) {
  const each = [];
  const fromHandler = [];
  const all = [];
  let missing = 0;
  let measured = 0;
  let allBeforeAck = 0;
  for (const w of writes) {
    let last = null;
    let complete = true;
    for (const t of timesOf(w)) {
      if (t === undefined) {
        complete = false;
        missing++;
        continue;
      }
      each.push(ms(t - w.t0));
      fromHandler.push(ms(t - w.at));
      if (last === null || t > last) last = t;
    }
    if (complete) {
      measured++;
      all.push(ms(last - w.t0));
      if (last < w.ack) allBeforeAck++;
    }
  }
  return {
    each: dist(each),
    fromHandler: dist(fromHandler),
    all: dist(all),
    measured,
    missing,
    allBeforeAck,
  };
}

// ---------------------------------------------------------------------------------------------
// Report.

// The machine, the versions of the packages involved (as installed in node_modules) and of
// redis-server ('not found' when it is not on PATH), the commit and the build's stamp.
export function machineInfo() {
  const version = (name) => {
    try {
      return JSON.parse(
        readFileSync(path.join(lib.rootDir, 'node_modules', name, 'package.json'), 'utf8'),
      ).version;
    } catch {
      return 'not installed';
    }
  };
  let redisServer = 'not found';
  try {
    redisServer =
      /v=(\S+)/.exec(execFileSync('redis-server', ['--version'], { encoding: 'utf8' }))?.[1] ??
      'unknown';
  } catch {}
  return {
    ...lib.machine(),
    autocannon: version('autocannon'),
    express: version('express'),
    expressSession: version('express-session'),
    connectRedis: version('connect-redis'),
    redis: version('redis'),
    ioredis: version('ioredis'),
    redisServer,
    commit: lib.gitCommit(),
    distBuilt: lib.distStamp(),
  };
}
