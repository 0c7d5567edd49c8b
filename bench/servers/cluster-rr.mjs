// (b) Node's cluster module, round-robin scheduling: the primary accepts and passes each
// connection handle to the next worker. Not sticky; the baseline for handle passing.
import cluster from 'node:cluster';
import http from 'node:http';
import { env, handler, ready } from './handler.mjs';

const { port, host, workers } = env();
cluster.schedulingPolicy = cluster.SCHED_RR;

if (cluster.isPrimary) {
  let listening = 0;
  cluster.on('listening', () => {
    listening += 1;
    if (listening === workers) ready(`workers=${workers}`);
  });
  cluster.on('exit', (w, code, signal) => {
    process.stderr.write(`worker ${w.process.pid} exited code=${code} signal=${signal}\n`);
  });
  for (let i = 0; i < workers; i++) cluster.fork();
} else {
  http.createServer(handler).listen(port, host);
}
