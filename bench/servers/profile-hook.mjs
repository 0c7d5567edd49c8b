// Bench-only CPU profiling of a bench server's processes, inert unless BENCH_CPU_PROFILE names a
// directory. Then every process that imports this (the primary and each worker: the servers
// import it first) profiles itself through node:inspector on SIGWINCH: the first starts the
// V8 CPU profiler, the next stops it and writes <dir>/<role>-port<PORT>-<pid>.cpuprofile (role: primary,
// or worker-<slot>; PORT: the server's, which tells clusters apart), the format `node --cpu-prof` writes (Chrome DevTools opens it). Signalled by
// bench/profile.mjs, which sends SIGWINCH to the server's whole process group around its
// measured period. (Not --cpu-prof itself: that writes only at a clean exit, and the primary
// ends by re-raising SIGTERM.)
import cluster from 'node:cluster';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import path from 'node:path';

const dir = process.env.BENCH_CPU_PROFILE;
if (dir) {
  const session = new Session();
  session.connect();
  const post = (method, params) =>
    new Promise((resolve, reject) =>
      session.post(method, params, (err, r) => (err ? reject(err) : resolve(r))),
    );
  let running = false;
  process.on('SIGWINCH', async () => {
    try {
      if (!running) {
        running = true;
        await post('Profiler.enable');
        await post('Profiler.setSamplingInterval', { interval: 1000 });
        await post('Profiler.start');
        return;
      }
      running = false;
      const { profile } = await post('Profiler.stop');
      const role = cluster.isPrimary ? 'primary' : `worker-${process.env.STICKY_MESH_SLOT}`;
      const name = `${role}-port${process.env.PORT}-${process.pid}.cpuprofile`;
      writeFileSync(path.join(dir, name), JSON.stringify(profile));
    } catch (err) {
      process.stderr.write(`profile-hook: ${err.message}\n`);
    }
  });
}
