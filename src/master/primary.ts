import cluster from 'node:cluster';
import { EventEmitter } from 'node:events';
import type { AddressInfo } from 'node:net';
import { channels, debug, trace } from '../debug.js';
import { describe, StickyMeshError } from '../errors.js';
import { rendezvous } from '../hash.js';
import { metricsOff, PrimaryMetrics } from '../metrics/primary.js';
import type { ResolvedStickyOptions } from '../options.js';
import { closedBeforeReady, Readiness } from '../readiness.js';
import { type MachineTransport, resolveTransport } from '../replication/transports/choose.js';
import { Hub, type HubCounters } from '../replication/transports/ipc/hub.js';
import type { MulticastStats } from '../replication/transports/multicast/transport.js';
import type { RedisStats } from '../replication/transports/redis/transport.js';
import { AdapterCheck } from './adapter-check.js';
import { Balancer, type BalancerCounters } from './balancer.js';
import { WorkerChannels } from './ipc.js';
import { logPrimaryEvents } from './log-events.js';
import { type PoolEvents, type SlotStats, WorkerPool } from './pool.js';
import { type ReloadReport, type ReloadStep, rollingReload } from './reload.js';
import { tracePrimary } from './trace.js';

export type { ReloadReport, ReloadSlot, ReloadStep } from './reload.js';
export { ReloadError } from './reload.js';

/**
 * The primary's numbers. The counters (`connections`, `rejected`, `rerouted`, `dropped`,
 * `handedBack`, `headReadsRefused`, `malformedMessages`, each slot's `connections`, `restarts`,
 * `generation` and `replaced`, every field of `sessions`) count since the primary started;
 * `state`, `headReads`, `waiting` and each slot's `pid` and `state` are as they are now.
 */
export interface PrimaryStats extends BalancerCounters {
  role: 'primary';
  state: PrimaryState;
  /** Connections whose first request head (or PROXY header) is being read now (<= `maxHeadReads`). */
  headReads: number;
  /** Connections waiting for a ready worker now (<= `maxPendingConnections`). */
  waiting: number;
  /** One entry per slot, `0 .. num-1`. */
  slots: SlotStats[];
  /** The session replication hub (the primary's replica), since start. */
  sessions: HubCounters;
  /** IPC messages from workers tagged as sticky-mesh's that did not parse (version, shape), since start. */
  malformedMessages: number;
  /** Replication to other machines, with the `multicast` option. */
  multicast?: MulticastStats;
  /** Replication to other machines, with the `redis` option. */
  redis?: RedisStats;
}

/**
 * `joining`: the transport (multicast, Redis) is fetching the cluster's sessions; the port is bound
 * once it has them.
 */
export type PrimaryState =
  | 'idle'
  | 'joining'
  | 'binding'
  | 'starting'
  | 'ready'
  | 'closing'
  | 'closed';

export interface PrimaryEvents
  extends Omit<
    PoolEvents,
    'change' | 'idle' | 'syncWorker' | 'forked' | 'orphans' | 'returned' | 'startupFailed'
  > {
  /** The port is bound (workers may still be starting). */
  listening: [AddressInfo];
  /** The port is bound and every worker is ready. */
  ready: [];
  /** `close()` (or SIGTERM / SIGINT with `handleSignals`) began: the workers are told to drain. */
  shutdown: [];
  /**
   * The port could not be bound, the transport could not start, the listening socket failed, or
   * (`ERR_STICKY_STARTUP_FAILED`) no worker can start: the primary has stopped.
   */
  error: [StickyMeshError];
  /** Every worker has exited after `close()`. */
  close: [];
  /** The `metrics` endpoint is bound. */
  metricsListening: [AddressInfo];
  /** A step of a rolling reload (see `reload()`). */
  reload: [ReloadStep];
}

const SIGNALS = ['SIGINT', 'SIGTERM'] as const;

/**
 * The cluster primary: owns the listening port (the balancer), the worker pool, the replication
 * hub and, with `multicast` or `redis`, the machine's link to other machines; routes every
 * worker message to its owner (master/ipc.ts). Never runs the user's factory and never reads a
 * client byte in IP mode.
 */
export class StickyPrimary extends EventEmitter<PrimaryEvents> {
  readonly role = 'primary' as const;
  private state: PrimaryState = 'idle';
  private readonly pool: WorkerPool;
  private readonly hub: Hub<MachineTransport>;
  private readonly balancer: Balancer;
  private readonly channels: WorkerChannels;
  /** The `metrics` option's scrapes and endpoint. */
  private readonly metricsEndpoint: PrimaryMetrics | undefined;
  private closing: Promise<void> | undefined;
  private readonly readiness = new Readiness();
  private reloading: Promise<ReloadReport> | undefined;
  private readonly onReloadSignal = (signal: NodeJS.Signals) => {
    debug('primary: %s, reloading', signal);
    // Its outcome is told by the `reload` events; nothing waits for the promise here.
    this.reload().catch(() => undefined);
  };
  private readonly onSignal = (signal: NodeJS.Signals) => this.closeOnSignal(signal);

  constructor(private readonly options: ResolvedStickyOptions) {
    super();
    cluster.setupPrimary({ serialization: options.serialization });
    this.pool = new WorkerPool(options);
    this.hub = new Hub({
      transport: resolveTransport(options),
      maxBacklog: options.maxIpcBacklog,
    });
    this.balancer = new Balancer(options, this.pool, rendezvous(options.seed, options.num));
    const adapterCheck = new AdapterCheck(options.serialization, options.logger);
    this.channels = new WorkerChannels({
      isCurrent: (slot, worker) => this.pool.isCurrent(slot, worker),
      lifecycle: (slot, worker, msg) => this.pool.lifecycle(slot, worker, msg),
      store: (worker, msg) => this.hub.receive(worker, msg),
      reroute: (handle, head, peer) => this.balancer.reroute(handle, head, peer),
      metrics: (worker, msg) => this.metricsEndpoint?.receive(worker, msg),
      retained: (worker, sids) => this.pool.succession.retain(worker, sids),
      foreign: (raw) => adapterCheck.seen(raw),
    });
    this.metricsEndpoint = options.metrics
      ? new PrimaryMetrics(options.metrics, this.pool, this.balancer, this.hub, () => this.stats())
      : undefined;
    this.pool.on('forked', (worker, slot) => this.channels.attach(slot, worker));
    this.pool.on('syncWorker', (worker) => this.hub.syncOnce(worker));
    this.pool.on('workerUp', (info) => {
      publishWorker('up', info);
      this.emit('workerUp', info);
      if (this.state === 'starting' && this.pool.allReady) this.becomeReady();
    });
    this.pool.on('workerExit', (info) => {
      publishWorker('exit', info);
      this.emit('workerExit', info);
    });
    this.pool.on('workerRespawn', (info) => {
      publishWorker('respawn', info);
      this.emit('workerRespawn', info);
    });
    this.pool.on('workerUnresponsive', (info) => {
      publishWorker('unresponsive', info);
      this.emit('workerUnresponsive', info);
    });
    this.pool.on('startupFailed', (err) => {
      if (this.state === 'starting') this.closing = this.stop(err);
    });
    this.balancer.server.on('error', (err) => this.onServerError(err));
    logPrimaryEvents(this, options.logger);
    tracePrimary(this, this.pool);
  }

  /**
   * Binds the port, then forks the workers; `callback` runs once every worker is ready (or
   * `await ready()`). Returns the primary, not a promise.
   */
  listen(port?: number | string, host?: string | (() => void), callback?: () => void): this {
    if (this.state !== 'idle') {
      throw new StickyMeshError(
        'ERR_STICKY_ALREADY_LISTENING',
        'sticky-mesh: listen() was already called',
      );
    }
    const portNumber = Number(port ?? 0);
    if (!Number.isInteger(portNumber) || portNumber < 0 || portNumber > 65535) {
      // A pipe path has no client addresses to route by: refuse it instead of dropping clients.
      throw new StickyMeshError(
        'ERR_STICKY_INVALID_ARGUMENT',
        `sticky-mesh: listen() needs a TCP port from 0 to 65535, got ${describe(port)}`,
      );
    }
    const cb = typeof host === 'function' ? host : callback;
    const bindHost = typeof host === 'string' ? host : undefined;
    if (cb) this.once('ready', cb);
    this.metricsEndpoint?.listen(
      (address) => this.emit('metricsListening', address),
      (err) => this.emit('error', err),
    );
    if (this.options.handleSignals) {
      for (const s of SIGNALS) process.on(s, this.onSignal);
      if (this.options.reloadSignal) process.on(this.options.reloadSignal, this.onReloadSignal);
    }
    const transport = this.hub.transport;
    if (!transport) {
      this.bind(portNumber, bindHost);
      return this;
    }
    // Sessions first: the port is bound (and workers forked) once this machine holds them.
    this.state = 'joining';
    transport.start().then(
      () => {
        if (this.state === 'joining') this.bind(portNumber, bindHost);
      },
      (err: StickyMeshError) => {
        if (this.state !== 'joining') return;
        this.state = 'closed';
        this.stopSignals();
        this.emit('error', err);
        this.readiness.reject(err);
      },
    );
    return this;
  }

  private bind(portNumber: number, bindHost: string | undefined): void {
    this.state = 'binding';
    this.balancer.server.listen(
      { port: portNumber, ...(bindHost ? { host: bindHost } : {}) },
      () => {
        if (this.state !== 'binding') {
          // close() came while the host name was being resolved: the bind landed after it.
          this.balancer.server.close();
          return;
        }
        this.state = 'starting';
        const address = this.balancer.server.address() as AddressInfo;
        this.emit('listening', address);
        this.pool.start(address, this.balancer.noDelayInherited);
      },
    );
  }

  /** The bound address; `null` until the port is bound (see `ready()`) and after `close()`. */
  address(): AddressInfo | null {
    const address = this.balancer.server.address();
    return typeof address === 'object' ? address : null;
  }

  /**
   * Resolves with the bound address once the port is bound and every worker is ready (the
   * `ready` event; at once if that was). Rejects with the `error` the primary emits before then
   * (the port, the transport or the workers could not start), or with `ERR_STICKY_CLOSED` if
   * `close()` comes first. Every call returns the same promise; `listen()` starts the startup.
   */
  ready(): Promise<AddressInfo> {
    const promise = this.readiness.wait();
    if (!this.readiness.settled && this.listeners('error').indexOf(this.onStartupError) === -1) {
      // While someone waits, an error before ready rejects the wait instead of going unhandled.
      this.on('error', this.onStartupError);
      this.readiness.whenSettled(() => this.off('error', this.onStartupError));
    }
    return promise;
  }

  private readonly onStartupError = (err: StickyMeshError) => this.readiness.reject(err);

  stats(): PrimaryStats {
    return {
      role: 'primary',
      state: this.state,
      ...this.balancer.counters,
      ...this.balancer.gauges(),
      slots: this.pool.stats(),
      sessions: { ...this.hub.counters },
      malformedMessages: this.channels.malformed,
      ...(this.hub.transport ? { [this.hub.transport.kind]: this.hub.transport.stats() } : {}),
    };
  }

  /** The machine's metrics as Prometheus text; rejects without the `metrics` option. */
  metrics(): Promise<string> {
    return this.metricsEndpoint?.text() ?? Promise.reject(metricsOff());
  }

  /**
   * Stops accepting, lets every worker finish its in-flight requests (up to `shutdownTimeout`,
   * then kills it) and resolves once all workers have exited. Idempotent.
   */
  close(): Promise<void> {
    this.closing ??= this.stop();
    return this.closing;
  }

  /**
   * What close() does. `failure`: no worker can start (the pool's `startupFailed`); it is
   * emitted as `error` once every worker has exited, before `close`. Emitted on its own tick:
   * without an `error` listener it is an uncaught exception, which ends the process (a throw
   * in here would only reject a promise).
   */
  private stop(failure?: StickyMeshError): Promise<void> {
    return new Promise<void>((resolve) => {
      this.state = 'closing';
      trace.lifecycle?.(
        'shutdown: stop accepting; workers drain (up to %d ms)',
        this.options.shutdownTimeout,
      );
      this.stopSignals();
      this.readiness.reject(closedBeforeReady('primary'));
      this.emit('shutdown');
      this.balancer.close();
      this.hub.close();
      void this.metricsEndpoint?.close();
      this.pool.once('idle', () => {
        if (failure) process.nextTick(() => this.emit('error', failure));
        // After the workers: their last writes still go out before the leave message. A reload
        // that was running has settled too (it fails once the pool closes) before `close`.
        const reload = this.reloading?.then(
          () => undefined,
          () => undefined,
        );
        const transport = this.hub.transport?.close() ?? Promise.resolve();
        void Promise.all([transport, reload]).then(() => {
          this.state = 'closed';
          this.emit('close');
          resolve();
        });
      });
      this.pool.shutdown();
    });
  }

  private stopSignals(): void {
    for (const s of SIGNALS) process.off(s, this.onSignal);
    if (this.options.reloadSignal) process.off(this.options.reloadSignal, this.onReloadSignal);
  }

  /**
   * Rolling reload: replaces the workers one slot at a time with new ones, which run the entry
   * script afresh (new code on disk is what they run). For each slot: fork its new worker, wait
   * until it is ready and holds the full session state, give it the slot (every new connection
   * goes to it), then let the old one drain (`shutdown` event, in-flight requests finish, idle
   * keep-alive connections close, upgraded ones close spread over `closeJitter`, engine.io
   * sessions still polling on it stay routed to it) and wait until it has exited. Clients keep
   * their slot. A new worker that fails (its factory throws, it exits, it is not ready within
   * `readyTimeout`) stops the reload there: it is removed, the old worker keeps its slot, and
   * the promise rejects with `ERR_STICKY_RELOAD_FAILED` ({@link ReloadError}, with the report).
   * Called while a reload runs, returns that reload's promise.
   */
  reload(): Promise<ReloadReport> {
    this.reloading ??= rollingReload({
      pool: this.pool,
      options: this.options,
      ready: () => this.state === 'ready' || this.state,
      emit: (step) => this.emit('reload', step),
    }).finally(() => {
      this.reloading = undefined;
    });
    return this.reloading;
  }

  private becomeReady(): void {
    this.state = 'ready';
    const address = this.address();
    if (address) this.readiness.resolve(address);
    this.emit('ready');
  }

  private closeOnSignal(signal: NodeJS.Signals): void {
    debug('primary: %s, draining', signal);
    void this.close().then(() => {
      // End the process as the signal would have, unless the application handles it itself.
      if (process.listenerCount(signal) === 0) process.kill(process.pid, signal);
    });
  }

  private onServerError(err: Error): void {
    const wrapped =
      err instanceof StickyMeshError
        ? err
        : new StickyMeshError(
            'ERR_STICKY_LISTEN_FAILED',
            `sticky-mesh: the listening socket failed: ${err.message}`,
            { cause: err },
          );
    if (this.state === 'binding') {
      // Like net.Server: a failed bind is an 'error' the application must handle.
      this.state = 'closed';
      this.stopSignals();
      this.balancer.server.close();
      this.emit('error', wrapped);
      // After the event: a ready() that waits is what handles it (see ready()).
      this.readiness.reject(wrapped);
    } else if (this.listenerCount('error') > 0) {
      this.emit('error', wrapped);
    } else {
      this.options.logger.error(wrapped.message);
    }
  }
}

function publishWorker(event: 'up' | 'exit' | 'respawn' | 'unresponsive', info: object): void {
  if (channels.worker.hasSubscribers) channels.worker.publish({ event, ...info });
}
