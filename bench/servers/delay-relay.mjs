// A TCP relay that puts a fixed delay in front of a server, for bench/redis.mjs: Redis "at a
// realistic distance" on a kernel without netem. Every chunk read from either side is written to
// the other side DELAY_US microseconds after it was read, in the order it was read (one FIFO for
// all connections and both directions: with one fixed delay, read order is due order), so a
// request/response round trip gains 2 x DELAY_US plus the relay's own scheduling.
//
//   node bench/servers/delay-relay.mjs   env TARGET_PORT (required: the server on 127.0.0.1),
//                                        DELAY_US [250], PORT [0: a free one]
//
// Prints `READY pid=... port=P delayUs=D` once it listens on 127.0.0.1:P. On SIGUSR2 it prints
// `STATS <json>`: chunks and bytes relayed, and how long chunks were really held (read to
// written, µs: p50, p99, max over the chunks since the last STATS), which is the delay the relay
// added to each chunk (the loopback hops themselves exist without it too).
//
// Timing: libuv's timers have millisecond resolution, too coarse for 250 µs. A worker thread is
// the clock instead: it sleeps in Atomics.wait (a futex wait, microsecond resolution) until the
// due time of the oldest chunk the main thread armed it with, then posts one message; the main
// thread writes every chunk that is due and arms it again for the next. No thread spins, so the
// relay costs CPU only per chunk. Chunks that fall due while the main thread is already handling
// input are written then, too.
import net from 'node:net';
import { isMainThread, parentPort, Worker } from 'node:worker_threads';

if (!isMainThread) clockThread();
else relay();

// ctl[0]: arm counter (the main thread bumps it and notifies); due[0]: hrtime ns to fire at, 0n
// when disarmed. Fires once per arming.
function clockThread() {
  parentPort.once('message', ({ ctlBuf, dueBuf }) => {
    const ctl = new Int32Array(ctlBuf);
    const due = new BigInt64Array(dueBuf);
    for (;;) {
      const seq = Atomics.load(ctl, 0);
      const at = Atomics.load(due, 0);
      if (at === 0n) {
        Atomics.wait(ctl, 0, seq);
        continue;
      }
      const left = at - process.hrtime.bigint();
      if (left > 0n) {
        Atomics.wait(ctl, 0, seq, Number(left) / 1e6);
        continue;
      }
      if (Atomics.compareExchange(due, 0, at, 0n) === at) parentPort.postMessage(0);
    }
  });
}

function relay() {
  const targetPort = Number(process.env.TARGET_PORT);
  if (!Number.isInteger(targetPort) || targetPort <= 0) throw new Error('TARGET_PORT is required');
  const delayUs = Number(process.env.DELAY_US ?? 250);
  if (!(delayUs >= 0)) throw new Error('DELAY_US: microseconds >= 0');
  const delayNs = BigInt(Math.round(delayUs * 1000));

  const ctl = new Int32Array(new SharedArrayBuffer(4));
  const due = new BigInt64Array(new SharedArrayBuffer(8));
  const clock = new Worker(new URL(import.meta.url));
  clock.unref();
  clock.postMessage({ ctlBuf: ctl.buffer, dueBuf: due.buffer });

  // The FIFO: parallel arrays from `head` on (compacted now and then).
  let queue = []; // { at, to, data } (data null: end `to` once everything before is written)
  let head = 0;
  let armed = false;
  // The clock wakes the main thread some tens of µs after the time it is armed for (futex timer
  // slack, the message hop): `lead` (ns) is that lateness, a moving average of what it was, and
  // the clock is armed that much early, so chunks are held DELAY_US, not DELAY_US + lateness.
  let lead = 0;
  let armedFor = 0n;
  const held = []; // µs each chunk was held, since the last STATS
  const totals = { chunks: 0, bytes: 0, connections: 0 };

  const arm = (at) => {
    armed = true;
    armedFor = at - BigInt(Math.round(lead));
    Atomics.store(due, 0, armedFor);
    Atomics.add(ctl, 0, 1);
    Atomics.notify(ctl, 0);
  };

  const flush = () => {
    const now = process.hrtime.bigint();
    const until = now + BigInt(Math.round(lead));
    while (head < queue.length && queue[head].at <= until) {
      const item = queue[head++];
      if (item.to.destroyed) continue;
      if (item.data === null) item.to.end();
      else {
        item.to.write(item.data);
        if (held.length < 1_000_000) held.push(Number(now - item.read) / 1000);
      }
    }
    if (head === queue.length) {
      queue = [];
      head = 0;
    } else if (head > 4096) {
      queue = queue.slice(head);
      head = 0;
    }
    if (head < queue.length && !armed) arm(queue[head].at);
  };

  clock.on('message', () => {
    const late = Number(process.hrtime.bigint() - armedFor);
    lead = Math.min(Number(delayNs) / 2, Math.max(0, lead + (late - lead) / 16));
    armed = false;
    flush();
  });

  const push = (to, data) => {
    const read = process.hrtime.bigint();
    queue.push({ at: read + delayNs, read, to, data });
    flush(); // writes what fell due meanwhile, arms the clock when it is idle
  };

  const pipe = (from, to) => {
    from.on('data', (d) => {
      totals.chunks++;
      totals.bytes += d.length;
      push(to, d);
    });
    from.on('end', () => push(to, null));
  };

  const server = net.createServer({ noDelay: true }, (client) => {
    totals.connections++;
    const upstream = net.connect({ port: targetPort, host: '127.0.0.1', noDelay: true });
    const kill = () => {
      client.destroy();
      upstream.destroy();
    };
    client.on('error', kill);
    upstream.on('error', kill);
    client.on('close', () => upstream.destroyed || setTimeout(kill, 1000).unref());
    upstream.on('close', () => client.destroyed || setTimeout(kill, 1000).unref());
    pipe(client, upstream);
    pipe(upstream, client);
  });

  process.on('SIGUSR2', () => {
    const s = held.sort((a, b) => a - b);
    const at = (p) => (s.length ? s[Math.min(s.length - 1, Math.floor((p / 100) * s.length))] : 0);
    const out = {
      ...totals,
      leadUs: lead / 1000,
      held: s.length,
      p50: at(50),
      p99: at(99),
      max: s.at(-1) ?? 0,
    };
    held.length = 0;
    process.stdout.write(`STATS ${JSON.stringify(out)}\n`);
  });
  for (const sig of ['SIGTERM', 'SIGINT']) process.on(sig, () => process.exit(0));

  server.listen(Number(process.env.PORT || 0), '127.0.0.1', () => {
    process.stdout.write(
      `READY pid=${process.pid} port=${server.address().port} delayUs=${delayUs}\n`,
    );
  });
}
