// Workers as the primary's hub sees them, over fake data channels: each frame the hub writes to
// a worker is decoded and kept (as `sent`, one entry per change, answer or part of the state, in
// the order written), and the test writes frames to the hub as the worker would.
import type { Worker } from 'node:cluster';
import { EventEmitter } from 'node:events';
import { MessageType, message } from '../../src/protocol/messages.js';
import type { Change } from '../../src/replication/table.js';
import {
  encodeChangesFrame,
  Frame,
  FrameReader,
  queryFrame,
  readAck,
  readChanges,
  readIds,
} from '../../src/replication/transports/ipc/frames.js';
import type { Hub, LinkMaker } from '../../src/replication/transports/ipc/hub.js';

/** What the hub sent a worker, decoded: the old IPC messages' shapes, for readable tests. */
export type Sent =
  | { t: typeof MessageType.StoreChange; change: Change }
  | { t: typeof MessageType.StoreAck; id: number; refused?: string; lost?: boolean }
  | { t: typeof MessageType.StoreFound; id: number }
  | { t: typeof MessageType.StoreState; changes: Change[]; done: boolean };

export interface FakeWorker extends Worker {
  /** What the hub sent it, in order. */
  sent: Sent[];
  /** Bytes the hub wrote to its channel. */
  bytes: number;
  /** Sends the hub frames as this worker's store would. */
  toHub(frame: Buffer): void;
  /** The ids the test gave this worker's writes, by their number on the channel. */
  ids: number[];
}

/** A fake channel maker for `new Hub({ link: fakeLinks })`. */
export const fakeLinks: LinkMaker = (worker, onFrame) => {
  const w = worker as FakeWorker;
  const reader = new FrameReader();
  let answered = 0;
  w.toHub = (frame) => {
    new FrameReader().push(frame, onFrame);
  };
  return {
    write(bytes) {
      w.bytes += bytes.length;
      reader.push(bytes, (kind, body) => {
        if (kind === Frame.Changes) {
          for (const { change } of readChanges(body).changes) {
            w.sent.push({ t: MessageType.StoreChange, change });
          }
        } else if (kind === Frame.State) {
          const { changes } = readChanges(body, 1);
          w.sent.push({
            t: MessageType.StoreState,
            changes: changes.map((c) => c.change),
            done: body[0] === 1,
          });
        } else if (kind === Frame.Found) {
          for (const id of readIds(body) ?? []) w.sent.push({ t: MessageType.StoreFound, id });
        } else if (kind === Frame.Ack) {
          const ack = readAck(body);
          if (!ack) throw new Error('malformed ack');
          for (let n = answered + 1; n <= ack.answered; n++) {
            const r = ack.refusals.find((x) => x.n === n);
            const id = w.ids[n - 1] ?? n;
            w.sent.push(
              r
                ? {
                    t: MessageType.StoreAck,
                    id,
                    refused: r.reason,
                    ...(r.lost ? { lost: true } : {}),
                  }
                : { t: MessageType.StoreAck, id },
            );
          }
          answered = Math.max(answered, ack.answered);
        }
      });
    },
    writableLength: 0,
    onDrain: (fn) => fn(),
    cork() {},
    uncork() {},
    close() {},
  };
};

export function fakeWorker(pid: number): FakeWorker {
  const w = Object.assign(new EventEmitter(), {
    sent: [] as Sent[],
    bytes: 0,
    ids: [] as number[],
    process: { pid },
    isConnected: () => true,
    send: () => true,
    toHub: () => {},
  });
  return w as unknown as FakeWorker;
}

/** The worker's store opens its channel (its first message) and is sent the full state. */
export function connect(hub: Hub, worker: FakeWorker, tombstoneTtl = 600_000): void {
  hub.receive(worker, message(MessageType.StoreOptions, { tombstoneTtl }));
  hub.sync(worker);
}

/** A worker's write numbered `id` by the test, as one frame. */
export function sendWrite(worker: FakeWorker, change: Change, id: number): void {
  worker.ids.push(id);
  worker.toHub(encodeChangesFrame([change]));
}

/** A worker's writes of one turn (numbered `id` by the test), as one frame. */
export function sendWrites(
  worker: FakeWorker,
  writes: readonly { change: Change; id: number }[],
): void {
  for (const w of writes) worker.ids.push(w.id);
  worker.toHub(encodeChangesFrame(writes.map((w) => w.change)));
}

/** A worker's read on miss. */
export function sendQuery(worker: FakeWorker, id: number, sid: string): void {
  worker.toHub(queryFrame(id, sid));
}
