// Starts a private redis-server for the session-store benches (./sessions-connect-redis.mjs and
// ./sessions-memory.mjs, and bench/redis.mjs itself): a free loopback port, no persistence,
//   redis-server --port P --bind 127.0.0.1 --save '' --appendonly no
// started as a child of the calling process: in its process group (killed with it), or with
// `detached` in a group of its own (the caller kills it; onSpawn(child) runs right after the
// spawn, before it is ready, so the caller can register it for cleanup).
// Resolves with { port, version, pid, child } once it prints "Ready to accept connections".
import { spawn } from 'node:child_process';
import net from 'node:net';

// A port the system hands out on 127.0.0.1, closed again for the caller to bind.
export function freePort() {
  return new Promise((resolve, reject) => {
    const s = net.createServer();
    s.once('error', reject);
    s.listen(0, '127.0.0.1', () => {
      const p = s.address().port;
      s.close(() => resolve(p));
    });
  });
}

export async function startRedis({ detached = false, onSpawn } = {}) {
  const port = await freePort();
  return new Promise((resolve, reject) => {
    const child = spawn(
      'redis-server',
      ['--port', String(port), '--bind', '127.0.0.1', '--save', '', '--appendonly', 'no'],
      { detached, stdio: ['ignore', 'pipe', 'pipe'] },
    );
    onSpawn?.(child);
    let out = '';
    let done = false;
    const timer = setTimeout(
      () => fail(new Error(`redis-server: not ready in 10 s\n${out}`)),
      10_000,
    );
    const fail = (err) => {
      if (done) return;
      done = true;
      clearTimeout(timer);
      child.kill('SIGKILL');
      reject(err);
    };
    child.on('error', (err) =>
      fail(
        new Error(
          `cannot start redis-server (${err.code}): install it (apt-get install redis-server)`,
        ),
      ),
    );
    // In the caller's group it dies with the caller, so an exit seen after it was ready is
    // unexpected; a detached one is stopped by its owner.
    child.on('exit', (code, signal) => {
      if (!done) fail(new Error(`redis-server exited (${code ?? signal})\n${out}`));
      else if (!detached) process.stderr.write(`redis-server exited (${code ?? signal})\n`);
    });
    // Both pipes stay drained for the server's lifetime (a full pipe would block its logging).
    child.stderr.on('data', (d) => {
      if (!done) out += d;
    });
    child.stdout.on('data', (d) => {
      if (done) return;
      out += d;
      if (/Ready to accept connections/.test(out)) {
        done = true;
        clearTimeout(timer);
        const version = /Redis version=([^\s,]+)/.exec(out)?.[1] ?? 'unknown';
        resolve({ port, version, pid: child.pid, child });
      }
    });
  });
}
