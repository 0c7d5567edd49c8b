// The multicast state-transfer server under a flood of unauthenticated connections (issue 15
// item 4): hosts are network namespaces on a shared bridge (test/helpers/netns.ts). Host 1 runs a
// 2-worker sticky cluster of test/fixtures/session-app.mjs holding 5,000 sessions; host 2 opens
// 1,000 TCP connections to its state-transfer port, never authenticates, trickles a byte on each
// open one every second and opens again what was closed; host 3 then joins and must get the
// whole state. All traffic stays inside the namespaces made here.
import { type ChildProcess, spawn } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { afterAll, afterEach, beforeAll, describe, expect, it, vi } from 'vitest';
import { type FixtureProcess, startFixture, stopFixtures } from '../helpers/cluster.js';
import { createLan, hasNetns, type Lan } from '../helpers/netns.js';
import { waitUntilGone } from '../helpers/proc.js';
import { sessionAppCaller, sessionAppStats } from '../helpers/session-app.js';

const SECRET = 'system test secret: 32 bytes or more';
const CONNECTIONS = 1000;
const available = hasNetns();
const dir = mkdtempSync(join(tmpdir(), 'sticky-mesh-transfer-'));
let lan: Lan | undefined;
let sockets = 0;
const attackers: ChildProcess[] = [];

interface Host {
  proc: FixtureProcess;
  socketPath: string;
}

interface Stats {
  multicast: {
    syncPort: number;
    syncWaiting: number;
    served: number;
    rejected: { connections: number; deadline: number; auth: number; malformed: number };
  };
}

afterEach(async () => {
  for (const a of attackers) a.kill('SIGKILL');
  await waitUntilGone(
    attackers.splice(0).map((a) => a.pid as number),
    5000,
  );
  await stopFixtures();
});
afterAll(async () => {
  await stopFixtures();
  await lan?.destroy();
  rmSync(dir, { recursive: true, force: true });
});

async function host(index: number, port: number): Promise<Host> {
  const h = (lan as Lan).hosts[index] as Lan['hosts'][number];
  const socketPath = join(dir, `h${index}-${sockets++}.sock`);
  const proc = await startFixture({
    fixture: 'session-app.mjs',
    netns: h.ns,
    timeoutMs: 30_000,
    env: {
      WORKERS: '2',
      CONTROL_SOCKET: socketPath,
      STICKY_OPTIONS: JSON.stringify({
        multicast: {
          secret: SECRET,
          ipv4: h.ipv4,
          multicastPort: port,
          heartbeatInterval: 200,
          failureTimeout: 1500,
          joinTimeout: 600,
        },
      }),
    },
  });
  await proc.waitFor('control');
  return { proc, socketPath };
}

const call = sessionAppCaller({ timeoutMs: 20_000 });
const stats = (h: Host) => sessionAppStats<Stats>(h.proc);

/**
 * In the attacker's namespace: keeps up to `n` connections to host:port open without ever
 * sending a request (a 4-byte length, then one byte a second on each), opening again every
 * 2 s what was closed; at most 20 s and 15,000 connection attempts. Prints one JSON line a
 * second: attempts, open now, closed so far.
 */
const ATTACKER = `
const net = require('node:net');
const [host, port, n] = process.argv.slice(1).map((v, i) => (i === 0 ? v : Number(v)));
const open = new Set();
let attempts = 0, closed = 0;
function fill() {
  for (let i = open.size; i < n && attempts < 15000; i++) {
    attempts++;
    const s = net.connect({ host, port });
    open.add(s);
    s.on('connect', () => s.write(Buffer.from([0, 0, 0, 64])));
    s.on('error', () => {});
    s.on('close', () => { open.delete(s); closed++; });
  }
}
fill();
const refill = setInterval(fill, 2000);
const trickle = setInterval(() => { for (const s of open) if (s.writable) s.write(Buffer.from([0])); }, 1000);
const report = setInterval(() => console.log(JSON.stringify({ attempts, open: open.size, closed })), 1000);
setTimeout(() => { clearInterval(refill); clearInterval(trickle); clearInterval(report); for (const s of open) s.destroy(); }, 20000);
`;

interface AttackReport {
  attempts: number;
  open: number;
  closed: number;
}

function attack(ns: string, address: string, port: number): { last: () => AttackReport } {
  const child = spawn(
    'ip',
    [
      'netns',
      'exec',
      ns,
      process.execPath,
      '-e',
      ATTACKER,
      address,
      String(port),
      `${CONNECTIONS}`,
    ],
    { stdio: ['ignore', 'pipe', 'inherit'] },
  );
  attackers.push(child);
  let last: AttackReport = { attempts: 0, open: 0, closed: 0 };
  let buffered = '';
  child.stdout?.on('data', (d: Buffer) => {
    buffered += d.toString();
    const lines = buffered.split('\n');
    buffered = lines.pop() ?? '';
    for (const line of lines) if (line) last = JSON.parse(line) as AttackReport;
  });
  return { last: () => last };
}

describe.skipIf(!available)('multicast state-transfer server under a connection flood', () => {
  beforeAll(async () => {
    lan = await createLan(3);
  }, 60_000);

  it('1,000 unauthenticated connections: at most 4 from that address held, each closed at its deadline, and a joiner still gets all 5,000 sessions', async () => {
    const port = 47031;
    const l = lan as Lan;
    const h1 = await host(0, port);
    expect((await call(h1, 'POST', '/bulk?n=5000&prefix=held-')).body.written).toBe(5000);
    const { syncPort } = (await stats(h1)).multicast;
    expect(syncPort).toBeGreaterThan(0);
    const flood = attack(l.hosts[1]?.ns as string, l.hosts[0]?.ipv4 as string, syncPort);
    // Every connection was tried; the server refused at once all but the few it may hold.
    await vi.waitFor(() => expect(flood.last().attempts).toBeGreaterThanOrEqual(CONNECTIONS), {
      timeout: 10_000,
      interval: 200,
    });
    await vi.waitFor(
      () => expect(flood.last().open, 'connections the attacker holds').toBeLessThanOrEqual(4),
      { timeout: 10_000, interval: 200 },
    );
    const during = (await stats(h1)).multicast;
    expect(during.rejected.connections).toBeGreaterThanOrEqual(CONNECTIONS - 4);
    expect(during.syncWaiting, 'unauthenticated connections held').toBeLessThanOrEqual(4);

    // A real node joins while the flood goes on, and gets everything.
    const h3 = await host(2, port);
    for (const sid of ['held-0', 'held-2500', 'held-4999']) {
      expect((await call(h3, 'GET', `/has?sid=${sid}`)).body.found, sid).toBe(true);
    }
    const digest = (await call(h3, 'GET', '/digest')).body;
    expect(digest.sessions, 'sessions the joiner holds').toBe(5000);
    const served = (await stats(h1)).multicast.served;
    expect(served, 'transfers served by host 1').toBeGreaterThanOrEqual(1);

    // Trickling a byte a second does not keep a connection: each is closed at its deadline.
    await vi.waitFor(
      async () => expect((await stats(h1)).multicast.rejected.deadline).toBeGreaterThanOrEqual(1),
      { timeout: 15_000, interval: 250 },
    );
    const after = (await stats(h1)).multicast;
    expect(after.syncWaiting).toBeLessThanOrEqual(4);
    expect(after.rejected.auth + after.rejected.malformed, 'nothing got as far as a frame').toBe(0);
  }, 120_000);
});
