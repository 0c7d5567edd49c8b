import { debug } from '../debug.js';
import { primaryChannel, sendToPrimary } from '../protocol/ipc.js';
import { MessageType, type MetricsReportMessage, message } from '../protocol/messages.js';
import {
  existingHubClient,
  observeForwardedChanges,
} from '../replication/transports/ipc/client.js';
import { loadPromClient } from './prom.js';
import { type WorkerSource, workerRegistry } from './worker-registry.js';

/**
 * A worker's side of the `metrics` option: answers each of the primary's MetricsRequests with
 * its metrics as prom-client's JSON: its own registry (sticky-mesh's and the default process
 * metrics) and prom-client's default registry (what the application registered), less any name
 * of the first. Registered before the worker reports ready, like every handler of the worker.
 * Throws `ERR_STICKY_METRICS_FAILED` without prom-client.
 */
export function answerScrapes(stats: WorkerSource['stats']): void {
  const prom = loadPromClient();
  const own = workerRegistry(prom, { stats, store: () => existingHubClient()?.stats() });
  const names = new Set(own.registry.getMetricsAsArray().map((m) => m.name));
  // The change's version carries its writer's clock reading: no extra bytes on the way.
  observeForwardedChanges((change) => own.visible(Date.now() - change.version.t));
  primaryChannel.on([MessageType.MetricsRequest], (msg) => {
    report(msg.id).catch((err: Error) =>
      debug('metrics report %d failed: %s', msg.id, err.message),
    );
  });

  async function report(id: number): Promise<void> {
    const metrics: unknown[] = await own.registry.getMetricsAsJSON();
    let error: string | undefined;
    try {
      const app = await prom.register.getMetricsAsJSON();
      for (const m of app) if (!names.has(m.name)) metrics.push(m);
    } catch (err) {
      // One failing collect() of the application's leaves its registry out, not ours.
      error = `prom-client's default registry failed: ${(err as Error).message}`;
    }
    const body = error === undefined ? { id, metrics } : { id, metrics, error };
    const sent = sendToPrimary(
      message<MetricsReportMessage>(MessageType.MetricsReport, body),
      'metrics report',
    );
    if (!sent) debug('metrics report %d: no channel to the primary', id);
  }
}
