#!/usr/bin/env node
// What one request head trickled one byte per TCP segment costs the primary (issue 14 item 2).
//
//   node bench/head-reading.mjs            (needs dist/: `npm run build` once)
//
// Knobs (environment):
//   STICKY_MESH_DIST  the build to measure, default dist/ (e.g. a build of an older commit, for
//                     a before/after comparison; it is imported by path)
//   SIZES             head sizes in bytes, default 16384,32768
//   ROUNDS            measurements per figure, default 5 (the report gives the median)
//
// Two servers, each a child process of its own, for each read path (the handle's onread, or a
// net.Socket: STICKY_MESH_HEAD_READS=socket):
//   reader   readHead() from routing/head-reader.js exactly as the balancer calls it (maxBytes
//            64 KB, readNow), on connections taken from a listening handle's onconnection; it
//            measures its own CPU (process.cpuUsage) from accept to the reader's verdict and
//            counts the reads the reader was given (so the segment sizes are known). Read via
//            `nothing` is the floor: the same reads into an onread that only counts the bytes
//            (what any reader pays the kernel and libuv per segment).
//   primary  a whole sticky() primary in proxy mode (1 worker, maxHeaderBytes 64 KB): the bench
//            asks it for process.cpuUsage() over IPC before the connection and after the answer
//            arrived; the difference is everything the primary did for that connection
//            (accept, head, routing, handoff).
// The client (this process) writes the head (GET, X-Forwarded-For, an X-Pad header filling it to
// the size) one byte per write(2) on a TCP_NODELAY socket, 50 us apart (busy wait), so that each
// byte is its own segment and the server, which keeps up, gets one read per byte. For contrast,
// the same head written at once. Linux loopback; the figures are CPU ms per connection.
import { fork } from 'node:child_process';
import http from 'node:http';
import net from 'node:net';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';

const here = path.dirname(fileURLToPath(import.meta.url));
const dist = path.resolve(process.env.STICKY_MESH_DIST || path.join(here, '..', 'dist'));
const SIZES = (process.env.SIZES || '16384,32768').split(',').map(Number);
const ROUNDS = Number(process.env.ROUNDS || 5);
const MAX = 64 * 1024;

/** A request head of exactly `size` bytes. */
function headOf(size) {
  const start =
    'GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 198.51.100.7\r\nConnection: close\r\nX-Pad: ';
  return Buffer.from(`${start}${'a'.repeat(size - start.length - 4)}\r\n\r\n`, 'latin1');
}

async function serveReader() {
  const { readHead } = await import(pathToFileURL(path.join(dist, 'routing', 'head-reader.js')));
  const via = process.env.READ_VIA;
  const SIZE = Number(process.env.SIZE);
  const { streamBaseState, kReadBytesOrError } = process.binding('stream_wrap');
  const listener = net.createServer({ pauseOnConnect: true });
  listener.listen(0, '127.0.0.1', () => {
    listener._handle.onconnection = (status, handle) => {
      if (status !== 0 || !handle) return;
      const start = process.cpuUsage();
      let reads = via === 'handle' ? 1 : 0; // the handle path tries one read at once (readNow)
      const report = (status) => {
        const { user, system } = process.cpuUsage(start);
        process.send({ user: user / 1000, system: system / 1000, reads, status });
      };
      if (via === 'nothing') {
        // The floor: the same reads, each chunk only counted, no reader at all.
        let total = 0;
        handle.onread = (data) => {
          const n = streamBaseState[kReadBytesOrError];
          reads++;
          if (data === undefined || n <= 0) return;
          total += n;
          if (total < SIZE) return;
          handle.readStop();
          handle.close();
          report('ok');
        };
        handle.readStart();
        return;
      }
      const done = (result) => {
        const connection = result.status === 'ok' ? result.handle : result.connection;
        if (connection instanceof net.Socket) connection.destroy();
        else connection?.close();
        report(result.status);
      };
      const options = { maxBytes: MAX, timeoutMs: 60_000, proxyProtocol: false, untilHead: true };
      readHead(handle, { ...options, readNow: true, via }, done);
      // Count the reads: wrap whichever callback the reader (or its socket) installed.
      const onread = handle.onread;
      if (typeof onread === 'function') {
        handle.onread = function counted(...args) {
          reads++;
          return onread.apply(this, args);
        };
      }
    };
    process.send({ port: listener.address().port });
  });
}

async function servePrimary() {
  const { sticky } = await import(pathToFileURL(path.join(dist, 'index.js')));
  const app = sticky({ num: 1, proxy: true, maxHeaderBytes: MAX, headTimeout: 60_000 }, () =>
    http.createServer((_req, res) => res.end('ok')),
  );
  if (app.role !== 'primary') {
    app.listen(0, '127.0.0.1');
    return;
  }
  process.on('message', () => {
    const { user, system } = process.cpuUsage();
    process.send({ user: user / 1000, system: system / 1000 });
  });
  app.on('ready', () => process.send({ port: app.address().port }));
  app.listen(0, '127.0.0.1');
}

/** Starts a server child; resolves with it and its port. */
function start(kind, via, size) {
  const env = { ...process.env, READ_VIA: via, SIZE: String(size) };
  if (via === 'socket') env.STICKY_MESH_HEAD_READS = 'socket';
  else delete env.STICKY_MESH_HEAD_READS;
  const child = fork(fileURLToPath(import.meta.url), [`--${kind}`], { env, detached: true });
  return new Promise((resolve, reject) => {
    child.once('message', (m) => resolve({ child, port: m.port }));
    child.once('exit', (code) => reject(new Error(`${kind} server exited (${code})`)));
  });
}

function stop(child) {
  try {
    process.kill(-child.pid, 'SIGKILL');
  } catch {}
}

const nextMessage = (child) => new Promise((resolve) => child.once('message', resolve));

function busyWaitUs(us) {
  const end = process.hrtime.bigint() + BigInt(us * 1000);
  while (process.hrtime.bigint() < end) {}
}

/** Sends `head` (one byte per write, or at once) and waits until the server closes. */
function send(port, head, trickle) {
  return new Promise((resolve, reject) => {
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true }, () => {
      if (!trickle) socket.write(head);
      else {
        for (let i = 0; i < head.length; i++) {
          socket.write(head.subarray(i, i + 1));
          busyWaitUs(50);
        }
      }
    });
    socket.on('data', () => {});
    socket.on('error', () => {});
    socket.on('close', resolve);
    socket.setTimeout(120_000, () => reject(new Error('no answer')));
  });
}

const median = (xs) => [...xs].sort((a, b) => a - b)[Math.floor(xs.length / 2)];

/** One connection's CPU in the server: user and system ms, and the reads it took. */
async function once(kind, child, port, head, trickle) {
  if (kind === 'reader') {
    const verdict = nextMessage(child);
    await send(port, head, trickle);
    const m = await verdict;
    if (m.status !== 'ok') throw new Error(`reader: ${m.status}`);
    return m;
  }
  child.send('cpu');
  const before = await nextMessage(child);
  await send(port, head, trickle);
  child.send('cpu');
  const after = await nextMessage(child);
  return { user: after.user - before.user, system: after.system - before.system };
}

async function measure(kind, via, size, trickle) {
  const { child, port } = await start(kind, via, size);
  try {
    const runs = [];
    for (let round = 0; round < ROUNDS; round++) {
      runs.push(await once(kind, child, port, headOf(size), trickle));
    }
    if (process.env.VERBOSE) console.error(kind, via, size, trickle, JSON.stringify(runs));
    const pick = (f) => median(runs.map(f));
    return {
      total: pick((r) => r.user + r.system),
      user: pick((r) => r.user),
      system: pick((r) => r.system),
      reads: kind === 'reader' ? pick((r) => r.reads) : undefined,
    };
  } finally {
    stop(child);
  }
}

const VIAS = { reader: ['nothing', 'handle', 'socket'], primary: ['handle', 'socket'] };

async function main() {
  console.log(`build: ${dist}; ${ROUNDS} rounds per figure (medians); Node ${process.version}`);
  console.log('| server | read via | head bytes | written | CPU ms | user | system | reads |');
  console.log('|---|---|---|---|---|---|---|---|');
  for (const kind of ['reader', 'primary']) {
    for (const via of VIAS[kind]) {
      for (const size of SIZES) {
        for (const trickle of [false, true]) {
          const r = await measure(kind, via, size, trickle);
          const f = (x) => x.toFixed(1);
          const written = trickle ? '1 byte a write' : 'at once';
          console.log(
            `| ${kind} | ${via} | ${size} | ${written} | ${f(r.total)} | ${f(r.user)} | ${f(r.system)} | ${r.reads ?? ''} |`,
          );
        }
      }
    }
  }
}

const role = process.argv[2];
if (role === '--reader') await serveReader();
else if (role === '--primary') await servePrimary();
else await main();
