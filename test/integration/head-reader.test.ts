// In one process, with real sockets on loopback: the primary-side head reader (proxy mode) and a
// simulated handoff (wrap the returned handle in a new socket, give it to an http server, replay
// the bytes), as the worker will do. What matters here is that no byte is lost or reordered.
import { createHash, randomBytes } from 'node:crypto';
import http from 'node:http';
import net from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import type { RawHandle } from '../../src/node-internals.js';
import {
  type HeadReadOptions,
  type HeadReadResult,
  readHead,
} from '../../src/routing/head-reader.js';

const OPTIONS: HeadReadOptions = {
  maxBytes: 16 * 1024,
  timeoutMs: 2_000,
  proxyProtocol: false,
  untilHead: true,
};

let listener: net.Server;
let port: number;
let options = OPTIONS;
const results: HeadReadResult[] = [];

const app = http.createServer((req, res) => {
  const hash = createHash('sha256');
  let bytes = 0;
  req.on('data', (c: Buffer) => {
    hash.update(c);
    bytes += c.length;
  });
  req.on('end', () =>
    res.end(
      JSON.stringify({
        bytes,
        sha256: hash.digest('hex'),
        xff: req.headers['x-forwarded-for'] ?? null,
      }),
    ),
  );
});

beforeAll(async () => {
  listener = net.createServer({ pauseOnConnect: true });
  await new Promise<void>((resolve) => listener.listen(0, '127.0.0.1', resolve));
  port = (listener.address() as net.AddressInfo).port;
  const h = (
    listener as unknown as { _handle: { onconnection: (s: number, c?: RawHandle) => void } }
  )._handle;
  h.onconnection = (status, client) => {
    if (status !== 0 || !client) return;
    readHead(client, options, (result) => {
      results.push(result);
      if (result.status === 'ok') {
        const socket = new net.Socket({
          handle: result.handle,
          readable: true,
          writable: true,
        } as net.SocketConstructorOpts);
        app.emit('connection', socket);
        socket.unshift(result.bytes);
      } else if (result.status !== 'closed') {
        const c = result.connection;
        if (c instanceof net.Socket) c.destroy();
        else c.close();
      }
    });
  };
});

afterAll(async () => {
  await new Promise((resolve) => listener.close(resolve));
  app.close();
});

/** Writes `parts` on a fresh connection, one write per part, and returns what came back. */
function exchange(parts: Buffer[], gapMs = 0): Promise<string> {
  return new Promise((resolve, reject) => {
    const socket = net.connect(port, '127.0.0.1');
    const got: Buffer[] = [];
    socket.on('data', (c) => got.push(c));
    socket.on('error', reject);
    socket.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    socket.on('connect', async () => {
      for (const part of parts) {
        socket.write(part);
        if (gapMs) await new Promise((r) => setTimeout(r, gapMs));
      }
    });
    setTimeout(() => socket.destroy(), 8_000).unref();
  });
}

function post(body: Buffer, extra = ''): Buffer {
  return Buffer.from(
    `POST /upload HTTP/1.1\r\nHost: x\r\nX-Forwarded-For: 203.0.113.9\r\n${extra}Content-Length: ${body.length}\r\nConnection: close\r\n\r\n`,
    'latin1',
  );
}

function answer(text: string): { bytes: number; sha256: string; xff: string | null } {
  const body = text.slice(text.indexOf('\r\n\r\n') + 4);
  return JSON.parse(body);
}

describe.each([
  ['handle', false],
  ['handle', true],
  ['socket', false],
] as const)(
  'reading the request head (read via %s, an immediate first read: %s)',
  (via, readNow) => {
    it('loses no byte of a 10 MB body written right behind the head', async () => {
      options = { ...OPTIONS, via, readNow };
      const body = randomBytes(10 * 1024 * 1024);
      const text = await exchange([Buffer.concat([post(body), body])]);
      expect(text).toMatch(/^HTTP\/1\.1 200/);
      expect(answer(text)).toEqual({
        bytes: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
        xff: '203.0.113.9',
      });
    });

    it('reads a head split into single bytes exactly as an unsplit one, body intact', async () => {
      options = { ...OPTIONS, via, readNow };
      const body = randomBytes(64 * 1024);
      const head = post(body);
      const parts = [...head].map((b) => Buffer.from([b]));
      const text = await exchange([...parts, body], 1);
      expect(answer(text)).toMatchObject({
        bytes: body.length,
        sha256: createHash('sha256').update(body).digest('hex'),
      });
      const ok = results.at(-1);
      expect(ok?.status).toBe('ok');
      if (ok?.status === 'ok') expect(ok.headLength).toBe(head.length);
    });

    it('gives up on a head larger than maxBytes', async () => {
      options = { ...OPTIONS, via, readNow, maxBytes: 1024 };
      await exchange([Buffer.from(`GET / HTTP/1.1\r\nX-Big: ${'a'.repeat(4096)}\r\n\r\n`)]);
      expect(results.at(-1)?.status).toBe('too-large');
    });

    it('gives up on a head that does not complete in time (slowloris)', async () => {
      options = { ...OPTIONS, via, readNow, timeoutMs: 200 };
      await exchange([Buffer.from('GET / HTTP/1.1\r\nHost: x\r\n')]);
      expect(results.at(-1)?.status).toBe('timeout');
    });

    it('strips a PROXY v1 header, reports its source, and replays only the request', async () => {
      options = { ...OPTIONS, via, readNow, proxyProtocol: true };
      const body = randomBytes(100_000);
      const text = await exchange(
        [Buffer.from('PROXY TCP4 198.51.100.4 10.0.0.1 40000 443\r\n'), post(body), body],
        2,
      );
      expect(answer(text)).toMatchObject({ bytes: body.length });
      const ok = results.at(-1);
      expect(ok).toMatchObject({ status: 'ok', source: '198.51.100.4' });
    });

    it('refuses a connection without the required PROXY header', async () => {
      options = { ...OPTIONS, via, readNow, proxyProtocol: true };
      await exchange([Buffer.from('GET / HTTP/1.1\r\n\r\n')]);
      expect(results.at(-1)?.status).toBe('bad-proxy');
    });
  },
);
