import cluster from 'node:cluster';
import type { ResolvedLogger } from '../logger.js';

/**
 * Two mistakes in setting up `@socket.io/cluster-adapter` that fail silently, recognised in the
 * primary from the adapter's own messages (workers send them to the primary over IPC, tagged
 * with its source `_sio_adapter`; the primary's `setupPrimary()` relays them to the other
 * workers from a listener on cluster's 'message' event):
 * - no `setupPrimary()`: nothing relays them, and every broadcast reaches only the sender's
 *   worker's clients;
 * - `serialization: 'json'` (the default): a Buffer crosses IPC as `{"type":"Buffer","data":[..]}`
 *   and the other workers' clients get that object instead of binary.
 * Each is warned about once per primary, by `process.emitWarning` with a code (Node prints it
 * on stderr unless the application handles 'warning' events: the default logger is quiet, and
 * this must be seen) and on the logger's `warn`. Once both are settled, a message costs one
 * check.
 */

/** The codes of the warnings (stable, as error codes are). */
export const ADAPTER_WARNINGS = {
  noRelay: 'WARN_STICKY_ADAPTER_NO_RELAY',
  jsonBuffer: 'WARN_STICKY_ADAPTER_JSON_BUFFER',
} as const;

/** @socket.io/cluster-adapter's tag on its IPC messages. */
const ADAPTER_SOURCE = '_sio_adapter';
/**
 * The adapter's first message, sent as it starts: it may come before the application's
 * `setupPrimary()` call has run; the next ones (a heartbeat every 5 s, broadcasts) may not.
 */
const INITIAL_HEARTBEAT = 1;
/** Values looked at per message for a Buffer (the search is bounded, not the message). */
const SEARCH_BUDGET = 256;

interface AdapterMessage {
  source: typeof ADAPTER_SOURCE;
  type?: unknown;
  data?: unknown;
}

export class AdapterCheck {
  private relaySettled = false;
  private bufferSettled: boolean;

  constructor(
    serialization: 'json' | 'advanced',
    private readonly logger: ResolvedLogger,
  ) {
    this.bufferSettled = serialization === 'advanced';
  }

  /** A worker's IPC message that is not sticky-mesh's. */
  seen(raw: unknown): void {
    if (this.relaySettled && this.bufferSettled) return;
    if (typeof raw !== 'object' || raw === null) return;
    if ((raw as { source?: unknown }).source !== ADAPTER_SOURCE) return;
    const msg = raw as AdapterMessage;
    if (!this.relaySettled && msg.type !== INITIAL_HEARTBEAT) {
      this.relaySettled = true;
      if (cluster.listenerCount('message') === 0) {
        this.warn(
          ADAPTER_WARNINGS.noRelay,
          'sticky-mesh: workers use @socket.io/cluster-adapter, but nothing in the primary relays ' +
            "its messages, so a broadcast reaches only the sender's worker: call setupPrimary() " +
            "from '@socket.io/cluster-adapter' in the primary (where app.role === 'primary')",
        );
      }
    }
    if (!this.bufferSettled && holdsJsonBuffer(msg.data)) {
      this.bufferSettled = true;
      this.warn(
        ADAPTER_WARNINGS.jsonBuffer,
        'sticky-mesh: a Buffer crossed @socket.io/cluster-adapter\'s IPC as JSON ({"type":"Buffer",' +
          '"data":[...]}), so the other workers get an object instead of binary: pass ' +
          "serialization: 'advanced' to sticky()",
      );
    }
  }

  private warn(code: string, message: string): void {
    process.emitWarning(message, { type: 'StickyMeshWarning', code });
    this.logger.warn(message);
  }
}

/** Whether `value` holds what JSON makes of a Buffer, within {@link SEARCH_BUDGET} values. */
function holdsJsonBuffer(value: unknown): boolean {
  const stack: unknown[] = [value];
  for (let budget = SEARCH_BUDGET; stack.length > 0 && budget > 0; budget--) {
    const v = stack.pop();
    if (typeof v !== 'object' || v === null) continue;
    if (Array.isArray(v)) {
      for (let i = v.length - 1; i >= 0 && stack.length < SEARCH_BUDGET; i--) stack.push(v[i]);
      continue;
    }
    const o = v as { type?: unknown; data?: unknown };
    if (o.type === 'Buffer' && Array.isArray(o.data)) return true;
    for (const key in o) {
      if (stack.length >= SEARCH_BUDGET) break;
      stack.push((o as Record<string, unknown>)[key]);
    }
  }
  return false;
}
