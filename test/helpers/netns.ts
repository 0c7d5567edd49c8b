/**
 * A LAN of "hosts" on this one machine, for system tests of replication between machines: every
 * host is a Linux network namespace whose `eth0` is one end of a veth pair; the other end sits in
 * a switch namespace, attached to a bridge (`br0`, multicast snooping off, so every multicast
 * datagram is flooded to every port, like a plain switch). Host i (1-based) has 10.77.0.<i>/24 and,
 * with `ipv6`, fd77::<i>/64 on eth0. There is no default route and no multicast route: code under
 * test has to pick the outgoing interface itself, as on a real machine with several interfaces.
 *
 * Nothing is made in the root namespace: veth pairs are created inside the switch namespace with
 * their host end moved straight into its host namespace, so no interface, address, route or rule
 * of this machine changes, and test traffic stays inside the namespaces made here.
 *
 * createNamespace() makes a lone namespace instead (lo, and optionally an eth0 with a given address
 * whose veth peer is in the same namespace), for programs that bind fixed ports or addresses.
 *
 * Names: every namespace of a LAN starts with `smt<pid>x<counter>` (pid of the creating process),
 * so stale ones from a run that crashed are recognised and removed by the next createLan() (a lone
 * namespace is `smt<pid>xs<counter>`, removed the same way, also by createNamespace()).
 *
 * What selects the interface for multicast in Node (checked on Linux; the product needs the same):
 * - IPv4: the interface's own address, `socket.setMulticastInterface('10.77.0.1')` (after bind)
 *   and `socket.addMembership('228.0.0.5', '10.77.0.2')`. Without it, with no multicast route,
 *   send fails with ENETUNREACH and addMembership with ENODEV.
 * - IPv6: a scope id, `'::%eth0'` (name) or `'::%2'` (index): `setMulticastInterface('::%eth0')`
 *   and `addMembership('ffbe::43', '::%eth0')`. `'fd77::1%eth0'` works too, but only because of its
 *   `%eth0`: libuv keeps nothing of an IPv6 interface string but its scope id, so a plain address
 *   such as `'fd77::1'` means "interface 0" (the kernel's choice by route). With a second
 *   multicast-capable interface in the namespace, a plain address sent out the wrong one
 *   (EADDRNOTAVAIL) and joined on the wrong one (nothing received); `'::%eth0'` kept working.
 */
import { execFile, execFileSync } from 'node:child_process';
import { setTimeout as delay } from 'node:timers/promises';
import { promisify } from 'node:util';
import { isAlive } from './proc.js';

const run = promisify(execFile);

const PREFIX = 'smt';
const STALE = /^smt(\d+)x/;

export interface LanHost {
  /** Network namespace name; run a program there with `ip netns exec <ns> ...`. */
  readonly ns: string;
  /** 10.77.0.<i>, on eth0. */
  readonly ipv4: string;
  /** fd77::<i>, on eth0 (usable at once: no duplicate address detection); '' without `ipv6`. */
  readonly ipv6: string;
}

export interface ExecResult {
  readonly stdout: string;
  readonly stderr: string;
}

export interface Lan {
  /** Prefix of this LAN's namespaces, `smt<pid>x<counter>`. */
  readonly name: string;
  /** Namespace holding the bridge. */
  readonly switchNs: string;
  /** Every namespace this LAN made: the switch first, then the hosts in no fixed order. */
  readonly namespaces: readonly string[];
  /** Host i + 1 is hosts[i]. */
  readonly hosts: readonly LanHost[];
  /** Runs `ip netns exec <ns> ...args` (ns must be one of this LAN's) and resolves on exit 0. */
  exec(ns: string, args: readonly string[]): Promise<ExecResult>;
  /**
   * Drops `percent` (0-100] of the UDP datagrams every host receives on eth0, IPv4 and IPv6,
   * optionally only those to `port`, only at the hosts of index `at` (hosts[i]) and only those
   * sent by host index `from`. Rules add up: two calls of 10 drop about 19 %.
   */
  dropUdp(percent: number, opts?: { port?: number; at?: number[]; from?: number }): Promise<void>;
  /** Removes every rule dropUdp() added. */
  clearDrops(): Promise<void>;
  /**
   * Deletes every namespace this LAN made (which removes its interfaces). Kills nothing: stop the
   * programs running in the hosts first, a namespace lives on while a process is inside it.
   * Idempotent; never throws.
   */
  destroy(): Promise<void>;
}

let counter = 0;
const lans = new Set<Lan>();
/** undefined: not probed yet; null: works; a string: why not. */
let netnsReason: string | null | undefined;
let iptablesReason: string | null | undefined;

/**
 * Whether network namespaces with a bridge and veth pairs can be made here (root, iproute2,
 * kernel support), probed once with a throwaway namespace. Tests that need them are skipped, by
 * name, when not, except under REQUIRE_SYSTEM_TESTS=1 (CI), where that is an error: a skipped
 * test must never pass silently there.
 */
export function hasNetns(): boolean {
  if (netnsReason === undefined) netnsReason = probeNetns();
  return required(netnsReason);
}

/**
 * Whether dropUdp() works: iptables and ip6tables installed (`apt-get install iptables`; Debian's
 * is the nf_tables backend, which works inside a namespace) with the `statistic` match, probed in
 * a throwaway namespace. Needs hasNetns(); same REQUIRE_SYSTEM_TESTS rule.
 */
export function hasIptables(): boolean {
  if (!hasNetns()) return false;
  if (iptablesReason === undefined) iptablesReason = probeIptables();
  return required(iptablesReason);
}

function required(reason: string | null): boolean {
  if (reason !== null && process.env.REQUIRE_SYSTEM_TESTS === '1') {
    throw new Error(`REQUIRE_SYSTEM_TESTS=1 but ${reason} (see .ci/run)`);
  }
  return reason === null;
}

function probeNetns(): string | null {
  if (process.platform !== 'linux') return 'network namespaces need Linux';
  if (process.getuid?.() !== 0) return 'making network namespaces needs root';
  return withProbeNamespace((ns) => {
    ipSync(['-n', ns, 'link', 'add', 'br0', 'type', 'bridge', 'mcast_snooping', '0']);
    ipSync(['-n', ns, 'link', 'add', 'p1', 'type', 'veth', 'peer', 'name', 'eth0']);
    ipSync(['-n', ns, 'link', 'set', 'p1', 'master', 'br0']);
  });
}

function probeIptables(): string | null {
  return withProbeNamespace((ns) => {
    for (const tool of ['iptables', 'ip6tables']) {
      try {
        execFileSync(
          'ip',
          ['netns', 'exec', ns, tool, '-w', '-A', 'INPUT', ...udpDropRule('0.5', undefined)],
          { stdio: ['ignore', 'ignore', 'pipe'] },
        );
      } catch (error) {
        throw new Error(
          `${tool} with the statistic match does not work in a namespace (apt-get install iptables): ${errorText(error)}`,
        );
      }
    }
  });
}

/** Runs `body` with a fresh namespace, deleted afterwards; the reason it failed, or null. */
function withProbeNamespace(body: (ns: string) => void): string | null {
  const ns = `${PREFIX}${process.pid}xprobe`;
  try {
    ipSync(['netns', 'add', ns]);
  } catch (error) {
    const code = (error as NodeJS.ErrnoException).code;
    return code === 'ENOENT'
      ? '"ip" (iproute2) is not installed'
      : `"ip netns add" fails: ${errorText(error)}`;
  }
  try {
    body(ns);
    return null;
  } catch (error) {
    return errorText(error);
  } finally {
    try {
      ipSync(['netns', 'del', ns]);
    } catch {
      // removed by the next createLan() as stale, once this process is gone
    }
  }
}

function ipSync(args: string[]): void {
  execFileSync('ip', args, { stdio: ['ignore', 'ignore', 'pipe'] });
}

function errorText(error: unknown): string {
  const stderr = (error as { stderr?: unknown }).stderr;
  const text = stderr === undefined || stderr === null ? '' : String(stderr).trim();
  if (text !== '') return text;
  return error instanceof Error ? error.message : String(error);
}

async function ip(args: string[]): Promise<void> {
  await run('ip', args);
}

/** `-i eth0 -p udp [--dport port] -m statistic ... -j DROP`: datagrams from the LAN, not lo. */
function udpDropRule(probability: string, port: number | undefined): string[] {
  return [
    '-i',
    'eth0',
    '-p',
    'udp',
    ...(port === undefined ? [] : ['--dport', String(port)]),
    '-m',
    'statistic',
    '--mode',
    'random',
    '--probability',
    probability,
    '-j',
    'DROP',
  ];
}

/** `ip netns del`, retried a little; never throws (a namespace already gone is fine). */
async function removeNamespace(ns: string): Promise<void> {
  for (let attempt = 0; attempt < 3; attempt++) {
    try {
      await ip(['netns', 'del', ns]);
      return;
    } catch {
      if (!(await namespaceNames()).includes(ns)) return;
      await delay(100);
    }
  }
}

/** Names in `ip netns list` (lines look like `name (id: 3)` or `name`). */
export async function namespaceNames(): Promise<string[]> {
  try {
    const { stdout } = await run('ip', ['netns', 'list']);
    return stdout
      .split('\n')
      .map((line) => line.trim().split(/\s+/)[0] ?? '')
      .filter((name) => name !== '');
  } catch {
    return [];
  }
}

/** Deletes namespaces left by earlier runs: named `smt<pid>x...` for a pid that is gone. */
async function removeStale(): Promise<void> {
  const stale = (await namespaceNames()).filter((name) => {
    const pid = Number(STALE.exec(name)?.[1]);
    return Number.isInteger(pid) && pid > 0 && pid !== process.pid && !isAlive(pid);
  });
  await Promise.all(stale.map(removeNamespace));
}

/** Polls until every bridge port of `switchNs` (if any) forwards and every host's eth0 is up. */
async function waitUntilUp(switchNs: string | undefined, hostNs: readonly string[]): Promise<void> {
  const deadline = Date.now() + 5_000;
  for (;;) {
    const ports: { state?: string }[] =
      switchNs === undefined
        ? []
        : JSON.parse((await run('bridge', ['-n', switchNs, '-j', 'link', 'show'])).stdout);
    const forwarding = ports.filter((p) => p.state === 'forwarding');
    const states = await Promise.all(
      hostNs.map(async (ns) => {
        const { stdout } = await run('ip', ['-n', ns, '-j', 'link', 'show', 'eth0']);
        return (JSON.parse(stdout) as { operstate?: string }[])[0]?.operstate;
      }),
    );
    const bridged = switchNs === undefined || forwarding.length === hostNs.length;
    if (bridged && states.every((s) => s === 'UP')) return;
    if (Date.now() > deadline) {
      throw new Error(
        `LAN not up after 5 s: ${forwarding.length}/${hostNs.length} bridge ports forwarding, eth0 states ${states.join(', ')}`,
      );
    }
    await delay(20);
  }
}

/**
 * Builds a LAN of `count` hosts (1 to 250). Call `destroy()` in afterAll (after stopping what runs
 * in the hosts); if building fails half way, what was made is removed before it rejects.
 */
export async function createLan(count: number, opts: { ipv6?: boolean } = {}): Promise<Lan> {
  if (!Number.isInteger(count) || count < 1 || count > 250) {
    throw new RangeError(`createLan: count must be an integer from 1 to 250, got ${count}`);
  }
  await removeStale();
  counter += 1;
  const name = `${PREFIX}${process.pid}x${counter}`;
  const switchNs = `${name}sw`;
  const ipv6 = opts.ipv6 === true;
  const hosts: LanHost[] = Array.from({ length: count }, (_, k) => ({
    ns: `${name}h${k + 1}`,
    ipv4: `10.77.0.${k + 1}`,
    ipv6: ipv6 ? `fd77::${k + 1}` : '',
  }));
  const made: string[] = [];
  let destroying: Promise<void> | undefined;

  const lan: Lan = {
    name,
    switchNs,
    namespaces: made,
    hosts,
    async exec(ns, args) {
      if (!made.includes(ns)) throw new Error(`${ns} is not a namespace of LAN ${name}`);
      const { stdout, stderr } = await run('ip', ['netns', 'exec', ns, ...args], {
        maxBuffer: 64 * 1024 * 1024,
      });
      return { stdout, stderr };
    },
    async dropUdp(percent, dropOpts = {}) {
      if (!Number.isFinite(percent) || percent <= 0 || percent > 100) {
        throw new RangeError(`dropUdp: percent must be in (0, 100], got ${percent}`);
      }
      const rule = udpDropRule(String(percent / 100), dropOpts.port);
      const sender = dropOpts.from === undefined ? undefined : hosts[dropOpts.from];
      if (dropOpts.from !== undefined && !sender) throw new RangeError('dropUdp: no such host');
      const at = dropOpts.at ? dropOpts.at.map((i) => hosts[i]) : hosts;
      await Promise.all(
        at.flatMap((h) => {
          if (!h) throw new RangeError('dropUdp: no such host');
          const tools: [string, string[]][] = sender
            ? [
                ['iptables', ['-s', sender.ipv4]],
                ...(sender.ipv6 ? [['ip6tables', ['-s', sender.ipv6]] as [string, string[]]] : []),
              ]
            : [
                ['iptables', []],
                ['ip6tables', []],
              ];
          return tools.map(([tool, source]) =>
            lan.exec(h.ns, [tool, '-w', '-A', 'INPUT', ...source, ...rule]),
          );
        }),
      );
    },
    async clearDrops() {
      await Promise.all(
        hosts.flatMap((h) =>
          ['iptables', 'ip6tables'].map((tool) => lan.exec(h.ns, [tool, '-w', '-F', 'INPUT'])),
        ),
      );
    },
    destroy() {
      destroying ??= (async () => {
        lans.delete(lan);
        await Promise.all(made.map(removeNamespace));
      })();
      return destroying;
    },
  };
  lans.add(lan);

  try {
    await ip(['netns', 'add', switchNs]);
    made.push(switchNs);
    await ip(['-n', switchNs, 'link', 'set', 'lo', 'up']);
    await ip([
      '-n',
      switchNs,
      'link',
      'add',
      'br0',
      'type',
      'bridge',
      'stp_state',
      '0',
      'forward_delay',
      '0',
      'mcast_snooping',
      '0',
    ]);
    await ip(['-n', switchNs, 'link', 'set', 'br0', 'up']);
    const built = await Promise.allSettled(
      hosts.map(async (host, k) => {
        const port = `p${k + 1}`;
        await ip(['netns', 'add', host.ns]);
        made.push(host.ns);
        // Made in the switch namespace, host end moved straight into the host: never in root.
        await ip([
          '-n',
          switchNs,
          'link',
          'add',
          port,
          'type',
          'veth',
          'peer',
          'name',
          'eth0',
          'netns',
          host.ns,
        ]);
        await ip(['-n', switchNs, 'link', 'set', port, 'master', 'br0', 'up']);
        await ip(['-n', host.ns, 'link', 'set', 'lo', 'up']);
        await ip(['-n', host.ns, 'addr', 'add', `${host.ipv4}/24`, 'dev', 'eth0']);
        if (ipv6) {
          await ip(['-n', host.ns, 'addr', 'add', `${host.ipv6}/64`, 'dev', 'eth0', 'nodad']);
        }
        await ip(['-n', host.ns, 'link', 'set', 'eth0', 'up']);
      }),
    );
    const failed = built.find((r): r is PromiseRejectedResult => r.status === 'rejected');
    if (failed !== undefined) throw failed.reason;
    await waitUntilUp(
      switchNs,
      hosts.map((h) => h.ns),
    );
  } catch (error) {
    await lan.destroy();
    throw error;
  }
  return lan;
}

/** Destroys every LAN this process made and has not destroyed yet. Never throws. */
export async function destroyAllLans(): Promise<void> {
  await Promise.all([...lans].map((lan) => lan.destroy()));
}

export interface Namespace {
  /** `smt<pid>xs<counter>`; run a program there with `ip netns exec <name> ...`. */
  readonly name: string;
  /** Runs `ip netns exec <name> ...args` and resolves on exit 0. */
  exec(args: readonly string[]): Promise<ExecResult>;
  /** Deletes the namespace. Kills nothing: stop its programs first. Idempotent; never throws. */
  destroy(): Promise<void>;
}

/**
 * One namespace on its own, for a program that binds fixed ports or names a fixed interface
 * address (the README's examples): `lo` up and, with `address` (CIDR, e.g. '10.1.0.81/24'), an
 * `eth0` holding it, one end of a veth pair whose other end (`peer0`, no address) is in the same
 * namespace, so what is sent out of eth0, multicast included, stays in it. No route but the
 * address's own. Call `destroy()` in a teardown hook, after stopping what runs there; if building
 * fails half way, the namespace is removed before it rejects.
 */
export async function createNamespace(opts: { address?: string } = {}): Promise<Namespace> {
  await removeStale();
  counter += 1;
  const name = `${PREFIX}${process.pid}xs${counter}`;
  let destroying: Promise<void> | undefined;
  const ns: Namespace = {
    name,
    async exec(args) {
      const { stdout, stderr } = await run('ip', ['netns', 'exec', name, ...args]);
      return { stdout, stderr };
    },
    destroy() {
      destroying ??= removeNamespace(name);
      return destroying;
    },
  };
  await ip(['netns', 'add', name]);
  try {
    await ip(['-n', name, 'link', 'set', 'lo', 'up']);
    if (opts.address !== undefined) {
      await ip(['-n', name, 'link', 'add', 'eth0', 'type', 'veth', 'peer', 'name', 'peer0']);
      await ip(['-n', name, 'addr', 'add', opts.address, 'dev', 'eth0']);
      await ip(['-n', name, 'link', 'set', 'peer0', 'up']);
      await ip(['-n', name, 'link', 'set', 'eth0', 'multicast', 'on', 'up']);
      await waitUntilUp(undefined, [name]);
    }
  } catch (error) {
    await ns.destroy();
    throw error;
  }
  return ns;
}
