import http from 'node:http';
import type net from 'node:net';
import { debug } from './debug.js';
import { handleOf, parserOf, type RawHandle, takeFromServer } from './node-internals.js';

/**
 * The request gate: a worker's view of each request head on a kept-open connection, from inside
 * its http server's parser. The other half of node-internals.ts (the same rules: every use of a
 * Node internal is feature-checked, and says what happens without it); a file of its own only
 * to keep files short. test/unit/node-internals.test.ts checks it on live objects.
 *
 * How: Node's server parser reports each complete head to a callback (`kOnHeadersComplete`)
 * before it makes the request object. The gate's callback asks the gate first; to stop a
 * request it answers as llhttp's own upgrade handling does ("no body, stop here"), so the parser
 * returns with the bytes after the head unparsed, and they are taken from the buffer it read
 * (`getCurrentBuffer`, in `kOnExecute`) or from the stream (`execute`).
 */

/**
 * Decides, for each request head a served socket's parser completes, whether the server gets the
 * request. Called from inside the parser: no I/O here, only the decision.
 */
export interface RequestGate {
  /**
   * `fields`: the head's header lines as the parser read them (name, value, name, value, ...;
   * values without surrounding whitespace). `busy`: an earlier request of the connection is still
   * being answered. Returns true to stop the request: the server never sees it, nothing more is
   * read, and `stopped` follows on the next tick.
   */
  decide(method: string, url: string, fields: readonly string[], busy: boolean): boolean;
  /**
   * The request `decide` stopped: its head, rebuilt from what the parser read (request line and
   * header lines, in order), and every byte read after it. The socket has let go of `handle`
   * (destroyed, the server forgot it); the connection is open and not reading. `handle` is
   * `undefined` where the server could not let go of it (the socket is destroyed then).
   */
  stopped(handle: RawHandle | undefined, head: Buffer, rest: Buffer): void;
}

type HeadersComplete = (
  this: GatedParser,
  major: number,
  minor: number,
  headers: string[] | undefined,
  method: number,
  url: string | undefined,
  statusCode: number,
  statusMessage: string,
  upgrade: boolean,
  keepAlive: boolean,
) => unknown;

type GatedSocket = net.Socket & { [kGate]?: GateState; _httpMessage?: unknown };

interface GatedParser {
  socket: GatedSocket | null;
  _headers: string[];
  _url: string;
  getCurrentBuffer(): Buffer;
  execute(data: Buffer): unknown;
  [index: number]: unknown;
}

type ParserClass = (new () => GatedParser & {
  initialize(kind: number, resource: object): void;
  close?(): void;
}) & {
  REQUEST: number;
  kOnHeadersComplete: number;
  kOnExecute: number;
};

/** One gated connection: its gate, and the request it stopped (until it is let go). */
interface GateState {
  gate: RequestGate;
  /** The stopped request's head; the bytes after it, as they come. */
  head: Buffer | undefined;
  rest: Buffer[];
}

const kGate = Symbol('sticky-mesh.gate');

/** llhttp's method numbers to names (Node reports a request's method by number). */
let methodNames: string[] | undefined;
let headersCompleteOf: HeadersComplete | undefined;
let executeOf: ((this: GatedParser, data: Buffer) => unknown) | undefined;

/** Learns, once, the parser's own callbacks and its method numbers (parsing one head of each). */
function learnParser(parser: GatedParser, ctor: ParserClass): boolean {
  if (methodNames) return true;
  const names: string[] = [];
  try {
    const probe = new ctor();
    for (const name of http.METHODS) {
      probe.initialize(ctor.REQUEST, {});
      probe[ctor.kOnHeadersComplete] = (_a: number, _b: number, _h: unknown, method: number) => {
        names[method] = name;
        return 1;
      };
      probe.execute(Buffer.from(`${name} / HTTP/1.1\r\n\r\n`, 'latin1'));
    }
    probe.close?.();
  } catch (err) {
    debug('no request gate: %s', (err as Error).message);
    return false;
  }
  if (!names.includes('GET')) return false;
  methodNames = names;
  headersCompleteOf = parser[ctor.kOnHeadersComplete] as HeadersComplete;
  executeOf = parser.execute;
  return true;
}

/** The parser's head callback on a gated connection: the gate decides before the server. */
const gatedHeadersComplete: HeadersComplete = function (
  major,
  minor,
  headers,
  method,
  url,
  statusCode,
  statusMessage,
  upgrade,
  keepAlive,
) {
  const socket = this.socket;
  const state = socket?.[kGate];
  if (state !== undefined && state.head === undefined) {
    const fields = headers ?? this._headers;
    const target = url ?? this._url;
    const name = methodNames?.[method] ?? '';
    if (state.gate.decide(name, target, fields, socket?._httpMessage != null)) {
      let head = `${name} ${target} HTTP/${major}.${minor}\r\n`;
      for (let i = 0; i + 1 < fields.length; i += 2) head += `${fields[i]}: ${fields[i + 1]}\r\n`;
      state.head = Buffer.from(`${head}\r\n`, 'latin1');
      this._headers = [];
      this._url = '';
      // llhttp's "no body, and stop here" (what it does for an upgrade): the bytes after the
      // head stay unparsed in the buffer being read.
      return 2;
    }
  }
  return headersCompleteOf?.call(
    this,
    major,
    minor,
    headers,
    method,
    url,
    statusCode,
    statusMessage,
    upgrade,
    keepAlive,
  );
};

/** The parser's `execute` (bytes that came through the socket's stream) on a gated connection. */
function gatedExecute(this: GatedParser, data: Buffer): unknown {
  const state = this.socket?.[kGate];
  if (state?.head !== undefined) {
    // Stopped: whatever else the stream delivers belongs to the stopped request.
    state.rest.push(data);
    return data.length;
  }
  const ret = executeOf?.call(this, data);
  if (state?.head !== undefined && typeof ret === 'number') {
    state.rest.push(data.subarray(ret));
    letGo(this, state);
  }
  return ret;
}

/** Stops reading a connection whose request was stopped, and takes it from the server. */
function letGo(parser: GatedParser, state: GateState): void {
  const socket = parser.socket;
  if (!socket) return;
  const handle = handleOf(socket);
  handle?.readStop();
  if (handle) handle.reading = false;
  process.nextTick(() => {
    // Bytes the stream still buffers arrive through gatedExecute, into `rest`.
    while (socket.readableLength > 0 && socket.read() !== null);
    delete socket[kGate];
    const head = state.head ?? Buffer.alloc(0);
    const rest = state.rest.length === 1 ? (state.rest[0] as Buffer) : Buffer.concat(state.rest);
    const taken = socket.destroyed ? undefined : takeFromServer(socket);
    socket.destroy();
    state.gate.stopped(taken, head, rest);
  });
}

/**
 * Puts `gate` in front of a served socket's http server: the gate sees each request head the
 * moment the server's parser has read it (no extra reads or copies: the parser reads as it
 * would) and may stop it there, with every byte after it kept. Call right after the server took
 * the socket (`emit('connection')`). Returns false, changing nothing, where this Node's parser is
 * not the one this file knows (the caller then routes some other way).
 */
export function gateRequests(socket: net.Socket, gate: RequestGate): boolean {
  const parser = parserOf(socket) as unknown as GatedParser | null | undefined;
  const ctor = parser?.constructor as ParserClass | undefined;
  if (
    !parser ||
    !ctor ||
    typeof ctor.kOnHeadersComplete !== 'number' ||
    typeof ctor.kOnExecute !== 'number' ||
    typeof parser.getCurrentBuffer !== 'function' ||
    typeof parser.execute !== 'function' ||
    !learnParser(parser, ctor)
  ) {
    return false;
  }
  const current = parser[ctor.kOnHeadersComplete];
  if (current !== gatedHeadersComplete && current !== headersCompleteOf) return false;
  const state: GateState = { gate, head: undefined, rest: [] };
  (socket as GatedSocket)[kGate] = state;
  // Both stay on the parser when Node reuses it for another connection: without a gate they
  // call straight through.
  parser[ctor.kOnHeadersComplete] = gatedHeadersComplete;
  parser.execute = gatedExecute;
  const onExecute = parser[ctor.kOnExecute];
  if (typeof onExecute === 'function') {
    // Bytes the parser consumed straight from the handle: the stopped request's rest is in the
    // buffer just parsed, after `ret`.
    parser[ctor.kOnExecute] = (ret: unknown) => {
      onExecute(ret);
      if (state.head !== undefined && state.rest.length === 0 && typeof ret === 'number') {
        state.rest.push(parser.getCurrentBuffer().subarray(ret));
        letGo(parser, state);
      }
    };
  }
  return true;
}
