// Self-test of test/helpers/netns.ts: a 3-host LAN of network namespaces carries IPv4 and IPv6
// multicast and TCP between hosts, dropUdp() loses the share of UDP it is told to, and nothing of
// it shows in the root namespace or outlives destroy().
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createLan, hasIptables, hasNetns, type Lan, namespaceNames } from '../helpers/netns.js';

const run = promisify(execFile);
const available = hasNetns();
const iptables = available && hasIptables();

const GROUP4 = '228.0.0.5';
const GROUP6 = 'ffbe::43';
const PORT = 41_234;
const TCP_PORT = 41_300;

// recv <group> <iface> <port>: joins the group on iface, prints a line per datagram.
// send <dest> <iface|-> <port> <count> <tag>: sends `tag:<n>` datagrams, paced, TTL 1.
// serve <port> <addr>...: TCP, answers every connection with "pong <addr>".
// connect <addr> <port>: prints the answer.
const SCRIPT = `
import dgram from 'node:dgram';
import net from 'node:net';
const [mode, ...args] = process.argv.slice(2);
const print = (line) => process.stdout.write(JSON.stringify(line) + '\\n');
const type = (addr) => (addr.includes(':') ? 'udp6' : 'udp4');
if (mode === 'recv') {
  const [group, iface, port] = args;
  const socket = dgram.createSocket({ type: type(group), reuseAddr: true });
  socket.on('message', (data, from) => print({ event: 'msg', data: data.toString(), from: from.address }));
  socket.bind(Number(port), () => {
    socket.addMembership(group, iface);
    print({ event: 'ready' });
  });
} else if (mode === 'send') {
  const [dest, iface, port, count, tag] = args;
  const socket = dgram.createSocket({ type: type(dest), reuseAddr: true });
  socket.bind(0, async () => {
    if (iface !== '-') socket.setMulticastInterface(iface);
    socket.setMulticastTTL(1);
    for (let n = 0; n < Number(count); n++) {
      await new Promise((resolve, reject) =>
        socket.send(tag + ':' + n, Number(port), dest, (e) => (e ? reject(e) : resolve())));
      if (n % 10 === 9) await new Promise((resolve) => setTimeout(resolve, 4));
    }
    socket.close();
    print({ event: 'sent', count: Number(count) });
  });
} else if (mode === 'serve') {
  const [port, ...addrs] = args;
  let listening = 0;
  for (const addr of addrs) {
    const server = net.createServer((c) => c.end('pong ' + addr));
    server.listen(Number(port), addr, () => {
      if (++listening === addrs.length) print({ event: 'ready' });
    });
  }
} else if (mode === 'connect') {
  const [addr, port] = args;
  let data = '';
  net.connect(Number(port), addr).setEncoding('utf8')
    .on('data', (chunk) => { data += chunk; })
    .on('end', () => print({ event: 'reply', data }));
}
`;

interface Line {
  event: string;
  data?: string;
  from?: string;
}

/** A long-running program in a namespace, with the JSON lines it printed. */
class NsProgram {
  readonly lines: Line[] = [];
  readonly exited: Promise<void>;
  private readonly child: ChildProcess;
  private stderr = '';

  constructor(ns: string, args: string[]) {
    this.child = spawn('ip', ['netns', 'exec', ns, process.execPath, ...args], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let partial = '';
    this.child.stdout?.setEncoding('utf8').on('data', (chunk: string) => {
      const parts = (partial + chunk).split('\n');
      partial = parts.pop() ?? '';
      for (const part of parts) {
        try {
          this.lines.push(JSON.parse(part) as Line);
        } catch {
          this.stderr += `(not JSON) ${part}\n`;
        }
      }
    });
    this.child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      this.stderr += chunk;
    });
    this.exited = new Promise((resolve) => this.child.once('exit', () => resolve()));
  }

  /** Datagram payloads received that start with `tag:`. */
  received(tag: string): string[] {
    return this.lines
      .filter((l) => l.event === 'msg' && l.data?.startsWith(`${tag}:`))
      .map((l) => l.data ?? '');
  }

  async waitFor(check: () => boolean, what: string, timeoutMs = 5_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    while (!check()) {
      if (this.child.exitCode !== null || this.child.signalCode !== null || Date.now() > deadline) {
        throw new Error(
          `${what}: not seen. stdout ${JSON.stringify(this.lines)} stderr ${this.stderr}`,
        );
      }
      await delay(10);
    }
  }

  async kill(): Promise<void> {
    if (this.child.exitCode === null && this.child.signalCode === null) this.child.kill('SIGKILL');
    await this.exited;
  }
}

async function rootState(): Promise<{ links: string[]; addrs: string }> {
  const links = (await run('ip', ['-o', 'link', 'show'])).stdout
    .split('\n')
    .filter((l) => l !== '')
    .map((l) => (l.split(':')[1] ?? '').trim().split('@')[0] ?? '');
  const addrs = (await run('ip', ['-o', 'addr', 'show'])).stdout;
  return { links, addrs };
}

describe.skipIf(!available)('netns harness: a LAN of namespaces', () => {
  const programs = new Set<NsProgram>();
  let dir = '';
  let script = '';
  let current: Lan | undefined;
  let rootBefore: { links: string[]; addrs: string };
  let receivers4: NsProgram[] = [];
  let receivers6: NsProgram[] = [];

  function start(ns: string, args: string[]): NsProgram {
    const program = new NsProgram(ns, [script, ...args]);
    programs.add(program);
    return program;
  }

  async function stopAll(): Promise<void> {
    await Promise.all([...programs].map((p) => p.kill()));
    programs.clear();
  }

  function lan(): Lan {
    if (current === undefined) throw new Error('no LAN');
    return current;
  }

  function host(n: number) {
    const h = lan().hosts[n - 1];
    if (h === undefined) throw new Error(`no host ${n}`);
    return h;
  }

  /** Host 1 sends `count` datagrams tagged `tag` to the IPv4 or IPv6 group. */
  async function send(v: 4 | 6, tag: string, count = 1): Promise<void> {
    const [dest, iface] = v === 4 ? [GROUP4, host(1).ipv4] : [GROUP6, '::%eth0'];
    await lan().exec(host(1).ns, [
      process.execPath,
      script,
      'send',
      dest,
      iface,
      String(PORT),
      String(count),
      tag,
    ]);
  }

  beforeAll(async () => {
    dir = mkdtempSync(join(tmpdir(), 'sticky-mesh-netns-harness-'));
    script = join(dir, 'probe.mjs');
    writeFileSync(script, SCRIPT);
    rootBefore = await rootState();
    current = await createLan(3, { ipv6: true });
    receivers4 = [2, 3].map((n) => start(host(n).ns, ['recv', GROUP4, host(n).ipv4, String(PORT)]));
    receivers6 = [2, 3].map((n) => start(host(n).ns, ['recv', GROUP6, '::%eth0', String(PORT)]));
    await Promise.all(
      [...receivers4, ...receivers6].map((r) =>
        r.waitFor(() => r.lines.some((l) => l.event === 'ready'), 'receiver ready'),
      ),
    );
  });

  afterAll(async () => {
    await stopAll();
    await current?.destroy();
    if (dir !== '') rmSync(dir, { recursive: true, force: true });
  });

  it('makes one namespace per host plus a switch, each host with eth0 and its addresses', async () => {
    expect(lan().hosts.map((h) => [h.ipv4, h.ipv6])).toEqual([
      ['10.77.0.1', 'fd77::1'],
      ['10.77.0.2', 'fd77::2'],
      ['10.77.0.3', 'fd77::3'],
    ]);
    expect(lan().name).toMatch(new RegExp(`^smt${process.pid}x\\d+$`));
    const listed = await namespaceNames();
    for (const ns of [lan().switchNs, ...lan().hosts.map((h) => h.ns)])
      expect(listed).toContain(ns);
    const { stdout } = await lan().exec(host(2).ns, ['ip', '-o', 'addr', 'show', 'dev', 'eth0']);
    expect(stdout).toContain('inet 10.77.0.2/24');
    expect(stdout).toContain('inet6 fd77::2/64');
    // No default route and no multicast route: code under test must pick the interface.
    const routes = await lan().exec(host(2).ns, ['ip', '-4', 'route', 'show', 'table', 'all']);
    expect(routes.stdout).not.toMatch(/^default|^multicast|224\.0\.0\.0/m);
  });

  it('leaves the root namespace untouched', async () => {
    const now = await rootState();
    expect(now.links).toEqual(rootBefore.links);
    expect(now.links.filter((l) => l.startsWith('smt'))).toEqual([]);
    expect(now.addrs).toBe(rootBefore.addrs);
    expect(now.addrs).not.toMatch(/10\.77\.0\.|fd77::/);
  });

  it('carries IPv4 multicast from host 1 to hosts 2 and 3', async () => {
    await send(4, 'v4');
    for (const r of receivers4) {
      await r.waitFor(() => r.received('v4').length === 1, 'IPv4 multicast datagram');
      expect(r.lines.find((l) => l.data === 'v4:0')?.from).toBe('10.77.0.1');
    }
  });

  it("carries IPv6 multicast from host 1 to hosts 2 and 3 with the interface as '::%eth0'", async () => {
    await send(6, 'v6');
    for (const r of receivers6) {
      await r.waitFor(() => r.received('v6').length === 1, 'IPv6 multicast datagram');
      expect(r.lines.find((l) => l.data === 'v6:0')?.from).toBe('fd77::1');
    }
  });

  it('carries TCP from host 1 to a server on host 2 (IPv4 and IPv6)', async () => {
    const server = start(host(2).ns, ['serve', String(TCP_PORT), '10.77.0.2', 'fd77::2']);
    await server.waitFor(() => server.lines.some((l) => l.event === 'ready'), 'server ready');
    for (const addr of ['10.77.0.2', 'fd77::2']) {
      const { stdout } = await lan().exec(host(1).ns, [
        process.execPath,
        script,
        'connect',
        addr,
        String(TCP_PORT),
      ]);
      expect(JSON.parse(stdout)).toEqual({ event: 'reply', data: `pong ${addr}` });
    }
    await server.kill();
  });

  it.skipIf(!iptables)(
    'dropUdp(100) stops every datagram; clearDrops() restores delivery',
    async () => {
      // A rule for another port leaves this one alone.
      await lan().dropUdp(100, { port: PORT + 1 });
      await send(4, 'other-port');
      for (const r of receivers4) {
        await r.waitFor(() => r.received('other-port').length === 1, 'datagram to another port');
      }
      await lan().dropUdp(100);
      await send(4, 'blocked', 3);
      await send(6, 'blocked', 3);
      await delay(500);
      for (const r of [...receivers4, ...receivers6]) expect(r.received('blocked')).toEqual([]);
      await lan().clearDrops();
      await send(4, 'restored');
      await send(6, 'restored');
      for (const r of [...receivers4, ...receivers6]) {
        await r.waitFor(() => r.received('restored').length === 1, 'datagram after clearDrops');
      }
    },
  );

  it.skipIf(!iptables)('dropUdp(10) drops about a tenth of 500 datagrams', async () => {
    await lan().dropUdp(10, { port: PORT });
    try {
      await send(4, 'lossy', 500);
      await send(6, 'lossy', 500);
      // Settled once no receiver has had anything new for 300 ms.
      let last = -1;
      for (let i = 0; i < 50; i++) {
        const total = [...receivers4, ...receivers6].reduce(
          (sum, r) => sum + r.received('lossy').length,
          0,
        );
        if (total === last) break;
        last = total;
        await delay(300);
      }
    } finally {
      await lan().clearDrops();
    }
    for (const r of [...receivers4, ...receivers6]) {
      const got = r.received('lossy');
      expect(new Set(got).size).toBe(got.length);
      const lost = 500 - got.length;
      expect(lost).toBeGreaterThanOrEqual(10);
      expect(lost).toBeLessThanOrEqual(125);
    }
  });

  it('destroy() removes every namespace it made and is idempotent', async () => {
    await stopAll();
    const names = [...lan().namespaces];
    expect(names).toHaveLength(4);
    await lan().destroy();
    await lan().destroy();
    const listed = await namespaceNames();
    expect(listed.filter((ns) => names.includes(ns))).toEqual([]);
    expect(listed.filter((ns) => ns.startsWith(`smt${process.pid}x`))).toEqual([]);
    const now = await rootState();
    expect(now.links).toEqual(rootBefore.links);
  });
});
