// A node cut off from the others for longer than tombstoneTtl (issue 15, item 2): a session
// ended on one side meanwhile is forgotten there once its tombstone expires, while the cut-off
// side still holds it from before. Before, the digest merge after the partition healed took it
// back from the side that still held it: the logout came undone on every node.
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import { type MeshHandle, MeshNet, TEST_TIMINGS } from '../helpers/mesh-net.js';

const { heartbeatInterval, failureTimeout, joinTimeout } = TEST_TIMINGS;
const TTL = 5_000;
let net: MeshNet;

beforeEach(() => {
  vi.useFakeTimers({
    toFake: ['setTimeout', 'clearTimeout', 'setInterval', 'clearInterval', 'Date'],
  });
  vi.setSystemTime(1_700_000_000_000);
  // A small retransmit buffer: a long partition outlasts what a node can send again.
  net = new MeshNet({ tombstoneTtl: TTL, timings: { retransmitBuffer: 16 } });
});

afterEach(() => {
  net.closeAll();
  vi.clearAllTimers();
  vi.useRealTimers();
});

async function cluster(count: number): Promise<MeshHandle[]> {
  const out: MeshHandle[] = [];
  for (let i = 0; i < count; i++) {
    const h = net.add();
    out.push(h);
    for (let t = 0; !h.node.synced && t < 20 * joinTimeout; t += 10) await net.run(10);
  }
  await net.run(2 * heartbeatInterval);
  return out;
}

const users = (h: MeshHandle) =>
  h
    .live()
    .map(([sid]) => sid)
    .filter((sid) => !sid.startsWith('filler-'))
    .sort();

describe('a node back after a silence longer than tombstoneTtl', () => {
  it('brings back no session ended meanwhile, and keeps what either side wrote meanwhile', async () => {
    const [a, b, c] = (await cluster(3)) as [MeshHandle, MeshHandle, MeshHandle];
    a.set('ended', '{"u":"ann"}');
    a.set('kept', '{"u":"bob"}');
    await net.run(10 * heartbeatInterval);
    expect(net.converged()).toBe(true);

    // c hears nobody and nobody hears c; no state transfer crosses either.
    const apart = (x: MeshHandle, y: MeshHandle) => x === c || y === c;
    net.filter = (d) => !apart(d.from, d.to);
    net.failFetch = (x, y) => apart(x, y);
    await net.run(3 * failureTimeout);
    expect(a.peerIds()).toEqual([b.id]);
    b.destroy('ended');
    b.set('on-b', '{"u":"dan"}');
    c.set('on-c', '{"u":"carl"}');
    // Traffic enough that b no longer holds those datagrams for c to ask again (as after any
    // long partition): c has to fetch a state.
    for (let i = 0; i < 40; i++) {
      a.set(`filler-${i}`, '{}');
      b.set(`filler-b-${i}`, '{}');
      await net.run(5);
    }
    // Longer than tombstones live: each replica's sweeper forgets the logout.
    await net.run(2 * TTL);
    for (const h of [a, b, c]) h.table.sweep();
    expect(a.table.record('ended')).toBeUndefined();
    expect(users(c)).toContain('ended');

    net.filter = () => true;
    net.failFetch = () => false;
    await net.run(30_000);
    expect(net.converged()).toBe(true);
    for (const h of [a, b, c]) expect(users(h)).toEqual(['kept', 'on-b', 'on-c']);
    expect(c.logs.join('\n')).toMatch(
      /out of reach longer than tombstoneTtl; merged, and dropped 1 /,
    );
  });

  it('after a shorter silence merges as always (the tombstone is still there to win)', async () => {
    const [, b, c] = (await cluster(3)) as [MeshHandle, MeshHandle, MeshHandle];
    b.set('s', '{"u":"ann"}');
    await net.run(10 * heartbeatInterval);
    net.filter = (d) => d.from !== c && d.to !== c;
    net.failFetch = (x, y) => x === c || y === c;
    await net.run(3 * failureTimeout);
    b.destroy('s');
    net.filter = () => true;
    net.failFetch = () => false;
    await net.run(30_000);
    expect(net.converged()).toBe(true);
    expect(users(c)).toEqual([]);
    expect(c.logs.join('\n')).not.toMatch(/out of reach longer than tombstoneTtl/);
  });
});
