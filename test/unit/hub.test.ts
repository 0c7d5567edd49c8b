// The primary's replication hub and a worker write that loses (issue 15, item 1): a worker
// versions each write above the record it holds, so a write that is older than the hub's record
// means a newer write made elsewhere had not reached that worker yet. Before, the hub dropped it
// and acknowledged it all the same: the worker's set() or destroy() resolved, its replica kept a
// write that no other replica had, and a logout could report success while the session lived on.

import { describe, expect, it } from 'vitest';
import { MessageType, message } from '../../src/protocol/messages.js';
import type { Change } from '../../src/replication/table.js';
import { Hub } from '../../src/replication/transports/ipc/hub.js';
import {
  connect,
  type FakeWorker,
  fakeLinks,
  fakeWorker,
  sendWrite,
} from '../helpers/hub-links.js';

const LATER = Date.now() + 3_600_000;
const AHEAD = Date.now() + 2 * 3_600_000;

/** A hub with two synced workers whose sent lists start empty. */
function hubWithTwo(): {
  hub: Hub;
  a: FakeWorker;
  b: FakeWorker;
} {
  const hub = new Hub({ link: fakeLinks });
  const a = fakeWorker(1);
  const b = fakeWorker(2);
  connect(hub, a);
  connect(hub, b);
  a.sent.length = 0;
  b.sent.length = 0;
  return { hub, a, b };
}

/** A worker's write as the hub receives it; what the hub sends for it is sent by the return. */
function write(hub: Hub, from: FakeWorker, change: Change, id: number): void {
  sendWrite(from, change, id);
  hub.flush();
}

describe('the hub and a worker write older than its record', () => {
  it('refuses it with an answer that says so, after sending the writer the record that won', () => {
    const { hub, a, b } = hubWithTwo();
    // A session saved on a machine whose clock runs two hours ahead, received by the hub.
    const ahead: Change = {
      op: 'set',
      sid: 's',
      data: '{"user":"ann"}',
      expiresAt: LATER,
      version: { t: AHEAD, c: 0, n: 'fast' },
    };
    hub.applyRemote([ahead]);
    hub.flush();
    expect(hub.counters.versionsAhead).toBe(1);
    a.sent.length = 0;
    b.sent.length = 0;
    // Worker a destroys it before the forwarded save reached it: its version is its own clock's.
    write(hub, a, { op: 'destroy', sid: 's', version: { t: Date.now(), c: 0, n: 'wa' } }, 7);
    expect(a.sent).toEqual([
      expect.objectContaining({ t: MessageType.StoreChange, change: ahead }),
      expect.objectContaining({ t: MessageType.StoreAck, id: 7, refused: expect.any(String) }),
    ]);
    expect(b.sent).toEqual([]);
    expect(hub.table.get('s')).toBe('{"user":"ann"}');
    expect(hub.counters.refused).toBe(1);
    hub.close();
  });

  it('applies, forwards and acknowledges a newer write, and acknowledges a duplicate plainly', () => {
    const { hub, a, b } = hubWithTwo();
    const destroy: Change = { op: 'destroy', sid: 's', version: { t: AHEAD, c: 1, n: 'wa' } };
    write(hub, a, destroy, 1);
    write(hub, a, destroy, 2);
    expect(a.sent).toEqual([
      expect.objectContaining({ t: MessageType.StoreAck, id: 1 }),
      expect.objectContaining({ t: MessageType.StoreAck, id: 2 }),
    ]);
    expect(a.sent.some((m) => 'refused' in m)).toBe(false);
    expect(b.sent).toEqual([
      expect.objectContaining({ t: MessageType.StoreChange, change: destroy }),
    ]);
    expect(hub.counters).toMatchObject({ writes: 2, refused: 0 });
    hub.close();
  });
});

describe("the hub's tombstones (issue 15, item 2)", () => {
  // Before, the hub kept tombstones 600 s whatever the stores were configured with.
  it("last as long as the longest of the workers' stores says (StoreOptions), not a fixed 600 s", () => {
    const hub = new Hub({ link: fakeLinks });
    expect(hub.table.tombstoneTtl).toBe(600_000);
    const a = fakeWorker(1);
    hub.receive(a, message(MessageType.StoreOptions, { tombstoneTtl: 5_000 }));
    expect(hub.table.tombstoneTtl).toBe(5_000);
    hub.receive(a, message(MessageType.StoreOptions, { tombstoneTtl: 2_000 }));
    expect(hub.table.tombstoneTtl).toBe(5_000);
    hub.receive(a, message(MessageType.StoreOptions, { tombstoneTtl: 3_600_000 }));
    expect(hub.table.tombstoneTtl).toBe(3_600_000);
    hub.close();
  });

  it('forget() drops a record from its replica and ends it in every worker', () => {
    const hub = new Hub({ link: fakeLinks });
    const a = fakeWorker(1);
    connect(hub, a);
    const s: Change = {
      op: 'set',
      sid: 's',
      data: '{}',
      expiresAt: LATER,
      version: { t: 5, c: 0, n: 'x' },
    };
    hub.applyRemote([s]);
    hub.flush();
    a.sent.length = 0;
    hub.forget(['s', 'unknown']);
    hub.flush();
    expect(hub.table.record('s')).toBeUndefined();
    expect(a.sent).toEqual([
      expect.objectContaining({
        t: MessageType.StoreChange,
        change: { op: 'destroy', sid: 's', version: { t: 5, c: 1, n: 'x' } },
      }),
    ]);
    hub.close();
  });
});

describe('a worker destroy that loses to a newer destroy', () => {
  it('is acknowledged plainly (the session is ended either way), and the writer gets the newer tombstone', () => {
    const { hub, a, b } = hubWithTwo();
    const newer: Change = { op: 'destroy', sid: 's', version: { t: AHEAD, c: 0, n: 'wb' } };
    write(hub, b, newer, 1);
    a.sent.length = 0;
    write(hub, a, { op: 'destroy', sid: 's', version: { t: Date.now(), c: 0, n: 'wa' } }, 2);
    expect(a.sent).toEqual([
      expect.objectContaining({ t: MessageType.StoreChange, change: newer }),
      expect.objectContaining({ t: MessageType.StoreAck, id: 2 }),
    ]);
    expect(a.sent.some((m) => 'refused' in m)).toBe(false);
    expect(hub.counters.refused).toBe(0);
    hub.close();
  });
});
