import http from 'node:http';
import { io, type Socket } from 'socket.io-client';
import { afterAll, describe, expect, it, vi } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { loopbackSources, request } from '../helpers/http.js';

afterAll(stopFixtures);

interface Hello {
  pid: number;
  slot: number;
}

/** Connects like a browser would (polling first, then the WebSocket upgrade) from `source`. */
async function client(port: number, source: string) {
  // One keep-alive agent per client, as a browser has: its polling requests share connections.
  const agent = new http.Agent({ keepAlive: true, localAddress: source });
  const socket: Socket = io(`http://127.0.0.1:${port}`, {
    agent: agent as never,
    reconnection: false,
  });
  const hello = await new Promise<Hello>((resolve, reject) => {
    socket.once('hello', resolve);
    socket.once('connect_error', reject);
  });
  await vi.waitFor(() => expect(socket.io.engine.transport.name).toBe('websocket'), {
    timeout: 5_000,
  });
  const echo = await socket.timeout(3_000).emitWithAck('echo', `from ${source}`);
  return { socket, agent, hello, echo: echo as { slot: number; length: number } };
}

describe('examples/socketio (what `npm start` runs)', () => {
  it('serves its page, and every Socket.io client upgrades to a WebSocket on the worker that greeted it', async () => {
    const app = await startFixture({
      fixture: '../../examples/socketio/server.js',
      env: { PORT: '0', WORKERS: '2' },
      until: null,
    });
    const port = await vi.waitFor(
      () => {
        const m = /chat on http:\/\/localhost:(\d+) with 2 workers/.exec(app.stdout);
        if (!m) throw new Error(`not ready yet:\n${app.stdout}${app.stderr}`);
        return Number(m[1]);
      },
      { timeout: 15_000, interval: 50 },
    );
    const page = await request({ port, source: '127.0.0.2', path: '/' });
    expect(page.status).toBe(200);
    expect(page.text).toContain('<h1>sticky-mesh chat</h1>');

    const clients = await Promise.all(loopbackSources(10).map((s) => client(port, s)));
    try {
      for (const c of clients) expect(c.echo.slot).toBe(c.hello.slot);
      expect(new Set(clients.map((c) => c.hello.slot))).toEqual(new Set([0, 1]));
    } finally {
      for (const c of clients) {
        c.socket.close();
        c.agent.destroy();
      }
    }
  });
});
