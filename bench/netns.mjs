// A private LAN of network namespaces for benchmarks that need several "machines" on one box
// (bench/multicast.mjs). Linux only; needs root and iproute2 (`ip netns`).
//
//   switch namespace  smb<pid>-<k>-sw   lo up, bridge br0 (mcast_snooping 0: every multicast
//                                      datagram is flooded to every port, as a plain switch
//                                      does), one port h<i> per host
//   host namespace i  smb<pid>-<k>-h<i> lo up, eth0 = the other end of h<i>, 10.78.0.<i>/24,
//                                      no default route
//
// Every link is created inside the namespaces (the veth pair is made in the switch namespace
// with its peer end placed straight into the host namespace), so nothing ever appears in the
// root namespace and no traffic leaves the LAN. Names carry this process's pid, so concurrent
// runs do not collide and namespaces left by a run that was killed (SIGKILL, a crash) are found
// and removed by the next run (removeStale: a prefix whose pid is no longer a bench process).
//
// Cleanup: destroy() kills the processes still inside the namespaces (all of them this bench's
// children) and deletes every namespace; deleting the switch namespace removes the veth pairs
// with it. It is synchronous, so it also runs from a process 'exit' handler; cleanupOnSignals()
// adds SIGINT / SIGTERM / SIGHUP handlers that run it and exit (130 / 143 / 129).
//
//   node bench/netns.mjs --cleanup     removes stale namespaces of earlier runs and exits

import { execFileSync, spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';

const PREFIX = 'smb';
const NAME = /^smb(\d+)-\d+-(sw|h\d+)$/;
const live = new Set(); // Lans not destroyed yet
let lanCount = 0;
let exitHook = false;

const ip = (...args) =>
  execFileSync('ip', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });

const sleepSync = (ms) => Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Whether this process may create namespaces: root, and `ip netns` works. */
export function netnsAvailable() {
  if (process.platform !== 'linux' || process.getuid?.() !== 0) return false;
  try {
    ip('netns', 'list');
    return true;
  } catch {
    return false;
  }
}

export function listNamespaces() {
  return ip('netns', 'list')
    .split('\n')
    .map((l) => l.trim().split(/\s+/)[0])
    .filter(Boolean);
}

function pidsIn(ns) {
  try {
    // (an empty line must not become pid 0: kill(0) would hit this whole process group)
    return ip('netns', 'pids', ns)
      .split('\n')
      .filter((l) => /^\d+$/.test(l.trim()))
      .map(Number)
      .filter((p) => p > 0);
  } catch {
    return [];
  }
}

/** Kills the processes inside ns (SIGKILL, by pid) and deletes it; never throws. */
function removeNamespace(ns) {
  for (let round = 0; round < 40; round++) {
    const pids = pidsIn(ns).filter((p) => p !== process.pid);
    if (pids.length === 0) break;
    for (const pid of pids) {
      try {
        process.kill(pid, 'SIGKILL');
      } catch {}
    }
    sleepSync(50);
  }
  try {
    ip('netns', 'del', ns);
  } catch {}
}

/** A bench process still owns pid (its command line runs a bench/ script). */
function ownerAlive(pid) {
  if (pid === process.pid) return true;
  try {
    const cmd = readFileSync(`/proc/${pid}/cmdline`, 'utf8');
    return cmd.includes('bench/');
  } catch {
    return false;
  }
}

/** Removes namespaces of earlier runs whose process is gone; returns their names. */
export function removeStale() {
  const stale = listNamespaces().filter((ns) => {
    const m = NAME.exec(ns);
    return m && !ownerAlive(Number(m[1]));
  });
  // Switch namespaces first: that removes the veth pairs with them.
  stale.sort((a, b) => Number(b.endsWith('-sw')) - Number(a.endsWith('-sw')));
  for (const ns of stale) removeNamespace(ns);
  return stale;
}

/**
 * Creates the switch and `hosts` host namespaces. Returns
 * { switchNs, hosts: [{ index, ns, ipv4, ifname }], exec(i, cmd, args, opts), destroy() }.
 * On any failure what was created is removed again and the error thrown.
 */
export function createLan({ hosts = 3, subnet = '10.78.0' } = {}) {
  if (hosts < 1 || hosts > 250) throw new Error('hosts: 1..250');
  installExitHook();
  const base = `${PREFIX}${process.pid}-${++lanCount}`;
  const lan = {
    switchNs: `${base}-sw`,
    hosts: [],
    namespaces: [],
    destroyed: false,
    exec(index, cmd, args = [], opts = {}) {
      const h = lan.hosts[index];
      if (!h) throw new Error(`no host ${index}`);
      return spawn('ip', ['netns', 'exec', h.ns, cmd, ...args], opts);
    },
    destroy() {
      if (lan.destroyed) return;
      lan.destroyed = true;
      live.delete(lan);
      for (const ns of lan.namespaces) removeNamespace(ns);
    },
  };
  live.add(lan);
  try {
    const sw = lan.switchNs;
    ip('netns', 'add', sw);
    lan.namespaces.push(sw);
    ip('-n', sw, 'link', 'set', 'lo', 'up');
    ip('-n', sw, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0');
    ip('-n', sw, 'link', 'set', 'br0', 'up');
    for (let i = 1; i <= hosts; i++) {
      const ns = `${base}-h${i}`;
      ip('netns', 'add', ns);
      lan.namespaces.push(ns);
      const port = `h${i}`;
      ip('-n', sw, 'link', 'add', port, 'type', 'veth', 'peer', 'name', 'eth0', 'netns', ns);
      ip('-n', sw, 'link', 'set', port, 'master', 'br0');
      ip('-n', sw, 'link', 'set', port, 'up');
      const ipv4 = `${subnet}.${i}`;
      ip('-n', ns, 'link', 'set', 'lo', 'up');
      ip('-n', ns, 'addr', 'add', `${ipv4}/24`, 'dev', 'eth0');
      ip('-n', ns, 'link', 'set', 'eth0', 'up');
      lan.hosts.push({ index: lan.hosts.length, ns, ipv4, ifname: 'eth0' });
    }
  } catch (err) {
    lan.destroy();
    throw err;
  }
  return lan;
}

/** Destroys every Lan of this process (synchronous). */
export function destroyAll() {
  for (const lan of [...live]) lan.destroy();
}

function installExitHook() {
  if (exitHook) return;
  exitHook = true;
  process.on('exit', destroyAll);
}

/**
 * On SIGINT / SIGTERM / SIGHUP: beforeExit() (synchronous, e.g. kill children), destroyAll(),
 * exit with 128 + the signal number.
 */
export function cleanupOnSignals(beforeExit = () => {}) {
  const codes = { SIGHUP: 129, SIGINT: 130, SIGTERM: 143 };
  for (const [sig, code] of Object.entries(codes)) {
    process.on(sig, () => {
      try {
        beforeExit();
      } catch {}
      destroyAll();
      process.exit(code);
    });
  }
}

if (process.argv[1] && fileURLToPath(import.meta.url) === process.argv[1]) {
  if (process.argv[2] !== '--cleanup') {
    console.log('usage: node bench/netns.mjs --cleanup   (removes stale smb<pid>-* namespaces)');
  } else if (!netnsAvailable()) {
    console.log('skipped: needs root and ip netns');
  } else {
    const removed = removeStale();
    console.log(removed.length ? `removed ${removed.join(', ')}` : 'no stale namespaces');
  }
}
