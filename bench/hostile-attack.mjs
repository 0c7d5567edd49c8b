#!/usr/bin/env node
// The attackers of bench/hostile.mjs, in a process of their own (started by it; not meant to be
// run by hand). Configuration: the environment variable ATTACK, a JSON object
//   { port, proxyPort, durationMs, slowloris, trickle, trickleBytes, trickleRate, garbage,
//     oversized }
// Each kind keeps its number of connections open for durationMs, opening a new one (after a short
// pause) whenever the server closes one:
//   slowloris  to port: a request line and Host, then one more header byte every second, never
//              finishing the head
//   trickle    to port: a trickleBytes request head (valid, X-Forwarded-For, Connection: close)
//              written one byte per write(2) on a TCP_NODELAY socket, trickleRate bytes/s
//   oversized  to port: a 64 KiB head written at once (one header over the limit, or one line
//              with no end), then the socket is left open
//   garbage    to proxyPort (a proxyProtocol cluster): random bytes, truncated or malformed PROXY
//              v1 / v2 headers, HTTP with no PROXY header, a v1 header past 107 bytes
// When durationMs has passed every socket is destroyed and one JSON line is printed:
//   { event: 'attackSummary', kinds: { <kind>: { opened, answered: { <status line>: n },
//     closedUnanswered, errors: { <code>: n }, bytes } } }
import { randomBytes } from 'node:crypto';
import net from 'node:net';

const config = JSON.parse(process.env.ATTACK ?? '{}');
const end = Date.now() + config.durationMs;
const sockets = new Set();
const kinds = {};

function tally(kind) {
  kinds[kind] ??= { opened: 0, answered: {}, closedUnanswered: 0, errors: {}, bytes: 0 };
  return kinds[kind];
}

/**
 * Keeps `count` connections of one kind open until the end: `start(socket, t)` drives each one;
 * a closed one is replaced after `pauseMs`.
 */
function keep(kind, port, count, pauseMs, start) {
  const t = tally(kind);
  const open = () => {
    if (Date.now() >= end) return;
    const socket = net.connect({ port, host: '127.0.0.1', noDelay: true });
    sockets.add(socket);
    t.opened++;
    let answer = '';
    socket.on('data', (chunk) => {
      if (answer.includes('\r\n') || answer.length > 200) return;
      answer += chunk.toString('latin1', 0, 200);
    });
    socket.on('error', (err) => {
      t.errors[err.code ?? err.message] = (t.errors[err.code ?? err.message] ?? 0) + 1;
    });
    socket.on('close', () => {
      sockets.delete(socket);
      const line = answer.split('\r\n')[0];
      if (line) t.answered[line] = (t.answered[line] ?? 0) + 1;
      else t.closedUnanswered++;
      setTimeout(open, pauseMs);
    });
    socket.on('connect', () => start(socket, t));
  };
  for (let i = 0; i < count; i++) setTimeout(open, (i * 1000) / count);
}

function write(socket, t, bytes) {
  if (socket.destroyed) return;
  t.bytes += bytes.length;
  socket.write(bytes);
}

// Slowloris: a head that never ends, one byte a second.
keep('slowloris', config.port, config.slowloris, 100, (socket, t) => {
  write(socket, t, Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n'));
  const filler = Buffer.from('X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa\r\n');
  let i = 0;
  const timer = setInterval(() => {
    write(socket, t, filler.subarray(i % filler.length, (i % filler.length) + 1));
    i++;
  }, 1000);
  socket.on('close', () => clearInterval(timer));
});

// Trickle: a valid head of trickleBytes, each byte its own write (its own segment).
function trickleHead(n) {
  const start = `GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.${1 + (n % 200)}\r\nConnection: close\r\nX-Pad: `;
  return Buffer.from(`${start}${'a'.repeat(config.trickleBytes - start.length - 4)}\r\n\r\n`);
}
const trickling = new Set();
let trickleSerial = 0;
keep('trickle', config.port, config.trickle, 100, (socket, t) => {
  trickling.add({ socket, t, head: trickleHead(trickleSerial++), sent: 0, since: Date.now() });
});
// One timer drives every trickling socket: each gets the bytes its rate owes it, one per write.
const trickleTimer = setInterval(() => {
  const now = Date.now();
  for (const c of trickling) {
    if (c.socket.destroyed || c.sent >= c.head.length) {
      trickling.delete(c);
      continue;
    }
    const due = Math.min(c.head.length, Math.floor(((now - c.since) * config.trickleRate) / 1000));
    // At most 16 bytes per tick: a late timer does not turn into one big write.
    for (let k = 0; k < 16 && c.sent < due; k++, c.sent++) {
      write(c.socket, c.t, c.head.subarray(c.sent, c.sent + 1));
    }
  }
}, 1);

// Oversized heads, written at once.
const bigHeader = Buffer.from(
  `GET / HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.250\r\nX-Big: ${'b'.repeat(64 * 1024)}\r\n\r\n`,
);
const endlessLine = Buffer.from(`GET /${'c'.repeat(64 * 1024)}`);
let oversizedSerial = 0;
keep('oversized', config.port, config.oversized, 100, (socket, t) => {
  write(socket, t, oversizedSerial++ % 2 ? bigHeader : endlessLine);
});

// Garbage and truncated PROXY headers.
const V2_SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');
const garbageSamples = [
  () => randomBytes(64),
  () => Buffer.from('PROXY TCP4 192.0.2.1 192.0.2.2 5'), // truncated: no end, waits
  () => Buffer.from('PROXY TCP4 999.0.2.1 192.0.2.2 56324 443\r\nGET / HTTP/1.1\r\n\r\n'),
  () => Buffer.from('PROXY SCTP 192.0.2.1 192.0.2.2 1 2\r\n'),
  () => Buffer.from(`PROXY TCP4 ${'1'.repeat(120)}\r\n`),
  () => Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n\r\n'), // no PROXY header at all
  () => V2_SIGNATURE.subarray(0, 7), // truncated signature: waits
  () => Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0xff, 0xff])]), // claims 64 KiB
  () => Buffer.concat([V2_SIGNATURE, Buffer.from([0x99, 0x11, 0x00, 0x0c]), randomBytes(12)]),
  () => Buffer.concat([V2_SIGNATURE, Buffer.from([0x21, 0x11, 0x00, 0x04]), randomBytes(4)]),
];
let garbageSerial = 0;
keep('garbage', config.proxyPort, config.garbage, 250, (socket, t) => {
  const sample = garbageSamples[garbageSerial++ % garbageSamples.length];
  write(socket, t, sample());
});

setTimeout(() => {
  clearInterval(trickleTimer);
  for (const socket of sockets) socket.destroy();
  process.stdout.write(`${JSON.stringify({ event: 'attackSummary', kinds })}\n`);
  process.exit(0);
}, config.durationMs).unref();
// The interval timers keep the process alive until the summary.
