import type { Worker } from 'node:cluster';
import { debug } from '../debug.js';
import { type ConnectionMessage, MessageType, message } from '../protocol/messages.js';

/**
 * A client connection as libuv accepted it (Node's internal TCP handle), before any `net.Socket`
 * exists. The primary routes these directly, as Node's own round-robin scheduler does: building
 * a stream object per connection only to give it away cost the primary about a third more CPU
 * per connection and, since a worker takes one handle at a time, throughput.
 */
export interface RawHandle {
  getpeername(out: { address?: string }): number;
  close(callback?: () => void): void;
}

const CONNECTION: ConnectionMessage = message<ConnectionMessage>(MessageType.Connection, {});

/**
 * Hands connections to one worker and keeps the primary's copy of each until the worker has it.
 *
 * Node passes one handle at a time and waits for the receiver's `NODE_HANDLE_ACK` before the
 * next (on its internal `internalMessage` channel); acknowledgements come in send order. Holding
 * our copy until then costs nothing and means a worker that dies first leaves handles that were
 * never read: `takeUnacknowledged()` returns them to be routed again instead of being reset (or,
 * with the handle given up too early, left hanging).
 */
export class Handoff {
  private unacked: RawHandle[] = [];
  private readonly onInternal = (msg: unknown) => this.onAck(msg);

  /** `onReturned` gets back a handle the worker could not take (send failed, or it refused it). */
  constructor(
    private readonly worker: Worker,
    private readonly onReturned: (handle: RawHandle) => void,
  ) {
    worker.process.on('internalMessage', this.onInternal);
  }

  /** Sends `handle` to the worker; `onSent` runs once it is written to the IPC channel. */
  send(handle: RawHandle, onSent: () => void): void {
    this.unacked.push(handle);
    this.worker.send(CONNECTION, handle as never, (err: Error | null) => {
      if (!err) {
        onSent();
        return;
      }
      debug('handoff to pid %d failed: %s', this.worker.process.pid, err.message);
      const i = this.unacked.indexOf(handle);
      // Already taken back by takeUnacknowledged(): the exit path routes it.
      if (i === -1) return;
      this.unacked.splice(i, 1);
      this.onReturned(handle);
    });
  }

  /** The handles the worker never acknowledged; the caller owns them now. Call once it exited. */
  takeUnacknowledged(): RawHandle[] {
    this.worker.process.off('internalMessage', this.onInternal);
    const handles = this.unacked;
    this.unacked = [];
    // Node would otherwise keep queued sends (and their handles) for a process that is gone.
    (this.worker.process as unknown as { _handleQueue?: unknown })._handleQueue = null;
    return handles;
  }

  private onAck(msg: unknown): void {
    const cmd = (msg as { cmd?: unknown } | null)?.cmd;
    if (cmd === 'NODE_HANDLE_ACK') {
      this.unacked.shift()?.close();
    } else if (cmd === 'NODE_HANDLE_NACK') {
      // The worker could not take the handle in flight; Node does not resend raw handles.
      debug('pid %d refused a handle', this.worker.process.pid);
      const handle = this.unacked.shift();
      if (handle) this.onReturned(handle);
    }
  }
}
