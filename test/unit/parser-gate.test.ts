// The request gate (src/parser-gate.ts) on a real http server of this Node version: each later
// request head reaches the gate before the server, and a stopped request leaves with every byte
// after its head, on both ways bytes reach Node's parser (straight from the handle, or through
// the socket's stream). CI runs this on every supported Node version.
import http from 'node:http';
import net from 'node:net';
import { afterEach, describe, expect, it } from 'vitest';
import type { RawHandle } from '../../src/node-internals.js';
import { gateRequests } from '../../src/parser-gate.js';
import { markRelaying, responseReader } from '../../src/relay-internals.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanup.splice(0)) fn();
});

interface Stopped {
  handle: RawHandle | undefined;
  head: string;
  rest: string;
}

interface Seen {
  method: string;
  url: string;
  fields: string[];
  busy: boolean;
}

/**
 * A server whose every connection is gated: `stopIf` decides; returns what the gate saw, what
 * the server served, and the stopped requests. `viaStream`: bytes reach the parser through the
 * socket's stream (as after a replay), not straight from the handle.
 */
async function gatedServer(stopIf: (url: string) => boolean, viaStream = false) {
  const seen: Seen[] = [];
  const served: string[] = [];
  let onStopped!: (s: Stopped) => void;
  const stopped = new Promise<Stopped>((resolve) => {
    onStopped = resolve;
  });
  const server = http.createServer((req, res) => {
    served.push(req.url ?? '');
    req.resume();
    req.on('end', () => res.end(`ok ${req.url}\n`));
  });
  const sockets: net.Socket[] = [];
  const inner = net.createServer((socket) => {
    sockets.push(socket);
    if (viaStream)
      (socket as unknown as { _handle: { _consumed: boolean } })._handle._consumed = true;
    server.emit('connection', socket);
    const gated = gateRequests(socket, {
      decide(method, url, fields, busy) {
        seen.push({ method, url, fields: [...fields], busy });
        return stopIf(url);
      },
      stopped(handle, head, rest) {
        if (handle) cleanup.push(() => handle.close());
        onStopped({ handle, head: head.toString('latin1'), rest: rest.toString('latin1') });
      },
    });
    expect(gated).toBe(true);
  });
  await new Promise<void>((resolve) => inner.listen(0, '127.0.0.1', resolve));
  cleanup.push(() => {
    for (const s of sockets) s.destroy();
    inner.close();
  });
  const port = (inner.address() as net.AddressInfo).port;
  const client = net.connect(port, '127.0.0.1');
  client.on('error', () => {});
  cleanup.push(() => client.destroy());
  let answers = '';
  client.on('data', (d) => {
    answers += d.toString('latin1');
  });
  await new Promise((resolve) => client.once('connect', resolve));
  return { client, seen, served, stopped, answers: () => answers };
}

const until = async (check: () => boolean) => {
  for (let i = 0; i < 200 && !check(); i++) await new Promise((r) => setTimeout(r, 5));
};

describe.each([
  ['straight from the handle', false],
  ['through the stream', true],
])('the request gate, bytes %s', (_how, viaStream) => {
  it('sees each head before the server, and a stopped request keeps every byte after its head', async () => {
    const t = await gatedServer((url) => url.startsWith('/move'), viaStream);
    t.client.write('GET /a HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => t.answers().includes('ok /a'));
    expect(t.served).toEqual(['/a']);
    t.client.write(
      'POST /move?q=1 HTTP/1.1\r\nHost: y\r\nX-Forwarded-For:  203.0.113.7 \r\n' +
        'Content-Length: 5\r\n\r\nhelloGET /next HTTP/1.1\r\n\r\n',
    );
    const stop = await t.stopped;
    expect(t.served).toEqual(['/a']);
    expect(t.seen.map((s) => [s.method, s.url, s.busy])).toEqual([
      ['GET', '/a', false],
      ['POST', '/move?q=1', false],
    ]);
    expect(t.seen[1]?.fields).toEqual([
      'Host',
      'y',
      'X-Forwarded-For',
      '203.0.113.7',
      'Content-Length',
      '5',
    ]);
    expect(stop.head).toBe(
      'POST /move?q=1 HTTP/1.1\r\nHost: y\r\nX-Forwarded-For: 203.0.113.7\r\n' +
        'Content-Length: 5\r\n\r\n',
    );
    expect(stop.rest).toBe('helloGET /next HTTP/1.1\r\n\r\n');
    // The connection is open and the handle usable: a server taking it reads on from there.
    expect(stop.handle).toBeDefined();
    const again = new net.Socket({ handle: stop.handle } as net.SocketConstructorOpts);
    cleanup.push(() => again.destroy());
    again.write('HTTP/1.1 204 No Content\r\n\r\n');
    await until(() => t.answers().includes('204'));
    expect(t.answers()).toContain('204 No Content');
  });

  it('says busy for a request pipelined behind one still being answered', async () => {
    const t = await gatedServer(() => false, viaStream);
    t.client.write('GET /1 HTTP/1.1\r\nHost: x\r\n\r\nGET /2 HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => t.answers().includes('ok /2'));
    expect(t.seen.map((s) => [s.url, s.busy])).toEqual([
      ['/1', false],
      ['/2', true],
    ]);
    expect(t.served).toEqual(['/1', '/2']);
  });
});

describe('relay internals on this Node version', () => {
  /** A reader set up after a gate taught it the parser class; collects (status, keepAlive). */
  async function reader() {
    // The parser class is learned from a live server parser: gate one connection first.
    const t = await gatedServer(() => false);
    t.client.write('GET /warm HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(() => t.answers().includes('ok /warm'));
    const answers: [number, boolean][] = [];
    const r = responseReader((status, keepAlive) => answers.push([status, keepAlive]));
    if (!r) throw new Error('no response reader on this Node');
    cleanup.push(() => r.close());
    return { r, answers };
  }

  it('reads where each answer ends: lengths, chunks, HEAD, interim answers, close-delimited', async () => {
    const { r, answers } = await reader();
    r.expect(false);
    r.expect(false);
    r.expect(true);
    r.expect(false);
    const stream =
      'HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nhello' +
      'HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n' +
      'HTTP/1.1 200 OK\r\nContent-Length: 99\r\n\r\n' + // HEAD: no body, whatever it says
      'HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\nConnection: close\r\n\r\n';
    // Byte by byte: ends are found however the stream is cut.
    for (const byte of Buffer.from(stream, 'latin1')) expect(r.read(Buffer.of(byte))).toBe(true);
    expect(answers).toEqual([
      [200, true],
      [201, true],
      [200, true],
      [204, false],
    ]);
    // An HTTP/1.0 answer without a length ends with the stream.
    const closing = await reader();
    closing.r.expect(false);
    closing.r.read(Buffer.from('HTTP/1.0 200 OK\r\n\r\nuntil the end', 'latin1'));
    expect(closing.answers).toEqual([]);
    closing.r.finish();
    expect(closing.answers).toEqual([[200, false]]);
    // A 101 reports -1 (the stream is no longer HTTP); garbage is a parse error.
    const up = await reader();
    up.r.expect(false);
    up.r.read(Buffer.from('HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n', 'latin1'));
    expect(up.answers).toEqual([[-1, true]]);
    const bad = await reader();
    expect(bad.r.read(Buffer.from('garbage\r\n\r\n', 'latin1'))).toBe(false);
  });

  it("the busy mark keeps the server's closeIdleConnections off a connection", async () => {
    let served!: net.Socket;
    const server = http.createServer((req, res) => {
      served = req.socket;
      res.end('ok');
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    cleanup.push(() => {
      server.closeAllConnections();
      server.close();
    });
    const client = net.connect((server.address() as net.AddressInfo).port, '127.0.0.1');
    client.on('error', () => {});
    cleanup.push(() => client.destroy());
    client.write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
    await until(
      () => served !== undefined && (served as { _httpMessage?: unknown })._httpMessage == null,
    );
    expect(markRelaying(served, true)).toBe(true);
    server.closeIdleConnections();
    await new Promise((r) => setTimeout(r, 20));
    expect(served.destroyed).toBe(false);
    expect(markRelaying(served, false)).toBe(true);
    server.closeIdleConnections();
    await until(() => served.destroyed);
    expect(served.destroyed).toBe(true);
  });
});
