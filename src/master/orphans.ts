import type { Worker } from 'node:cluster';
import net from 'node:net';

/**
 * Sockets handed to a worker that died before taking them.
 *
 * Node passes one handle at a time and holds it until the receiver's acknowledgement; later
 * handles wait in a queue. When the worker dies first, Node (20.x) neither closes nor returns
 * them: the client would hang with a connection nobody reads, and the primary would keep the
 * descriptor forever. A handle whose acknowledgement never came never reached the worker's
 * JavaScript, so not a byte of it was read: it is safe to route it again.
 *
 * This reads two private fields of `ChildProcess` (`_pendingMessage`, `_handleQueue`). They are
 * checked defensively; if a Node version lacks them there is simply nothing to rescue.
 */
export function takeOrphanedSockets(worker: Worker): net.Socket[] {
  const proc = worker.process as unknown as {
    _pendingMessage?: { handle?: unknown } | null;
    _handleQueue?: Array<{ handle?: unknown }> | null;
  };
  const sockets: net.Socket[] = [];
  const pending = proc._pendingMessage?.handle;
  if (pending && typeof pending === 'object' && 'readStop' in pending) {
    proc._pendingMessage = null;
    // The raw handle as accepted with pauseOnConnect: wrap it without starting to read.
    sockets.push(
      new net.Socket({ handle: pending, pauseOnCreate: true } as net.SocketConstructorOpts),
    );
  }
  const queue = Array.isArray(proc._handleQueue) ? proc._handleQueue : [];
  proc._handleQueue = null;
  for (const entry of queue) {
    if (entry.handle instanceof net.Socket) sockets.push(entry.handle);
  }
  return sockets;
}
