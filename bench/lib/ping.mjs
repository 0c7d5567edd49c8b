// Redis PING round trips over one connection, one at a time: the round-trip time a client sees
// to 127.0.0.1:port, directly or through bench/servers/delay-relay.mjs. Resolves with the round
// trips in ms (hrtime, from the write of `PING` to the arrival of `+PONG`), after `warmup` more
// that are not returned.
import net from 'node:net';

export function pingRoundTrips(port, count, warmup = 50) {
  return new Promise((resolve, reject) => {
    const sock = net.connect({ port, host: '127.0.0.1', noDelay: true });
    const out = [];
    let sent = 0;
    let t0 = 0n;
    let buf = '';
    const next = () => {
      if (sent === count + warmup) {
        sock.end();
        resolve(out);
        return;
      }
      sent++;
      t0 = process.hrtime.bigint();
      sock.write('PING\r\n');
    };
    sock.setEncoding('latin1');
    sock.on('connect', next);
    sock.on('data', (d) => {
      buf += d;
      while (buf.startsWith('+PONG\r\n')) {
        buf = buf.slice(7);
        const t = process.hrtime.bigint();
        if (sent > warmup) out.push(Number(t - t0) / 1e6);
        next();
      }
    });
    sock.on('error', reject);
    sock.setTimeout(10_000, () => sock.destroy(new Error(`PING to port ${port}: no answer`)));
  });
}
