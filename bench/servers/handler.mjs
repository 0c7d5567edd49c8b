// The one trivial handler every benchmarked server uses: 200, a 2-byte body, and an
// `x-worker` header naming the process that answered (the bench counts it per response to
// show how the load was spread). Identical for all five servers. Also what every server of
// bench/servers/ shares: its environment (env), its READY line (ready, readyWhenWorkersUp).
import cluster from 'node:cluster';

const pid = String(process.pid);

export function handler(_req, res) {
  res.writeHead(200, { 'x-worker': pid, 'content-type': 'text/plain', 'content-length': '2' });
  res.end('ok');
}

export function env() {
  const port = Number(process.env.PORT);
  const workers = Number(process.env.WORKERS || 2);
  if (!Number.isInteger(port) || port <= 0) throw new Error('PORT env is required');
  return { port, workers, host: '127.0.0.1' };
}

// The bench waits for this line on stdout before it sends any request.
export function ready(extra = '') {
  process.stdout.write(`READY pid=${process.pid}${extra ? ` ${extra}` : ''}\n`);
}

// The primary's half of a bench-only handshake, for servers whose own start does not wait for
// their workers: each worker sends 'bench:ready' once it serves, and READY is printed once all
// `workers` did and the returned function was called (call it when the port is bound).
export function readyWhenWorkersUp(workers) {
  let bound = false;
  let up = 0;
  const check = () => {
    if (bound && up === workers) ready(`workers=${workers}`);
  };
  cluster.on('message', (_w, msg) => {
    if (msg === 'bench:ready') {
      up += 1;
      check();
    }
  });
  return () => {
    bound = true;
    check();
  };
}
