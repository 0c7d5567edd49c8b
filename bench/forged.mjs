#!/usr/bin/env node
// What a forged multicast datagram costs the node that receives it, before and after the gate
// tag (issue 15 item 5), and what a legitimate one costs.
//
//   node bench/forged.mjs               (needs dist/: `npm run build` once)
//
// Knobs (environment):
//   STICKY_MESH_DIST  the build measured as "after", default dist/
//   BEFORE_DIST       the build measured as "before"; default: commit BASE (7d2d61b) built into
//                     a temp dir (git archive + tsc, node_modules linked)
//   BUILDS            which to run, default before,after
//   COUNT             datagrams sent per measurement, default 100000
//   PPS               datagrams per second sent, default 25000 (the issue's attack rate)
//   ROUNDS            measurements per figure, default 3 (the report gives the median)
//   KINDS             which receiver figures, default floor,forged,legit
//   NO_WRITE=1        print only, leave bench/RESULTS.md alone
//
// The receiver is a child process (one per figure) that runs a real MulticastTransport of the
// build (sealed, bound on the loopback interface, alone in its group, so synced) and answers
// IPC requests with its process.cpuUsage() and stats(). This process sends it datagrams over
// loopback UDP at PPS; the figure is the receiver's CPU (user + system) between two requests,
// divided by the datagrams its transport counted (datagramsReceived). Kinds:
//   forged   valid-looking sealed envelopes (magic, the build's version, sealed flag, a random
//            sender id and salt each, a current time where the build's header has one, random
//            rest) of the build's smallest sealed size, 200 and 1400 bytes; nobody holds the
//            secret that would authenticate them. Each must end in rejected.auth.
//   floor    the same feed (each size) to a plain dgram socket with a handler that only
//            counts: what the kernel, libuv and Node's 'message' event cost per datagram
//            whatever the library does. "rejection" = forged - floor.
//   legit    a second transport of the same build in this process, in the same group, publishing
//            changes (300-byte sessions, 40 per 4 ms tick, batched into full datagrams): the
//            receiver opens, orders and applies them (CPU per datagram counted, and per change).
// Plus, in this process, the cost of opening one genuine 1,200-byte envelope (open() and the
// replay window, as the transport does it), per build, averaged over 100,000 (median of ROUNDS).
import { execFileSync, fork } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import dgram from 'node:dgram';
import { existsSync, mkdirSync, symlinkSync } from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath, pathToFileURL } from 'node:url';
import {
  f2,
  gitCommit,
  intEnv,
  machine,
  median,
  rootDir,
  runMain,
  sleep,
  writeResults,
} from './lib.mjs';

const BASE = '7d2d61b';
const SECRET = 'forged-datagram bench secret, 32 bytes+';
const COUNT = intEnv('COUNT', 100_000);
const PPS = intEnv('PPS', 25_000);
const ROUNDS = intEnv('ROUNDS', 3);
const TICK_MS = 4;
const here = fileURLToPath(import.meta.url);

const silent = { info() {}, warn() {}, error() {} };

async function load(dist) {
  const m = (p) => import(pathToFileURL(path.join(dist, p)));
  const [transport, options, table, seal] = await Promise.all([
    m('replication/transports/multicast/transport.js'),
    m('replication/transports/multicast/options.js'),
    m('replication/table.js'),
    m('replication/transports/multicast/seal.js'),
  ]);
  return { ...transport, ...options, ...table, ...seal };
}

async function newTransport(lib, port) {
  const table = new lib.SessionTable({ tombstoneTtl: 600_000 });
  const t = new lib.MulticastTransport(
    lib.resolveMulticastOptions({
      secret: SECRET,
      ipv4: '127.0.0.1',
      multicastPort: port,
      joinTimeout: 200,
      logger: silent,
    }),
    {
      table,
      applyRemote: (changes) => {
        for (const c of changes) table.apply(c);
      },
    },
  );
  await t.start();
  return t;
}

// ---- the receiver (child) -------------------------------------------------------------------

async function receiver() {
  const port = Number(process.env.PORT);
  let received = () => 0;
  let stats = () => ({});
  if (process.env.KIND === 'floor') {
    const socket = dgram.createSocket({ type: 'udp4', reuseAddr: true });
    let n = 0;
    socket.on('message', () => {
      n++;
    });
    await new Promise((r) => socket.bind(port, '0.0.0.0', r));
    socket.setRecvBufferSize(4 * 1024 * 1024);
    received = () => n;
  } else {
    const lib = await load(process.env.DIST);
    const t = await newTransport(lib, port);
    received = () => t.stats().datagramsReceived;
    stats = () => {
      const s = t.stats();
      return { rejected: s.rejected, changesReceived: s.changesReceived, peers: s.peers.length };
    };
  }
  process.on('message', () => {
    const { user, system } = process.cpuUsage();
    process.send({ cpuUs: user + system, received: received(), ...stats() });
  });
  // The bench went away (killed, failed): so does its receiver.
  process.on('disconnect', () => process.exit(0));
  process.send({ ready: true });
}

// ---- this process: feeds and measures -------------------------------------------------------

function startReceiver(dist, kind, port) {
  const child = fork(here, ['--receiver'], {
    env: { ...process.env, DIST: dist, KIND: kind, PORT: String(port) },
  });
  return new Promise((resolve, reject) => {
    child.once('message', () => resolve(child));
    child.once('exit', (code) => reject(new Error(`receiver exited (${code})`)));
  });
}

const ask = (child) =>
  new Promise((resolve) => {
    child.once('message', resolve);
    child.send('cpu');
  });

/** Forged envelopes: the build's header (version, sealed flag), random sender and salt each. */
function forgedPool(headerBytes, size, n = 20_000) {
  const version = headerBytes === 28 ? 1 : 2;
  const pool = [];
  for (let i = 0; i < n; i++) {
    const b = randomBytes(size);
    b[0] = 0x53;
    b[1] = 0x4d;
    b[2] = version;
    b[3] = 1;
    b.writeUInt32BE(0, 20);
    b.writeUInt32BE(1 + i, 24);
    if (version === 2) b.writeDoubleBE(Date.now(), 28);
    pool.push(b);
  }
  return pool;
}

/** Sends `count` datagrams from `pool` (cycled) to 127.0.0.1:port at PPS. */
async function feed(pool, port, count) {
  const socket = dgram.createSocket('udp4');
  const perTick = Math.max(1, Math.round((PPS * TICK_MS) / 1000));
  let sent = 0;
  const start = performance.now();
  while (sent < count) {
    const due = Math.min(count, Math.floor(((performance.now() - start) / 1000) * PPS) + perTick);
    while (sent < due) {
      socket.send(pool[sent % pool.length], port, '127.0.0.1');
      sent++;
    }
    await sleep(TICK_MS);
  }
  await sleep(200);
  socket.close();
}

/** Publishes changes from a sender transport until the receiver counted `count` datagrams. */
async function publish(sender, receiverChild, count) {
  const data = JSON.stringify({ user: 'x'.repeat(280) });
  const first = (await ask(receiverChild)).received;
  let i = 0;
  const until = Date.now() + 120_000;
  for (;;) {
    for (let k = 0; k < 40; k++, i++) {
      const now = Date.now();
      sender.publish({
        op: 'set',
        sid: `bench-${i}`,
        data,
        expiresAt: now + 3_600_000,
        version: { t: now, c: i % 1000, n: sender.id },
      });
    }
    await sleep(TICK_MS);
    if (i % 4000 === 0) {
      const got = (await ask(receiverChild)).received - first;
      if (got >= count || Date.now() > until) break;
    }
  }
  await sleep(300);
}

let nextPort = 47_700;

async function measure(build, kind, size) {
  const port = nextPort++;
  const child = await startReceiver(build.dist, kind === 'floor' ? 'floor' : 'transport', port);
  let sender;
  try {
    if (kind === 'legit') {
      sender = await newTransport(build.lib, port);
      const until = Date.now() + 10_000;
      while ((await ask(child)).peers < 1 && Date.now() < until) await sleep(100);
    }
    const before = await ask(child);
    if (kind === 'legit') await publish(sender, child, COUNT);
    else await feed(forgedPool(build.lib.HEADER_BYTES, size), port, COUNT);
    const after = await ask(child);
    const n = after.received - before.received;
    const out = { us: (after.cpuUs - before.cpuUs) / n, received: n };
    if (kind === 'forged') {
      out.auth = after.rejected.auth - before.rejected.auth;
      if (out.auth !== n) throw new Error(`forged: ${n} received but ${out.auth} refused as auth`);
    }
    if (kind === 'legit') {
      out.changes = after.changesReceived - before.changesReceived;
      out.usPerChange = (after.cpuUs - before.cpuUs) / out.changes;
    }
    return out;
  } finally {
    await sender?.close();
    child.kill('SIGKILL');
  }
}

/** Opening one genuine 1,200-byte envelope, as the transport does it: µs each. */
function openCost(lib) {
  const ring = new lib.Keyring(SECRET, 'sticky-mesh');
  const window = new lib.ReplayWindow(60_000);
  const sealers = [0, 1, 2, 3].map(() => new lib.Sealer(ring, randomBytes(8).toString('hex')));
  const envs = [];
  for (let i = 0; i < 100_000; i++) envs.push(sealers[i % 4].seal(4, randomBytes(1200)));
  const v2 = lib.HEADER_BYTES !== 28;
  const start = process.cpuUsage();
  for (const env of envs) {
    const o = v2 ? lib.open(ring, env, window) : lib.open(ring, env);
    if (typeof o === 'string' || (!v2 && window.accept(o) !== 'ok')) throw new Error('not opened');
  }
  const { user, system } = process.cpuUsage(start);
  return (user + system) / envs.length;
}

const describe = (m) => `${m.cpus} x ${m.model}, ${m.memGiB} GiB, Node ${m.node}, ${m.os}`;

function buildBase() {
  const dir = path.join(os.tmpdir(), `sticky-mesh-${BASE}`);
  const dist = path.join(dir, 'dist');
  if (existsSync(path.join(dist, 'index.js'))) return dist;
  mkdirSync(dir, { recursive: true });
  execFileSync('sh', ['-c', `git -C "${rootDir}" archive ${BASE} | tar -x -C "${dir}"`]);
  if (!existsSync(path.join(dir, 'node_modules'))) {
    symlinkSync(path.join(rootDir, 'node_modules'), path.join(dir, 'node_modules'));
  }
  execFileSync(path.join(rootDir, 'node_modules', '.bin', 'tsc'), ['-p', 'tsconfig.build.json'], {
    cwd: dir,
  });
  return dist;
}

async function main() {
  const builds = (process.env.BUILDS || 'before,after').split(',');
  const dists = {
    before: process.env.BEFORE_DIST || (builds.includes('before') ? buildBase() : ''),
    after: path.resolve(process.env.STICKY_MESH_DIST || path.join(rootDir, 'dist')),
  };
  const loaded = [];
  for (const name of builds) loaded.push({ name, dist: dists[name], lib: await load(dists[name]) });
  const kinds = (process.env.KINDS || 'floor,forged,legit').split(',');
  // Case by case, the builds take turns round after round, so that a change in the machine's
  // background load (it is shared) falls on both alike.
  const cases = [];
  for (const size of ['min', 200, 1400]) cases.push(['floor', size], ['forged', size]);
  cases.push(['legit', 0]);
  const figures = new Map(loaded.map((b) => [b.name, {}]));
  const rows = new Map(loaded.map((b) => [b.name, []]));
  for (const [kind, sizeOf] of cases) {
    if (!kinds.includes(kind)) continue;
    const runs = new Map(loaded.map((b) => [b.name, []]));
    const sizes = new Map(
      loaded.map((b) => [b.name, sizeOf === 'min' ? b.lib.SEAL_OVERHEAD : sizeOf]),
    );
    for (let round = 0; round < ROUNDS; round++) {
      for (const build of loaded) {
        runs.get(build.name).push(await measure(build, kind, sizes.get(build.name)));
      }
    }
    for (const build of loaded) {
      const size = sizes.get(build.name);
      const got = runs.get(build.name);
      if (process.env.VERBOSE) console.error(build.name, kind, size, JSON.stringify(got));
      const r = figures.get(build.name);
      const us = median(got.map((x) => x.us));
      r[`${kind}${size || ''}`] = us;
      const extra =
        kind === 'legit'
          ? `${f2(median(got.map((x) => x.usPerChange)))} µs per change`
          : kind === 'forged'
            ? `rejection ${f2(us - (r[`floor${size}`] ?? Number.NaN))} µs over the floor`
            : '';
      const row = [build.name, kind, size ? String(size) : '~1,350', f2(us), extra];
      rows.get(build.name).push(row);
      console.log(row.join(' | '));
    }
  }
  const opens = new Map(loaded.map((b) => [b.name, []]));
  for (let round = 0; round < ROUNDS; round++) {
    for (const build of loaded) opens.get(build.name).push(openCost(build.lib));
  }
  for (const build of loaded) {
    const us = median(opens.get(build.name));
    const row = [
      build.name,
      'open() one genuine 1,200-byte envelope, in process',
      '1,261',
      f2(us),
      '',
    ];
    rows.get(build.name).push(row);
    console.log(row.join(' | '));
  }
  const table = [
    '| build | datagrams | bytes | receiver CPU µs / datagram | note |',
    '|---|---|---|---|---|',
    ...[...rows.values()].flat().map((r) => `| ${r.join(' | ')} |`),
  ].join('\n');
  const section = [
    '<!-- BEGIN forged-datagrams (written by bench/forged.mjs; do not edit by hand) -->',
    '## Forged multicast datagrams (issue 15 item 5)',
    '',
    `${new Date().toISOString()}, commit ${gitCommit()}, ${describe(machine())}. Before: ${BASE} built into a ` +
      `temp dir; after: ${path.relative(rootDir, dists.after) || dists.after}. ${COUNT.toLocaleString('en-US')} ` +
      `datagrams per measurement at ${PPS.toLocaleString('en-US')}/s over loopback UDP, ` +
      `${ROUNDS} measurements per figure (median), the two builds taking turns. CPU is the receiving process's own ` +
      '(process.cpuUsage, user + system) divided by the datagrams its transport counted; "floor" ' +
      'is a plain dgram socket that only counts, under the same feed: what receiving any datagram ' +
      'costs in Node before the library sees it. Forged: a random sender id and salt each, the ' +
      "build's version byte and sealed flag, a current time where the header has one, random " +
      'rest; every one was refused as auth. Legit: a second transport publishing 300-byte ' +
      'sessions, batched into full datagrams, opened, ordered and applied by the receiver. ' +
      'The machine is shared (2 cores, other test runs): figures move by 10-20% between runs.',
    '',
    table,
    '',
    '<!-- END forged-datagrams -->',
  ].join('\n');
  if (!process.env.NO_WRITE) writeResults('forged-datagrams', section);
  else console.log(`\n${section}`);
}

if (process.argv.includes('--receiver')) await receiver();
else runMain(main);
