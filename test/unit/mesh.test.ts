import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { DATAGRAM_BUDGET } from '../../src/replication/transports/multicast/stream.js';
import {
  HOUR,
  type MeshHandle,
  MeshNet,
  type NetOptions,
  TEST_TIMINGS,
} from '../helpers/mesh-net.js';

const { heartbeatInterval, failureTimeout, joinTimeout, syncTimeout } = TEST_TIMINGS;

let nets: MeshNet[] = [];
function network(options: NetOptions = {}): MeshNet {
  const n = new MeshNet(options);
  nets.push(n);
  return n;
}

beforeEach(() => {
  vi.useFakeTimers({
    toFake: [
      'setTimeout',
      'clearTimeout',
      'setInterval',
      'clearInterval',
      'setImmediate',
      'clearImmediate',
      'Date',
    ],
  });
  vi.setSystemTime(1_700_000_000_000);
});

afterEach(() => {
  for (const n of nets) n.closeAll();
  nets = [];
  vi.clearAllTimers();
  vi.useRealTimers();
});

/** Starts `count` nodes one after the other, each synced before the next starts. */
async function cluster(net: MeshNet, count: number): Promise<MeshHandle[]> {
  const out: MeshHandle[] = [];
  for (let i = 0; i < count; i++) {
    const h = net.add();
    out.push(h);
    for (let t = 0; !h.node.synced && t < 20 * joinTimeout; t += 10) await net.run(10);
    expect(h.node.synced, `node ${i} synced`).toBe(true);
  }
  // Everyone has heard everyone's heartbeat.
  await net.run(2 * heartbeatInterval);
  return out;
}

function json(size: number, tag: string): string {
  const pad = size > 40 ? 'x'.repeat(size - 30) : '';
  return JSON.stringify({ tag, pad });
}

describe('mesh membership', () => {
  it('a node alone announces itself, then becomes synced after joinTimeout', async () => {
    const net = network();
    const a = net.add();
    let ready = false;
    void a.node.ready().then(() => {
      ready = true;
    });
    expect(a.node.phase).toBe('joining');
    await net.run(joinTimeout - 1);
    expect(a.node.synced).toBe(false);
    expect(ready).toBe(false);
    expect(net.count('join', a)).toBeGreaterThanOrEqual(2);
    await net.run(1);
    expect(a.node.synced).toBe(true);
    expect(ready).toBe(true);
    expect(a.logs.join('\n')).toMatch(/no peer answered/);
    // No more joins once synced; heartbeats from now on.
    const joins = net.count('join', a);
    await net.run(5 * heartbeatInterval);
    expect(net.count('join', a)).toBe(joins);
    expect(net.count('heartbeat', a)).toBeGreaterThanOrEqual(5);
  });

  it('a joiner is greeted and fetches the state: writes made before it joined are present', async () => {
    const net = network();
    const [a] = (await cluster(net, 1)) as [MeshHandle];
    for (let i = 0; i < 300; i++) a.set(`s${i}`, json(80, `v${i}`));
    a.set('big', json(20_000, 'big'));
    a.destroy('s7');
    a.touch('s8', 2 * 3_600_000);
    await net.run(10);
    const b = net.add();
    let readyAt = -1;
    const t0 = Date.now();
    void b.node.ready().then(() => {
      readyAt = Date.now() - t0;
    });
    for (let t = 0; !b.node.synced && t < joinTimeout; t += 1) await net.run(1);
    expect(b.node.synced).toBe(true);
    // Greeted: it did not wait for joinTimeout.
    expect(readyAt).toBeGreaterThanOrEqual(0);
    expect(readyAt).toBeLessThan(joinTimeout);
    expect(net.count('greet', a)).toBeGreaterThanOrEqual(1);
    expect(net.fetches).toEqual([{ from: b.id, to: a.id, ok: true }]);
    expect(b.table.get('s7')).toBeUndefined();
    expect(b.table.get('big')).toBe(json(20_000, 'big'));
    expect(b.table.record('s8')?.expiresAt).toBe(a.table.record('s8')?.expiresAt);
    expect(b.live()).toHaveLength(300);
    expect(net.converged()).toBe(true);
    // Both know each other, and later writes flow both ways.
    await net.run(2 * heartbeatInterval);
    expect(a.peerIds()).toEqual([b.id]);
    expect(b.peerIds()).toEqual([a.id]);
    b.set('from-b', '{}');
    a.set('from-a', '{}');
    await net.run(5);
    expect(a.table.get('from-b')).toBe('{}');
    expect(b.table.get('from-a')).toBe('{}');
  });

  it('writes made while a joiner fetches the state reach it too', async () => {
    const net = network({ chunkSize: 10 });
    const [a] = (await cluster(net, 1)) as [MeshHandle];
    for (let i = 0; i < 500; i++) a.set(`s${i}`, json(60, `v${i}`));
    await net.run(1);
    const b = net.add();
    // Keep writing on A while B's transfer streams (a timer tick per 10 changes).
    for (let i = 0; i < 60; i++) {
      a.set(`during${i}`, json(60, `d${i}`));
      if (i % 7 === 0) a.destroy(`s${i}`);
      await net.run(1);
    }
    expect(await net.settle(1000, 10)).toBeGreaterThanOrEqual(0);
    expect(b.node.synced).toBe(true);
    expect(b.live()).toEqual(a.live());
    // Got there with the one transfer and the datagrams, nothing else.
    expect(net.fetches.filter((f) => f.from === b.id)).toHaveLength(1);
  });

  it('heartbeats keep peers that write nothing', async () => {
    const net = network();
    const [a, b, c] = (await cluster(net, 3)) as [MeshHandle, MeshHandle, MeshHandle];
    await net.run(10 * failureTimeout);
    expect(a.peerIds()).toEqual([b.id, c.id].sort());
    expect(b.peerIds()).toEqual([a.id, c.id].sort());
    expect(c.peerIds()).toEqual([a.id, b.id].sort());
    for (const p of a.node.peerList()) {
      expect(Date.now() - p.lastSeen).toBeLessThanOrEqual(heartbeatInterval);
      expect(p.synced).toBe(true);
    }
  });

  it('a node killed silently is dropped by the others after failureTimeout', async () => {
    const net = network();
    const [a, b, c] = (await cluster(net, 3)) as [MeshHandle, MeshHandle, MeshHandle];
    net.kill(c);
    await net.run(failureTimeout - heartbeatInterval);
    expect(a.peerIds()).toContain(c.id);
    expect(b.peerIds()).toContain(c.id);
    await net.run(2 * heartbeatInterval + 1);
    expect(a.peerIds()).toEqual([b.id]);
    expect(b.peerIds()).toEqual([a.id]);
    expect(a.logs.join('\n')).toMatch(new RegExp(`peer ${c.id} .* timed out`));
  });

  it('close() says goodbye: peers drop the node at once', async () => {
    const net = network();
    const [a, b, c] = (await cluster(net, 3)) as [MeshHandle, MeshHandle, MeshHandle];
    net.close(c);
    expect(c.node.phase).toBe('closed');
    expect(net.count('leave', c)).toBe(1);
    await net.run(1);
    expect(a.peerIds()).toEqual([b.id]);
    expect(b.peerIds()).toEqual([a.id]);
    // Idempotent, and a closed node sends nothing more.
    c.node.close();
    const sent = net.sent.length;
    await net.run(3 * heartbeatInterval);
    expect(net.sent.slice(sent).filter((s) => s.from === c.id)).toEqual([]);
  });

  it('a leaving node lingers to repair its last datagram; without the linger it is lost', async () => {
    for (const linger of [true, false]) {
      const net = network();
      const [a, b] = (await cluster(net, 2)) as [MeshHandle, MeshHandle];
      b.set('last-words', '{"bye":true}');
      // The first copy of b's last data datagram never reaches a.
      let dropped = false;
      net.filter = (d) => {
        if (!dropped && d.msg.k === 'data' && d.from === b) {
          dropped = true;
          return false;
        }
        return true;
      };
      if (linger) await net.closeLingering(b, TEST_TIMINGS.leaveLinger);
      else net.close(b);
      await net.run(2 * TEST_TIMINGS.leaveLinger);
      expect(dropped).toBe(true);
      expect(a.table.get('last-words'), `linger ${linger}`).toBe(
        linger ? '{"bye":true}' : undefined,
      );
      expect(a.peerIds()).toEqual([]);
      net.closeAll();
    }
  });

  it('close() first flushes the changes not yet sent', async () => {
    const net = network();
    const [a, b] = (await cluster(net, 2)) as [MeshHandle, MeshHandle];
    b.set('last-words', '{"bye":true}');
    net.close(b);
    await net.run(1);
    expect(a.table.get('last-words')).toBe('{"bye":true}');
  });

  it('a joiner whose transfer fails tries another peer', async () => {
    const net = network();
    const [a, c] = (await cluster(net, 2)) as [MeshHandle, MeshHandle];
    for (let i = 0; i < 50; i++) (i % 2 ? a : c).set(`s${i}`, json(50, `${i}`));
    await net.run(10);
    let failed = false;
    net.failFetch = () => {
      if (failed) return false;
      failed = true;
      return true;
    };
    const b = net.add();
    for (let t = 0; !b.node.synced && t < syncTimeout; t += 10) await net.run(10);
    expect(b.node.synced).toBe(true);
    const mine = net.fetches.filter((f) => f.from === b.id);
    expect(mine).toHaveLength(2);
    expect(mine[0]?.ok).toBe(false);
    expect(mine[1]?.ok).toBe(true);
    expect(mine[1]?.to).not.toBe(mine[0]?.to);
    expect([a.id, c.id]).toContain(mine[1]?.to);
    expect(b.node.counters.transferFailures).toBe(1);
    expect(b.live()).toEqual(a.live());
  });

  it('a joiner that cannot fetch the state serves after syncTimeout, and syncs later', async () => {
    const net = network();
    const [a] = (await cluster(net, 1)) as [MeshHandle];
    for (let i = 0; i < 20; i++) a.set(`s${i}`, '{}');
    await net.run(10);
    a.serves = () => false;
    const b = net.add();
    let readyAt = -1;
    const t0 = Date.now();
    void b.node.ready().then(() => {
      readyAt = Date.now() - t0;
    });
    await net.run(syncTimeout - 10);
    expect(readyAt).toBe(-1);
    expect(b.node.phase).toBe('syncing');
    await net.run(20);
    expect(readyAt).toBe(syncTimeout);
    expect(b.node.synced).toBe(false);
    expect(b.logs.join('\n')).toMatch(/no session state transfer completed/);
    expect(b.node.counters.transferFailures).toBeGreaterThan(2);
    // Still trying: once A serves again, B gets the state.
    a.serves = () => true;
    for (let t = 0; !b.node.synced && t < 5000; t += 50) await net.run(50);
    expect(b.node.synced).toBe(true);
    expect(b.live()).toEqual(a.live());
  });

  it('a joiner whose greetings are all lost still fetches the state of a synced peer it heard', async () => {
    // A busy or lossy network can drop every greeting; the joiner meanwhile hears the synced
    // peer's heartbeats. It must not decide it is the first node and serve an empty table.
    const net = network();
    const [a] = (await cluster(net, 1)) as [MeshHandle];
    for (let i = 0; i < 100; i++) a.set(`s${i}`, json(60, `${i}`));
    await net.run(10);
    net.filter = (d) => d.msg.k !== 'greet';
    const b = net.add();
    let sessionsWhenReady = -1;
    void b.node.ready().then(() => {
      sessionsWhenReady = b.live().length;
    });
    for (let t = 0; sessionsWhenReady < 0 && t < syncTimeout; t += 10) await net.run(10);
    expect(b.peerIds()).toEqual([a.id]);
    expect(sessionsWhenReady, 'sessions held when ready() resolved').toBe(100);
  });

  it('nodes started together all decide they are first, then replicate', async () => {
    const net = network();
    const nodes = [net.add(), net.add(), net.add()];
    await net.run(joinTimeout + 2 * heartbeatInterval);
    for (const h of nodes) expect(h.node.synced).toBe(true);
    nodes.forEach((h, i) => {
      h.set(`s${i}`, `{"n":${i}}`);
    });
    await net.run(5);
    expect(net.converged()).toBe(true);
    expect(nodes[0]?.live()).toHaveLength(3);
  });
});

// ---- repair ------------------------------------------------------------------------------------

interface Workload {
  writes: number;
  sids: number;
  seed: number;
}

/**
 * `writes` random writes spread over the nodes, a few ms apart: sets (5% of them over a datagram,
 * so split in pieces), destroys and touches, on a pool of session ids shared by all the nodes (so
 * they also race on the same sessions).
 */
async function workload(net: MeshNet, nodes: MeshHandle[], w: Workload): Promise<number> {
  let state = w.seed >>> 0;
  const r = () => {
    state = (Math.imul(state, 1664525) + 1013904223) >>> 0;
    return state / 4294967296;
  };
  let large = 0;
  for (let i = 0; i < w.writes; i++) {
    const h = nodes[Math.floor(r() * nodes.length)] as MeshHandle;
    const sid = `sess-${Math.floor(r() * w.sids)}`;
    const p = r();
    if (p < 0.05) {
      large++;
      h.set(sid, json(DATAGRAM_BUDGET + Math.floor(r() * 5000), `${i}`));
    } else if (p < 0.55) {
      h.set(sid, json(40 + Math.floor(r() * 400), `${i}`));
    } else if (p < 0.7) {
      h.destroy(sid);
    } else if (h.table.get(sid) !== undefined) {
      h.touch(sid, 3_600_000 + i);
    } else {
      h.set(sid, json(60, `${i}`));
    }
    if (r() < 0.5) await net.run(Math.floor(r() * 6));
  }
  return large;
}

const LOSSY: NetOptions = { loss: 0.2, duplicate: 0.1, reorder: 0.3, maxDelay: 25 };
/** Fake ms the nodes get to converge once writes stop. */
const SETTLE = 60_000;

describe('mesh repair: lossy, duplicating, reordering network', () => {
  it('three nodes, 20% loss: after 500 writes every table is identical', async () => {
    const net = network({ ...LOSSY, seed: 7 });
    const nodes = await cluster(net, 3);
    const large = await workload(net, nodes, { writes: 500, sids: 150, seed: 11 });
    expect(large).toBeGreaterThan(10);
    expect(net.stats.lost).toBeGreaterThan(100);
    // Large changes went out in pieces over several datagrams.
    expect(net.sent.some((s) => s.msg.k === 'data' && s.msg.pieces.some((p) => p.offset > 0))).toBe(
      true,
    );
    const took = await net.settle(SETTLE);
    expect(took, 'converged').toBeGreaterThanOrEqual(0);
    const [a, b, c] = nodes as [MeshHandle, MeshHandle, MeshHandle];
    expect(b.table.digest).toBe(a.table.digest);
    expect(c.table.digest).toBe(a.table.digest);
    expect(b.live()).toEqual(a.live());
    expect(c.live()).toEqual(a.live());
    expect(a.live().length).toBeGreaterThan(20);
    // The repair machinery did the work: NACKs, retransmissions, duplicates dropped.
    const sum = (k: 'nacksSent' | 'nacksReceived' | 'retransmits' | 'duplicates') =>
      nodes.reduce((n, h) => n + h.node.counters[k], 0);
    expect(sum('nacksSent')).toBeGreaterThan(0);
    // The NACKs that arrived were counted by the nodes they asked.
    expect(sum('nacksReceived')).toBeGreaterThan(0);
    expect(sum('retransmits')).toBeGreaterThan(0);
    expect(sum('duplicates')).toBeGreaterThan(0);
    for (const h of nodes) expect(h.node.counters.malformed).toBe(0);
    // With every sender alive and its retransmit buffer large, NACKs alone repaired every loss:
    // no full transfer beyond the joins.
    expect(net.fetches.map((f) => f.ok)).toEqual([true, true]);
  });

  it.each([3, 99])('converges with other seeds too (seed %i)', async (seed) => {
    const net = network({ ...LOSSY, seed });
    const nodes = await cluster(net, 3);
    await workload(net, nodes, { writes: 300, sids: 60, seed: seed + 1 });
    expect(await net.settle(SETTLE)).toBeGreaterThanOrEqual(0);
  });

  it('negative control: with every NACK lost, the same run does not converge', async () => {
    const net = network({ ...LOSSY, seed: 7 });
    net.filter = (d) => d.msg.k !== 'nack';
    const nodes = await cluster(net, 3);
    await workload(net, nodes, { writes: 500, sids: 150, seed: 11 });
    expect(await net.settle(SETTLE, 1000)).toBe(-1);
  });

  it('a tiny retransmit buffer: "gone" answers, full fetches, and convergence', async () => {
    const net = network({ ...LOSSY, seed: 5, timings: { retransmitBuffer: 16 } });
    const nodes = await cluster(net, 3);
    await workload(net, nodes, { writes: 500, sids: 150, seed: 13 });
    expect(await net.settle(SETTLE)).toBeGreaterThanOrEqual(0);
    expect(net.count('gone')).toBeGreaterThan(0);
    const transfers = nodes.reduce((n, h) => n + h.node.counters.transfers, 0);
    // Beyond the two joins.
    expect(transfers).toBeGreaterThan(2);
    expect(nodes[1]?.live()).toEqual(nodes[0]?.live());
  });

  it('a node joining while writes flow on a lossy network converges with the rest', async () => {
    const net = network({ ...LOSSY, seed: 21 });
    const first = await cluster(net, 2);
    const writing = workload(net, first, { writes: 400, sids: 100, seed: 22 });
    await net.run(100);
    const late = net.add();
    await writing;
    expect(await net.settle(SETTLE)).toBeGreaterThanOrEqual(0);
    expect(late.node.synced).toBe(true);
    expect(late.live()).toEqual(first[0]?.live());
  });

  it('a change lost by one node whose sender died at once reaches it from a third node (digests)', async () => {
    const net = network();
    const [a, b, c] = (await cluster(net, 3)) as [MeshHandle, MeshHandle, MeshHandle];
    a.set('before', '{}');
    await net.run(5);
    expect(net.converged()).toBe(true);
    // A's next data datagram reaches B only; A dies before anyone can ask it again.
    net.filter = (d) => !(d.from === a && d.to === c && d.msg.k === 'data');
    a.set('orphan', '{"user":"ann"}');
    await net.run(1);
    net.kill(a);
    net.filter = () => true;
    await net.run(1);
    expect(b.table.get('orphan')).toBe('{"user":"ann"}');
    expect(c.table.get('orphan')).toBeUndefined();
    const took = await net.settle(20_000, 50);
    expect(took).toBeGreaterThanOrEqual(0);
    expect(c.table.get('orphan')).toBe('{"user":"ann"}');
    expect(c.table.digest).toBe(b.table.digest);
    expect(c.logs.join('\n')).toMatch(/sessions differ from peer/);
    // Both drop the dead sender.
    await net.run(failureTimeout + heartbeatInterval);
    expect(b.peerIds()).toEqual([c.id]);
    expect(c.peerIds()).toEqual([b.id]);
  });

  it('replicas that differ merge both ways (each has a change the other lacks)', async () => {
    const net = network();
    const [a, b, c] = (await cluster(net, 3)) as [MeshHandle, MeshHandle, MeshHandle];
    // Two writes that each reach only one of B and C, their senders dead before repair.
    net.filter = (d) =>
      !(d.msg.k === 'data' && ((d.from === a && d.to === c) || (d.from === b && d.to === a)));
    a.set('only-b-has-it', '"a"');
    await net.run(1);
    net.kill(a);
    const d = net.add();
    for (let t = 0; !d.node.synced && t < 5000; t += 10) await net.run(10);
    net.filter = (x) => !(x.msg.k === 'data' && x.from === d && x.to === b);
    d.set('only-c-has-it', '"d"');
    await net.run(1);
    net.kill(d);
    net.filter = () => true;
    expect(await net.settle(30_000)).toBeGreaterThanOrEqual(0);
    for (const h of [b, c]) {
      expect(h.table.get('only-b-has-it')).toBe('"a"');
      expect(h.table.get('only-c-has-it')).toBe('"d"');
    }
  });

  it('a joiner gets a large change its state server had only half received, by datagram repair', async () => {
    // B sends a change split over several datagrams. A has delivered the first of them when C
    // fetches A's state: the state cannot hold the change yet, so C must still get it from B's
    // datagrams (not only, much later, from a digest mismatch).
    const net = network({ timings: { heartbeatInterval: 200, failureTimeout: 5000 } });
    const [a, b] = (await cluster(net, 2)) as [MeshHandle, MeshHandle];
    const first = b.node.lastSeq + 1;
    let holding = true;
    net.filter = (d) =>
      !(holding && d.from === b && d.to === a && d.msg.k === 'data' && d.msg.seq > first);
    b.serves = () => false; // C fetches from A
    const big = json(5 * DATAGRAM_BUDGET, 'big');
    b.set('big', big);
    await net.run(1);
    expect(b.node.lastSeq).toBeGreaterThan(first);
    expect(a.table.get('big')).toBeUndefined();
    const c = net.add();
    for (let t = 0; !c.node.synced && t < 2000; t += 1) await net.run(1);
    expect(c.node.synced).toBe(true);
    holding = false;
    // Well under the time a digest comparison takes (four quiet heartbeats).
    await net.run(3 * TEST_TIMINGS.nackInterval);
    expect(a.table.get('big') === big, 'A completed the change').toBe(true);
    expect(c.table.get('big') === big, 'C got the change').toBe(true);
  });

  it('replicas converge when a set lands between touches on one node and before them on another', async () => {
    // Every replica gets the same changes, in a different order: W's set arrives at X after
    // X's nine touches, at W before them. A session's expiry must come out the same everywhere
    // (the digests compare it), or the replicas never agree and keep fetching each other's state.
    const net = network();
    const [x, w] = (await cluster(net, 2)) as [MeshHandle, MeshHandle];
    const t = Date.now();
    const at = (c: number, n: string) => ({ t, c, n });
    x.write({ op: 'set', sid: 's', data: '{"v":0}', expiresAt: t + 60_000, version: at(0, x.id) });
    await net.run(5);
    // A touch with an older version can carry a later expiry (its writer's clock was ahead).
    for (let i = 1; i <= 9; i++) {
      x.write({
        op: 'touch',
        sid: 's',
        expiresAt: t + (i === 1 ? 900_000 : 100_000 + i),
        version: at(2 * i, x.id),
      });
    }
    w.write({ op: 'set', sid: 's', data: '{"v":1}', expiresAt: t + 60_000, version: at(3, w.id) });
    const took = await net.settle(30_000);
    expect(x.table.get('s')).toBe('{"v":1}');
    expect(w.table.get('s')).toBe('{"v":1}');
    expect(w.table.record('s')?.expiresAt, 'same expiry on both').toBe(
      x.table.record('s')?.expiresAt,
    );
    expect(took, 'digests agree').toBeGreaterThanOrEqual(0);
  });
});

describe('read on miss: queries', () => {
  it('a holder answers a query with the record, in the numbered stream, once per holdoff', async () => {
    const net = network();
    const [a, , c] = await cluster(net, 3);
    if (!a || !c) throw new Error('cluster');
    // A record only A holds (as after a write whose datagram never reached anyone).
    const change = a.clock.tick();
    a.table.apply({
      op: 'set',
      sid: 'only-on-a-1',
      data: '{"x":1}',
      expiresAt: Date.now() + HOUR,
      version: change,
    });
    expect(c.table.get('only-on-a-1')).toBeUndefined();
    const dataBefore = net.count('data', a);
    net.send(c, { k: 'query', sid: 'only-on-a-1' });
    net.send(c, { k: 'query', sid: 'only-on-a-1' });
    await net.run(50);
    expect(c.table.get('only-on-a-1')).toBe('{"x":1}');
    // Answered once for both queries (holdoff), as one data datagram.
    expect(net.count('data', a) - dataBefore).toBe(1);
    expect(a.node.counters.queriesAnswered).toBe(1);
    // A session nobody holds gets no answer.
    net.send(c, { k: 'query', sid: 'held-by-none' });
    await net.run(50);
    expect(net.count('data', a) - dataBefore).toBe(1);
  });
});
