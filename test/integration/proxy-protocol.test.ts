import net from 'node:net';
import tls from 'node:tls';
import { afterAll, describe, expect, it } from 'vitest';
import { startFixture, stopFixtures } from '../helpers/cluster.js';
import { hasTool, useSelfSignedCert } from '../helpers/system.js';

function v1(source: string): Buffer {
  return Buffer.from(`PROXY TCP4 ${source} 10.0.0.1 40000 443\r\n`, 'latin1');
}

/** v1 from a dual-stack proxy: TCP6 with IPv4-mapped addresses. */
function v1Mapped(source: string): Buffer {
  return Buffer.from(`PROXY TCP6 ::ffff:${source} ::ffff:10.0.0.1 40000 443\r\n`, 'latin1');
}

function v2(source: string): Buffer {
  const octets = source.split('.').map(Number);
  const sig = [0x0d, 0x0a, 0x0d, 0x0a, 0x00, 0x0d, 0x0a, 0x51, 0x55, 0x49, 0x54, 0x0a];
  return Buffer.from([...sig, 0x21, 0x11, 0, 12, ...octets, 10, 0, 0, 1, 0x9c, 0x40, 0x01, 0xbb]);
}

const GET = Buffer.from('GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n', 'latin1');

/** Sends `parts` from `localAddress` and returns the worker slot in the reply (or the reply). */
function exchange(port: number, localAddress: string, parts: Buffer[]): Promise<string> {
  return new Promise((resolve) => {
    const socket = net.connect({ port, host: '127.0.0.1', localAddress });
    const got: Buffer[] = [];
    socket.on('connect', () => {
      for (const p of parts) socket.write(p);
    });
    socket.on('data', (c) => got.push(c));
    socket.on('error', () => {});
    socket.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
    setTimeout(() => socket.destroy(), 3_000).unref();
  });
}

function slotOf(reply: string): number | undefined {
  const m = /"slot":(\d+)/.exec(reply);
  return m ? Number(m[1]) : undefined;
}

const CLIENTS = Array.from({ length: 16 }, (_, i) => `203.0.113.${i + 1}`);

describe('PROXY protocol (HAProxy send-proxy / send-proxy-v2)', () => {
  afterAll(stopFixtures);

  it('keys each connection by the PROXY source, v1 (TCP4, TCP6 IPv4-mapped) and v2 alike, whatever the TCP peer', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '4', STICKY_OPTIONS: JSON.stringify({ proxyProtocol: true, seed: 7 }) },
    });
    const port = app.port();
    const slots = new Set<number | undefined>();
    for (const [i, client] of CLIENTS.entries()) {
      const a = slotOf(await exchange(port, `127.0.0.${2 + i}`, [v1(client), GET]));
      const b = slotOf(await exchange(port, `127.0.0.${40 + i}`, [v2(client), GET]));
      const c = slotOf(await exchange(port, `127.0.0.${80 + i}`, [v1Mapped(client), GET]));
      expect(a, `${client}\n${app.transcript()}`).toBeDefined();
      expect(b, client).toBe(a);
      expect(c, `${client} as ::ffff:${client}`).toBe(a);
      slots.add(a);
    }
    expect(slots).toEqual(new Set([0, 1, 2, 3]));
  });

  it('closes a connection that does not start with a PROXY header, without answering', async () => {
    const app = await startFixture({
      fixture: 'ip-app.mjs',
      env: { WORKERS: '2', STICKY_OPTIONS: JSON.stringify({ proxyProtocol: true }) },
    });
    expect(await exchange(app.port(), '127.0.0.9', [GET])).toBe('');
  });
});

describe.skipIf(!hasTool('openssl'))(
  'PROXY protocol in front of TLS terminated in the workers (needs openssl)',
  () => {
    const tlsFiles = useSelfSignedCert();
    afterAll(stopFixtures);

    it('routes by the PROXY source and completes the TLS handshake in the worker', async () => {
      const app = await startFixture({
        fixture: 'ip-app.mjs',
        env: {
          WORKERS: '2',
          HTTPS_CERT: tlsFiles.cert,
          HTTPS_KEY: tlsFiles.key,
          STICKY_OPTIONS: JSON.stringify({ proxyProtocol: true, seed: 7 }),
        },
      });
      const port = app.port();
      const overTls = (client: string) =>
        new Promise<string>((resolve, reject) => {
          const raw = net.connect({ port, host: '127.0.0.1' }, () => {
            raw.write(v1(client));
            const secure = tls.connect(
              { socket: raw, rejectUnauthorized: false, servername: 'localhost' },
              () => secure.write(GET),
            );
            const got: Buffer[] = [];
            secure.on('data', (c) => got.push(c));
            secure.on('error', reject);
            secure.on('close', () => resolve(Buffer.concat(got).toString('latin1')));
          });
          raw.on('error', reject);
          setTimeout(() => raw.destroy(), 4_000).unref();
        });
      const slots = new Set<number | undefined>();
      for (const client of CLIENTS.slice(0, 8)) {
        const first = slotOf(await overTls(client));
        const second = slotOf(await overTls(client));
        expect(first, `${client}\n${app.transcript()}`).toBeDefined();
        expect(second, client).toBe(first);
        slots.add(first);
      }
      expect(slots).toEqual(new Set([0, 1]));
    });
  },
);
