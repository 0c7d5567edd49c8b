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
   * being answered. `upgrade`: an upgrade or CONNECT request. Returns false to let the server
   * have it; true to stop it: the server never sees it, nothing more is read, and `stopped`
   * follows on the next tick; or a sink, which gets the request instead of the server (its head,
   * then its body as the parser reads it, then its end) while the server keeps the connection.
   */
  decide(
    method: string,
    url: string,
    fields: readonly string[],
    busy: boolean,
    upgrade: boolean,
  ): boolean | RelaySink;
  /**
   * The request `decide` stopped: its head, rebuilt from what the parser read (request line and
   * header lines, in order), and every byte read after it. The socket has let go of `handle`
   * (destroyed, the server forgot it); the connection is open and not reading. `handle` is
   * `undefined` where the server could not let go of it (the socket is destroyed then).
   */
  stopped(handle: RawHandle | undefined, head: Buffer, rest: Buffer): void;
}

/** Where a relayed request goes instead of the server (see {@link RequestGate.decide}). */
export interface RelaySink {
  /**
   * The request's head, rebuilt from what the parser read; `keepAlive`: the client keeps the
   * connection open after the answer (HTTP/1.1 without `Connection: close`, ...).
   */
  head(head: Buffer, keepAlive: boolean): void;
  /** A piece of its body, as sent (chunked framing is kept: `chunked` says so). */
  body(chunk: Buffer): void;
  /** The request is complete. */
  end(): void;
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

export type GatedSocket = net.Socket & { [kGate]?: GateState; _httpMessage?: unknown };

interface GatedParser {
  socket: GatedSocket | null;
  _headers: string[];
  _url: string;
  getCurrentBuffer(): Buffer;
  execute(data: Buffer): unknown;
  [index: number]: unknown;
}

export type ParserClass = (new () => GatedParser & {
  initialize(kind: number, resource: object): void;
  close?(): void;
}) & {
  REQUEST: number;
  RESPONSE: number;
  kOnHeaders: number;
  kOnHeadersComplete: number;
  kOnBody: number;
  kOnMessageComplete: number;
  kOnExecute: number;
};

/** One gated connection: its gate, and the request it stopped (until it is let go). */
interface GateState {
  gate: RequestGate;
  /** The stopped request's head; the bytes after it, as they come. */
  head: Buffer | undefined;
  rest: Buffer[];
  /** The request being relayed, and whether its body is chunked (re-framed on the way). */
  sink: RelaySink | undefined;
  chunked: boolean;
}

const kGate = Symbol('sticky-mesh.gate');

/** llhttp's method numbers to names (Node reports a request's method by number). */
let methodNames: string[] | undefined;
let headersCompleteOf: HeadersComplete | undefined;
let executeOf: ((this: GatedParser, data: Buffer) => unknown) | undefined;
let bodyOf: ((this: GatedParser, chunk: Buffer) => unknown) | undefined;
let completeOf: ((this: GatedParser) => unknown) | undefined;
/** The parser class, for the response parsers of relays. */
let parserClass: ParserClass | undefined;

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
  bodyOf = parser[ctor.kOnBody] as typeof bodyOf;
  completeOf = parser[ctor.kOnMessageComplete] as typeof completeOf;
  parserClass = ctor;
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
    let verdict: boolean | RelaySink;
    try {
      verdict = state.gate.decide(name, target, fields, socket?._httpMessage != null, upgrade);
    } catch (err) {
      // Thrown out of here it would end the process: the primary decides instead.
      debug('request gate: %s', String(err));
      verdict = true;
    }
    if (verdict !== false) {
      const head = `${name} ${target} HTTP/${major}.${minor}\r\n${fieldLines(fields)}\r\n`;
      const bytes = Buffer.from(head, 'latin1');
      this._headers = [];
      this._url = '';
      if (verdict === true) {
        state.head = bytes;
        // llhttp's "no body, and stop here" (what it does for an upgrade): the bytes after the
        // head stay unparsed in the buffer being read.
        return 2;
      }
      // Relayed: the parser reads on (the body, then the next request), the sink takes it all.
      (this as { incoming?: unknown }).incoming = null;
      state.sink = verdict;
      state.chunked = isChunked(fields);
      verdict.head(bytes, keepAlive);
      return 0;
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

const CRLF = Buffer.from('\r\n', 'latin1');
const LAST_CHUNK = Buffer.from('0\r\n\r\n', 'latin1');

/** The parser's body callback on a gated connection: a relayed request's body goes to its sink. */
function gatedBody(this: GatedParser, chunk: Buffer): unknown {
  const state = this.socket?.[kGate];
  const sink = state?.sink;
  if (sink === undefined) return bodyOf?.call(this, chunk);
  if (state?.chunked) {
    // The parser hands over the chunks' data: frame each again as one chunk.
    sink.body(Buffer.from(`${chunk.length.toString(16)}\r\n`, 'latin1'));
    sink.body(chunk);
    sink.body(CRLF);
  } else {
    sink.body(chunk);
  }
  return undefined;
}

/** The parser's end-of-message callback on a gated connection: ends a relayed request. */
function gatedComplete(this: GatedParser): unknown {
  const state = this.socket?.[kGate];
  const sink = state?.sink;
  if (state === undefined || sink === undefined) return completeOf?.call(this);
  state.sink = undefined;
  if (state.chunked) {
    // The trailer fields, if any, are what the parser collected after the last chunk.
    const trailers = this._headers;
    if (trailers.length === 0) {
      sink.body(LAST_CHUNK);
    } else {
      sink.body(Buffer.from(`0\r\n${fieldLines(trailers)}\r\n`, 'latin1'));
    }
  }
  this._headers = [];
  this._url = '';
  sink.end();
  return undefined;
}

/** Header (or trailer) lines as the parser read them, each ending in CRLF. */
function fieldLines(fields: readonly string[]): string {
  let lines = '';
  for (let i = 0; i + 1 < fields.length; i += 2) lines += `${fields[i]}: ${fields[i + 1]}\r\n`;
  return lines;
}

function isChunked(fields: readonly string[]): boolean {
  for (let i = 0; i + 1 < fields.length; i += 2) {
    const name = fields[i] as string;
    if (name.length === 17 && name.toLowerCase() === 'transfer-encoding') {
      return /(?:^|,)\s*chunked\s*$/i.test(fields[i + 1] as string);
    }
  }
  return false;
}

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
    typeof ctor.kOnBody !== 'number' ||
    typeof ctor.kOnMessageComplete !== 'number' ||
    !learnParser(parser, ctor)
  ) {
    return false;
  }
  const current = parser[ctor.kOnHeadersComplete];
  if (current !== gatedHeadersComplete && current !== headersCompleteOf) return false;
  if (parser[ctor.kOnBody] !== gatedBody && parser[ctor.kOnBody] !== bodyOf) return false;
  const state: GateState = { gate, head: undefined, rest: [], sink: undefined, chunked: false };
  (socket as GatedSocket)[kGate] = state;
  // Both stay on the parser when Node reuses it for another connection: without a gate they
  // call straight through.
  parser[ctor.kOnHeadersComplete] = gatedHeadersComplete;
  parser[ctor.kOnBody] = gatedBody;
  parser[ctor.kOnMessageComplete] = gatedComplete;
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

/** The server parsers' class, once a gate has been set up (relay.ts reads answers with it). */
export function learnedParserClass(): ParserClass | undefined {
  return parserClass;
}
