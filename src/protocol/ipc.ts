import type { Worker } from 'node:cluster';
import { debug } from '../debug.js';
import { type Message, type MessageType, parseMessage } from './messages.js';

/**
 * The IPC channel between the primary and its workers, the parts both roles share: sending with
 * a callback every time (a failed send is logged, never thrown), and the worker's side of
 * receiving, where one listener parses each message once and hands it to the part of the worker
 * that owns its type. (The primary's side, which also gets handles back from workers, is
 * master/ipc.ts.)
 */

/**
 * Sends to a worker if its channel is open; `what` names the message in the debug log, `done`
 * runs once it is written (with the error if it failed).
 */
export function sendToWorker(
  worker: Worker,
  msg: Message,
  what: string,
  done?: (err: Error | null) => void,
): boolean {
  if (!worker.isConnected()) return false;
  worker.send(msg, (err: Error | null) => {
    if (err) debug('%s to pid %d failed: %s', what, worker.process.pid, err.message);
    done?.(err);
  });
  return true;
}

/**
 * Sends to the primary if this process has a channel to it; `done` runs once the message is
 * written (with the error if it failed). Returns false, sending nothing, without a channel.
 */
export function sendToPrimary(
  msg: Message,
  what: string,
  done?: (err: Error | null) => void,
  handle?: unknown,
): boolean {
  if (!process.connected || !process.send) return false;
  process.send(msg, handle as never, {}, (err: Error | null) => {
    if (err) debug('%s to the primary failed: %s', what, err.message);
    done?.(err);
  });
  return true;
}

type MessageOf<T extends MessageType> = Extract<Message, { t: T }>;
type Handler = (msg: Message, handle: unknown) => void;

/**
 * A worker's side of the channel: one `process.on('message')` listener for the whole process,
 * which parses each message once and calls the handler registered for its type. Messages of a
 * type nobody handles (and anything that is not ours) are dropped. The listener is in place
 * while any handler is: IPC messages that arrive with no listener are lost, so a part of the
 * worker registers before it announces anything to the primary.
 */
class PrimaryChannel {
  private readonly handlers = new Map<MessageType, Handler>();
  private readonly onMessage = (raw: unknown, handle: unknown) => {
    const msg = parseMessage(raw);
    if (msg) this.handlers.get(msg.t)?.(msg, handle);
  };

  /** Handles messages of `types` (one owner per type; a second registration replaces it). */
  on<T extends MessageType>(
    types: readonly T[],
    handler: (msg: MessageOf<T>, handle: unknown) => void,
  ): void {
    if (this.handlers.size === 0) process.on('message', this.onMessage);
    for (const t of types) this.handlers.set(t, handler as Handler);
  }

  /** Stops handling `types`; the listener goes once no type is handled. */
  off(types: readonly MessageType[]): void {
    for (const t of types) this.handlers.delete(t);
    if (this.handlers.size === 0) process.off('message', this.onMessage);
  }
}

/** This process's channel to its primary (used only in workers). */
export const primaryChannel = new PrimaryChannel();
