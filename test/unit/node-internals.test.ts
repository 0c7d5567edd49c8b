// Each Node.js internal the library relies on (src/node-internals.ts), checked on live objects
// of the running Node: a new Node version that breaks one fails here, by name, before any
// integration test fails for reasons that are harder to read. CI runs this on every supported
// version.
import { fork } from 'node:child_process';
import type { Worker } from 'node:cluster';
import { rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { afterEach, describe, expect, it } from 'vitest';
import {
  dropHandleQueue,
  handleFd,
  handleOf,
  handlesAhead,
  inheritNoDelay,
  interceptAccept,
  isRawHandle,
  listenCalled,
  onHandleAnswers,
  type RawHandle,
  readState,
  releaseHandle,
  socketFromHandle,
  takeFromServer,
  trackConnections,
} from '../../src/node-internals.js';

const cleanup: (() => void)[] = [];
afterEach(() => {
  for (const fn of cleanup.splice(0)) fn();
});

function listen(server: net.Server): Promise<number> {
  cleanup.push(() => {
    if (server instanceof http.Server) server.closeAllConnections();
    server.close();
  });
  return new Promise((resolve) =>
    server.listen(0, '127.0.0.1', () => resolve((server.address() as net.AddressInfo).port)),
  );
}

function connect(port: number): net.Socket {
  const client = net.connect(port, '127.0.0.1');
  client.on('error', () => {});
  cleanup.push(() => client.destroy());
  return client;
}

/** A request served by a real http server: its socket and response, inside the handler. */
async function served(): Promise<{ socket: net.Socket; res: http.ServerResponse }> {
  let resolve!: (v: { socket: net.Socket; res: http.ServerResponse }) => void;
  const seen = new Promise<{ socket: net.Socket; res: http.ServerResponse }>((r) => {
    resolve = r;
  });
  const server = http.createServer((req, res) => resolve({ socket: req.socket, res }));
  const port = await listen(server);
  connect(port).write('GET / HTTP/1.1\r\nHost: x\r\n\r\n');
  return seen;
}

describe('Node internals on this Node version', () => {
  it('stream_wrap exposes its read state (direct reads from handles)', () => {
    expect(readState).toBeDefined();
    expect(readState?.streamBaseState).toBeInstanceOf(Int32Array);
  });

  it('a listening server gives its accepted connections up as raw handles', async () => {
    const server = net.createServer(() => {
      throw new Error('the server must not see the connection');
    });
    const port = await listen(server);
    const accepted = new Promise<RawHandle | undefined>((resolve) => {
      expect(
        interceptAccept(server, (status, client) => resolve(status === 0 ? client : undefined)),
      ).toBe(true);
    });
    connect(port);
    const handle = await accepted;
    expect(isRawHandle(handle)).toBe(true);
    const peer: { address?: string } = {};
    (handle as RawHandle).getpeername(peer);
    expect(peer.address).toBe('127.0.0.1');
    expect(handleFd(handle as RawHandle)).toBeGreaterThanOrEqual(0);
    // A raw handle wraps into a socket that reads and writes.
    const socket = socketFromHandle(handle as RawHandle);
    cleanup.push(() => socket.destroy());
    expect(handleOf(socket)).toBe(handle);
    expect(inheritNoDelay(server)).toBe(process.platform === 'linux');
  });

  it('a served socket can be taken from its server without closing the connection', async () => {
    const { socket, res } = await served();
    res.end('ok');
    await new Promise((resolve) => res.once('finish', resolve));
    const handle = takeFromServer(socket);
    expect(handle).toBeDefined();
    expect(handleOf(socket)).toBeNull();
    expect(releaseHandle(socket)).toBeNull();
    cleanup.push(() => handle?.close());
  });

  it('http.Server keeps its connection tracking in a listening handler of its own', () => {
    const server = http.createServer();
    expect(trackConnections(server)).toBe(true);
    cleanup.push(() => server.close());
  });

  it('a server counts its listen() calls, so one still resolving its host is seen as told to listen', async () => {
    const fresh = http.createServer();
    expect(listenCalled(fresh)).toBe(false);
    // A host name to resolve: listen() returns before anything is bound, as in a cluster worker
    // (which asks the primary for the port).
    const pending = http.createServer();
    const listening = new Promise((resolve) => pending.once('listening', resolve));
    pending.listen(0, 'localhost');
    cleanup.push(() => pending.close());
    expect(pending.listening).toBe(false);
    expect(listenCalled(pending)).toBe(true);
    await listening;
    expect(listenCalled(pending)).toBe(true);
  });

  it('a child process acknowledges each handle on the internal channel, and Node queues the rest', async () => {
    // The cluster channel is a child_process IPC channel: a forked child stands in for a worker.
    const script = path.join(os.tmpdir(), `sticky-mesh-internals-${process.pid}.cjs`);
    writeFileSync(script, "process.on('message', (m, h) => { if (h) h.close(); });\n");
    cleanup.push(() => rmSync(script, { force: true }));
    const child = fork(script, [], { stdio: 'ignore' });
    cleanup.push(() => child.kill('SIGKILL'));
    const worker = { process: child } as unknown as Worker;
    const server = net.createServer();
    const port = await listen(server);
    const handles: RawHandle[] = [];
    const accepted = new Promise<void>((resolve) => {
      interceptAccept(server, (_status, client) => {
        handles.push(client as RawHandle);
        if (handles.length === 3) resolve();
      });
    });
    for (let i = 0; i < 3; i++) connect(port);
    await accepted;
    const answers: boolean[] = [];
    const allAnswered = new Promise<void>((resolve) => {
      const stop = onHandleAnswers(worker, (taken) => {
        answers.push(taken);
        if (answers.length === 3) {
          stop();
          resolve();
        }
      });
    });
    expect(handlesAhead(worker)).toBe(0);
    for (const handle of handles) child.send({ n: 1 }, handle as never);
    // One handle in flight, two queued behind it.
    expect(handlesAhead(worker)).toBe(3);
    await allAnswered;
    expect(answers).toEqual([true, true, true]);
    expect(handlesAhead(worker)).toBe(0);
    dropHandleQueue(worker);
    for (const handle of handles) handle.close();
    // Where a Node has no such queue, the caller is told so (and counts its own handles).
    expect(handlesAhead({ process: {} } as unknown as Worker)).toBeUndefined();
  });
});
