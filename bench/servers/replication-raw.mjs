// The raw replication path, without HTTP in the measured loop (bench/replication.mjs): every
// worker holds a ReplicatedStore and, when the bench asks over HTTP, writes ~SESSION_BYTES
// sessions into it itself.
//   sticky({ num: WORKERS, proxy: true, seed: SEED }): the bench reaches each worker with an
//   X-Forwarded-For key the balancer routes to it.
// Worker routes (answers JSON):
//   GET /burst?inflight=N&ms=T  N writes in flight for T ms (each awaited, the next started at
//                               once): { slot, pid, writes, errors, elapsedMs }
//   GET /paced?rate=R&ms=T      R writes/s on a 1 ms timer for T ms, each session carrying the
//                               time it was written (process.hrtime.bigint(), CLOCK_MONOTONIC:
//                               one clock for every process of the machine): { slot, writes }
//   GET /applied                the delays (ms) from write to apply here of the other workers'
//                               paced writes since the last call, then forgets them
// A worker sees other workers' writes arrive on the `sticky-mesh:replicated` diagnostics
// channel, published once each is applied in it.
import diagnostics_channel from 'node:diagnostics_channel';
import http from 'node:http';
import { ReplicatedStore, sticky } from 'sticky-mesh';
import { env, ready } from './handler.mjs';

const { port, host, workers } = env();
const SEED = Number(process.env.SEED ?? 0x5e5510a5);
const SESSION_BYTES = Number(process.env.SESSION_BYTES ?? 1024);

function session(extra) {
  const base = {
    cookie: {
      originalMaxAge: 3_600_000,
      expires: new Date(Date.now() + 3_600_000).toISOString(),
      httpOnly: true,
      path: '/',
    },
    ...extra,
  };
  const pad = Math.max(0, SESSION_BYTES - JSON.stringify(base).length - 12);
  return { ...base, pad: 'x'.repeat(pad) };
}

const app = sticky({ num: workers, proxy: true, seed: SEED }, () => {
  const slot = Number(process.env.STICKY_MESH_SLOT);
  const store = new ReplicatedStore();
  let recording = false;
  let applied = [];
  const record = (data) => {
    const at = /"at":"(\d+)"/.exec(data)?.[1];
    if (at) applied.push(Number(process.hrtime.bigint() - BigInt(at)) / 1e6);
  };
  // Each change another worker made, once applied here (the store's diagnostics channel).
  diagnostics_channel.subscribe('sticky-mesh:replicated', ({ change: c }) => {
    if (recording && c.op === 'set') record(c.data);
  });
  const json = (res, body) => {
    const text = JSON.stringify(body);
    res.writeHead(200, {
      'content-type': 'application/json',
      'content-length': Buffer.byteLength(text),
    });
    res.end(text);
  };
  return http.createServer(async (req, res) => {
    const url = new URL(req.url ?? '/', 'http://bench');
    const num = (name) => Number(url.searchParams.get(name));
    if (url.pathname === '/burst') {
      const until = Date.now() + num('ms');
      const started = process.hrtime.bigint();
      let writes = 0;
      let errors = 0;
      const loop = async (i) => {
        for (let n = 0; Date.now() < until; n++) {
          try {
            await store.set(`b-${slot}-${i}-${n & 63}`, session({ n }));
            writes++;
          } catch {
            errors++;
          }
        }
      };
      await Promise.all(Array.from({ length: num('inflight') }, (_, i) => loop(i)));
      json(res, {
        slot,
        pid: process.pid,
        writes,
        errors,
        elapsedMs: Number(process.hrtime.bigint() - started) / 1e6,
      });
    } else if (url.pathname === '/paced') {
      recording = true;
      const rate = num('rate');
      const start = Date.now();
      const until = start + num('ms');
      let issued = 0;
      let writes = 0;
      let errors = 0;
      await new Promise((resolve) => {
        const timer = setInterval(() => {
          const now = Date.now();
          const due = Math.floor(((Math.min(now, until) - start) * rate) / 1000);
          for (; issued < due; issued++) {
            const at = String(process.hrtime.bigint());
            store.set(`p-${slot}-${issued & 255}`, session({ at })).then(
              () => writes++,
              () => errors++,
            );
          }
          if (now >= until && writes + errors === issued) {
            clearInterval(timer);
            resolve();
          }
        }, 1);
      });
      json(res, { slot, writes, errors });
    } else if (url.pathname === '/applied') {
      const out = applied;
      applied = [];
      json(res, { slot, applied: out });
    } else {
      json(res, { slot, pid: process.pid });
    }
  });
});

if (app.role === 'primary') app.listen(port, host, () => ready(`workers=${workers}`));
else app.listen(port, host);
