import type net from 'node:net';
import { type GatedSocket, learnedParserClass } from './parser-gate.js';

/**
 * The Node internals of relays (worker/relay.ts): a request served by another process, its
 * answer written on a connection this process's http server holds. The third part of
 * node-internals.ts (same rules); test/unit/parser-gate.test.ts checks it on live objects.
 */

/**
 * While a relayed request's answer is being written on a connection the server still holds, the
 * server must treat the connection as busy: not idle (`closeIdleConnections` must not close it),
 * no error answer of its own in the middle of ours, no close when its keep-alive timer fires. Node's server reads that from
 * `socket._httpMessage`; this marks the socket so, or clears the mark. Returns false (nothing
 * set) where the slot is taken by the server's own response.
 */
export function markRelaying(socket: net.Socket, relaying: boolean): boolean {
  const holder = socket as GatedSocket;
  if (relaying) {
    if (holder._httpMessage != null) return holder._httpMessage === RELAYING;
    holder._httpMessage = RELAYING;
    return true;
  }
  if (holder._httpMessage === RELAYING) holder._httpMessage = null;
  return true;
}

/**
 * What Node's server reads of a response it did not make: unfinished, head sent, and it handles
 * the socket's timeout (so a keep-alive timer that fires while the answer comes does not close
 * the connection; as for the server's own responses, any write re-arms it).
 */
const RELAYING = Object.freeze({
  finished: false,
  _headerSent: true,
  emit: (event: string) => event === 'timeout',
});

/** Reads where the answers end in a stream of HTTP responses. */
export interface ResponseReader {
  /** Reads more bytes of the stream. Returns false on a parse error (the stream is unusable). */
  read(chunk: Buffer): boolean;
  /** The request the next answer is for was `HEAD` (its answer has no body, whatever it says). */
  expect(head: boolean): void;
  /** The stream ended: an answer whose body runs to the end of the stream ends here. */
  finish(): void;
  close(): void;
}

/**
 * A reader of responses (Node's own parser, as its http client uses it) that calls `onAnswer`
 * at the end of each final answer (1xx interim answers do not count; a 101 reports -1: the
 * stream is no longer HTTP). `undefined` before any gate was set up or where the parser is not
 * the one this file knows.
 */
export function responseReader(
  onAnswer: (status: number, keepAlive: boolean) => void,
): ResponseReader | undefined {
  const ctor = learnedParserClass();
  if (!ctor) return undefined;
  const parser = new ctor();
  parser.initialize(ctor.RESPONSE, {});
  const heads: boolean[] = [];
  let status = 0;
  let open = true;
  parser[ctor.kOnHeaders] = null;
  parser[ctor.kOnBody] = null;
  parser[ctor.kOnHeadersComplete] = (
    _major: number,
    _minor: number,
    _headers: unknown,
    _method: unknown,
    _url: unknown,
    statusCode: number,
    _statusMessage: unknown,
    _upgrade: unknown,
    keepAlive: boolean,
  ) => {
    status = statusCode;
    open = keepAlive;
    if (statusCode === 101) return 2;
    // An interim answer has no body; the final answer to a HEAD request has none either.
    return statusCode >= 200 && heads[0] === true ? 1 : 0;
  };
  parser[ctor.kOnMessageComplete] = () => {
    if (status >= 100 && status < 200 && status !== 101) return;
    heads.shift();
    onAnswer(status === 101 ? -1 : status, open);
  };
  return {
    read(chunk) {
      const ret = parser.execute(chunk);
      return !(ret instanceof Error);
    },
    expect(head) {
      heads.push(head);
    },
    finish() {
      (parser as unknown as { finish?: () => unknown }).finish?.();
    },
    close() {
      (parser as unknown as { close?: () => void }).close?.();
    },
  };
}

/**
 * `server.closeIdleConnections()` (or `server.close()`, which calls it), sparing the sockets
 * that still have bytes of a finished answer queued for a slow client: Node counts an answer as
 * done once the application ended it, and would cut its tail.
 */
export function closeIdleSparingQueued(sockets: Iterable<net.Socket>, close: () => void): void {
  // An ended answer still being written keeps its socket's `_httpMessage` (finished) until it
  // is out: for the call, it reads as unfinished.
  const spared: [GatedSocket, unknown][] = [];
  for (const socket of sockets as Iterable<GatedSocket>) {
    if (socket.writableLength > 0 && socket._httpMessage !== RELAYING) {
      spared.push([socket, socket._httpMessage]);
      socket._httpMessage = RELAYING;
    }
  }
  try {
    close();
  } finally {
    for (const [socket, message] of spared) {
      if (socket._httpMessage === RELAYING) socket._httpMessage = message;
    }
  }
}
