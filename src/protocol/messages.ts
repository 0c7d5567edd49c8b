/**
 * IPC messages between the primary and its workers.
 *
 * Every message carries the source tag, the protocol version and a numeric type. Type values are
 * append-only: a value is never reused or renumbered, so a primary and a worker of neighbouring
 * versions can always tell what they do not understand and drop it. Anything that fails
 * `parseMessage` (another library's IPC traffic, a foreign version, a wrong shape) is ignored.
 */
export const SOURCE = 'sticky-mesh';
export const PROTOCOL_VERSION = 1;

export const MessageType = {
  /** worker -> primary: the factory's server exists; the worker can take connections. */
  Ready: 1,
  /** primary -> worker: a connection (the socket travels as the IPC handle). */
  Connection: 2,
  /** primary -> worker: stop taking work, finish in-flight requests, then disconnect. */
  Shutdown: 3,
  /** worker -> primary: the factory failed; the worker will exit. */
  StartFailed: 4,
  /** worker -> primary: the app called close() in this worker; stop routing to it, then replace it. */
  Leaving: 5,
  /**
   * worker -> primary: the next request on a connection belongs to another slot; the connection
   * travels as the IPC handle with the bytes read from it, to be routed again.
   */
  Reroute: 6,
  /** primary -> worker: the slots that have a ready worker now (for per-request routing). */
  Slots: 7,
  /**
   * Session replication. worker -> primary: a write (`id` set: answer with StoreAck once the
   * hub has it). primary -> worker: another process's write, to apply.
   */
  StoreChange: 8,
  /**
   * primary -> worker: the hub has the write numbered `id`; or, with `refused` (the reason), it
   * refused it or could not apply it.
   */
  StoreAck: 9,
  /** primary -> worker: part of the full session state; `done` on the last part. */
  StoreState: 10,
  /** worker -> primary: send me the full session state (a store created after start). */
  StoreHello: 11,
  /**
   * worker -> primary: a read missed session `sid` here; ask the other machines (read on
   * miss). Answered with StoreFound once it arrived (forwarded before it) or the wait is over.
   */
  StoreQuery: 12,
  /** primary -> worker: the read on miss numbered `id` may go on. */
  StoreFound: 13,
  /** primary -> worker: are you there? (liveness: a blocked event loop does not answer). */
  Ping: 14,
  /** worker -> primary: the answer to the Ping numbered `n`. */
  Pong: 15,
  /**
   * worker -> primary: its store's settings the hub's replica must share (`tombstoneTtl`), sent
   * when the worker's first store is created.
   */
  StoreOptions: 16,
  /** primary -> worker: send your metrics (the `metrics` option), answering with the same `id`. */
  MetricsRequest: 17,
  /**
   * worker -> primary: the answer to the MetricsRequest numbered `id`: prom-client's
   * `getMetricsAsJSON()` of the worker's registries (`metrics`), or why it has none (`error`).
   */
  MetricsReport: 18,
  /**
   * primary -> worker (rolling reload): this worker, forked as its slot's successor, now has the
   * slot: connections follow; its relay socket may take the siblings' channels.
   */
  Serve: 20,
  /**
   * worker -> primary (a worker draining for a reload): engine.io sessions (`sids`) it still
   * serves; their requests keep coming here until it has gone.
   */
  Retained: 21,
  /**
   * primary -> worker: engine.io session ids held by workers that are draining for a reload
   * (`add`), or no longer (`remove`); a request naming one is handed back to the primary.
   */
  Retiring: 22,
  /**
   * primary -> worker: a reload is about to replace you; say which engine.io sessions you serve
   * (Retained), now and as their requests arrive.
   */
  Retain: 23,
  /**
   * Session replication, both ways: the store messages one side queued in one turn of its event
   * loop (StoreChange, StoreAck, StoreQuery, StoreFound), in order, as one IPC message.
   */
  StoreBatch: 24,
  /**
   * primary -> worker: connect your store's data channel to the hub at `path`, presenting
   * `token` (hex) first; writes, the state and answers travel on it from then on (see
   * replication/transports/ipc/frames.ts), not as IPC messages.
   */
  StoreLink: 25,
} as const;
export type MessageType = (typeof MessageType)[keyof typeof MessageType];

interface Envelope<T extends MessageType> {
  src: typeof SOURCE;
  v: typeof PROTOCOL_VERSION;
  t: T;
}

export type ReadyMessage = Envelope<typeof MessageType.Ready> & { slot: number };
/**
 * `head`: bytes the primary read from the client (proxy mode), base64; the worker replays them.
 * `peer`: the connection's address key (PROXY protocol source or TCP peer), the fallback key of
 * its later requests.
 */
export type ConnectionMessage = Envelope<typeof MessageType.Connection> & {
  head?: string;
  peer?: string;
  /**
   * Bytes the hub had written to this worker's store data channel when the connection was
   * handed over: the worker serves it once it has applied that far (read-your-writes across
   * the two channels).
   */
  fence?: number;
};
/**
 * `reload`: the drain of a rolling reload (the slot already has a successor): engine.io
 * sessions still polling here keep being served, upgraded connections close spread over
 * `jitter` ms, idle keep-alive connections close once quiet.
 */
export type ShutdownMessage = Envelope<typeof MessageType.Shutdown> & {
  reload?: boolean;
  jitter?: number;
};
/** `draining`: how many workers are draining for a reload now (see RetiringMessage). */
export type ServeMessage = Envelope<typeof MessageType.Serve> & {
  live: number[];
  draining: number;
  /** engine.io sessions that workers draining for a reload still serve. */
  retained?: string[];
  /**
   * How far the hub had written the worker's store data channel: its relay socket takes the
   * slot's name (siblings relay to it) once it has applied that far (see ConnectionMessage).
   */
  fence?: number;
};
/** `stop`: the reload will not replace you after all; stop reporting. */
export type RetainMessage = Envelope<typeof MessageType.Retain> & { stop?: boolean };
export type RetainedMessage = Envelope<typeof MessageType.Retained> & { sids: string[] };
/**
 * `draining`: workers draining for a reload now; while any does, a worker checks the engine.io
 * session id of every request on its connections.
 */
export type RetiringMessage = Envelope<typeof MessageType.Retiring> & {
  add?: string[];
  remove?: string[];
  draining: number;
};
/**
 * `reason`: the worker's error message. `thrown`: what the factory threw, if it threw an Error
 * (`stack` cut to 8 KiB); the primary rebuilds it as the `cause` of its startup error.
 */
export type StartFailedMessage = Envelope<typeof MessageType.StartFailed> & {
  reason: string;
  thrown?: { name: string; message: string; code?: string; stack?: string };
};

export type LeavingMessage = Envelope<typeof MessageType.Leaving>;
/** `head`: every byte read from the connection since the last request, base64. */
export type RerouteMessage = Envelope<typeof MessageType.Reroute> & { head: string; peer?: string };
export type SlotsMessage = Envelope<typeof MessageType.Slots> & { live: number[] };
/** `change` is checked with `parseChange` by whoever applies it. */
export type StoreChangeMessage = Envelope<typeof MessageType.StoreChange> & {
  change: unknown;
  id?: number;
};
/**
 * `refused`: why the hub did not apply the write. `lost`: because it holds a newer version of the
 * session, written elsewhere before this write was made (the worker's replica got the hub's
 * record just before); otherwise the change did not pass the hub's checks.
 */
export type StoreAckMessage = Envelope<typeof MessageType.StoreAck> & {
  id: number;
  refused?: string;
  lost?: boolean;
};
export type StoreStateMessage = Envelope<typeof MessageType.StoreState> & {
  changes: unknown[];
  done: boolean;
};
export type StoreHelloMessage = Envelope<typeof MessageType.StoreHello>;
export type StoreOptionsMessage = Envelope<typeof MessageType.StoreOptions> & {
  tombstoneTtl: number;
};
export type StoreQueryMessage = Envelope<typeof MessageType.StoreQuery> & {
  id: number;
  sid: string;
};
/** `msgs`: store messages, each checked with parseMessage by whoever unpacks them. */
export type StoreBatchMessage = Envelope<typeof MessageType.StoreBatch> & { msgs: unknown[] };
/** What a worker's store sends the primary's replication hub. */
export type HubMessage =
  | StoreBatchMessage
  | StoreChangeMessage
  | StoreHelloMessage
  | StoreOptionsMessage
  | StoreQueryMessage;
export type StoreFoundMessage = Envelope<typeof MessageType.StoreFound> & { id: number };
export type StoreLinkMessage = Envelope<typeof MessageType.StoreLink> & {
  path: string;
  token: string;
};
export type PingMessage = Envelope<typeof MessageType.Ping> & { n: number };
export type PongMessage = Envelope<typeof MessageType.Pong> & { n: number };
export type MetricsRequestMessage = Envelope<typeof MessageType.MetricsRequest> & { id: number };
/** `metrics` is checked metric by metric (metrics/exposition.ts) by the primary. */
export type MetricsReportMessage = Envelope<typeof MessageType.MetricsReport> & {
  id: number;
  metrics: unknown[];
  error?: string;
};

export type Message =
  | ReadyMessage
  | ConnectionMessage
  | ShutdownMessage
  | StartFailedMessage
  | LeavingMessage
  | RerouteMessage
  | SlotsMessage
  | StoreChangeMessage
  | StoreAckMessage
  | StoreStateMessage
  | StoreHelloMessage
  | StoreOptionsMessage
  | StoreQueryMessage
  | StoreFoundMessage
  | PingMessage
  | PongMessage
  | MetricsRequestMessage
  | MetricsReportMessage
  | ServeMessage
  | RetainedMessage
  | RetiringMessage
  | RetainMessage
  | StoreBatchMessage
  | StoreLinkMessage;

/** Builds a message of the given type; `body` holds its type-specific fields. */
export function message<M extends Message>(t: M['t'], body: Omit<M, 'src' | 'v' | 't'>): M {
  return { src: SOURCE, v: PROTOCOL_VERSION, t, ...body } as M;
}

type Fields = Record<string, unknown>;
const isId = (v: unknown): boolean => Number.isSafeInteger(v);
const always = (): boolean => true;

/** What each type's fields must be, beside the envelope. */
const VALID = new Map<number, (m: Fields) => boolean>([
  [MessageType.Ready, (m) => Number.isInteger(m.slot)],
  [
    MessageType.Connection,
    (m) =>
      optionalString(m.head) && optionalString(m.peer) && (m.fence === undefined || isId(m.fence)),
  ],
  [
    MessageType.Shutdown,
    (m) =>
      (m.reload === undefined || typeof m.reload === 'boolean') &&
      (m.jitter === undefined || isId(m.jitter)),
  ],
  [MessageType.StartFailed, (m) => typeof m.reason === 'string' && optionalThrown(m.thrown)],
  [MessageType.Leaving, always],
  [MessageType.Reroute, (m) => typeof m.head === 'string' && optionalString(m.peer)],
  [MessageType.Slots, (m) => Array.isArray(m.live) && m.live.every((s) => Number.isInteger(s))],
  [MessageType.StoreChange, (m) => m.id === undefined || isId(m.id)],
  [
    MessageType.StoreAck,
    (m) =>
      isId(m.id) &&
      optionalString(m.refused) &&
      (m.lost === undefined || typeof m.lost === 'boolean'),
  ],
  [MessageType.StoreState, (m) => Array.isArray(m.changes) && typeof m.done === 'boolean'],
  [MessageType.StoreHello, always],
  [MessageType.StoreQuery, (m) => isId(m.id) && typeof m.sid === 'string'],
  [MessageType.StoreFound, (m) => isId(m.id)],
  [MessageType.Ping, (m) => isId(m.n)],
  [MessageType.Pong, (m) => isId(m.n)],
  [MessageType.StoreOptions, (m) => isId(m.tombstoneTtl) && (m.tombstoneTtl as number) > 0],
  [MessageType.MetricsRequest, (m) => isId(m.id)],
  [
    MessageType.MetricsReport,
    (m) => isId(m.id) && Array.isArray(m.metrics) && optionalString(m.error),
  ],
  [
    MessageType.Serve,
    (m) =>
      Array.isArray(m.live) &&
      m.live.every((s) => Number.isInteger(s)) &&
      isId(m.draining) &&
      (m.fence === undefined || isId(m.fence)),
  ],
  [MessageType.Retained, (m) => stringList(m.sids)],
  [MessageType.Retain, (m) => m.stop === undefined || typeof m.stop === 'boolean'],
  [MessageType.StoreBatch, (m) => Array.isArray(m.msgs)],
  [
    MessageType.StoreLink,
    (m) =>
      typeof m.path === 'string' && typeof m.token === 'string' && /^[0-9a-f]{32}$/.test(m.token),
  ],
  [
    MessageType.Retiring,
    (m) =>
      (m.add === undefined || stringList(m.add)) &&
      (m.remove === undefined || stringList(m.remove)) &&
      isId(m.draining),
  ],
]);

function stringList(value: unknown): boolean {
  return Array.isArray(value) && value.every((v) => typeof v === 'string');
}

/** Returns the message if `value` is a well-formed message of this protocol, else `undefined`. */
export function parseMessage(value: unknown): Message | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const m = value as Fields;
  if (m.src !== SOURCE || m.v !== PROTOCOL_VERSION) return undefined;
  const valid = typeof m.t === 'number' ? VALID.get(m.t) : undefined;
  return valid?.(m) ? (m as unknown as Message) : undefined;
}

function optionalString(value: unknown): boolean {
  return value === undefined || typeof value === 'string';
}

function optionalThrown(value: unknown): boolean {
  if (value === undefined) return true;
  if (typeof value !== 'object' || value === null) return false;
  const t = value as Fields;
  return (
    typeof t.name === 'string' &&
    typeof t.message === 'string' &&
    optionalString(t.code) &&
    optionalString(t.stack)
  );
}

/**
 * Tells a forked worker which transport its primary runs between machines (`multicast` or
 * `redis`), or none (empty): a worker's store checks its own options against it.
 */
export const TRANSPORT_ENV = 'STICKY_MESH_TRANSPORT';

/** Name of the environment variable that tells a forked worker its slot. */
export const SLOT_ENV = 'STICKY_MESH_SLOT';

/** Name of the environment variable that tells a forked worker the primary's bound address (JSON). */
export const ADDRESS_ENV = 'STICKY_MESH_ADDRESS';

/**
 * Set to `1` for a forked worker when the primary's listening socket has TCP_NODELAY set and
 * accepted connections inherit it (Linux): the worker then need not set it per connection.
 */
export const NODELAY_ENV = 'STICKY_MESH_NODELAY';

/**
 * The private directory (mode 0700) where each worker of a proxy-mode or session-affinity
 * cluster listens for its siblings' relay channels (`<slot>.sock`); unset: no relays.
 */
export const RELAY_DIR_ENV = 'STICKY_MESH_RELAY_DIR';

/**
 * Set to `1` for a worker forked by a rolling reload while its slot's previous worker still
 * serves: it takes its slot (relay socket, connections) only on the primary's Serve message.
 */
export const SUCCESSOR_ENV = 'STICKY_MESH_SUCCESSOR';
