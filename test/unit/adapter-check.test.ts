// The primary's check of @socket.io/cluster-adapter's setup (src/master/adapter-check.ts), on
// messages shaped as the adapter sends them: { source: '_sio_adapter', uid, nsp, type, data }.
import cluster from 'node:cluster';
import { afterEach, beforeEach, describe, expect, it, vi } from 'vitest';
import type { ResolvedLogger } from '../../src/logger.js';
import { ADAPTER_WARNINGS, AdapterCheck } from '../../src/master/adapter-check.js';

const adapter = (type: number, data?: unknown) => ({
  source: '_sio_adapter',
  uid: 'abc',
  nsp: '/',
  type,
  ...(data === undefined ? {} : { data }),
});
/** A broadcast whose packet carries a Buffer, as JSON serialization delivers it. */
const jsonBroadcast = adapter(3, {
  opts: { rooms: [], except: [] },
  packet: { type: 2, nsp: '/', data: ['bin', { type: 'Buffer', data: [1, 2, 3] }] },
});

describe('AdapterCheck', () => {
  let warn: ReturnType<typeof vi.spyOn>;
  let logged: string[];
  let logger: ResolvedLogger;
  const relay = () => undefined;

  beforeEach(() => {
    warn = vi.spyOn(process, 'emitWarning').mockImplementation(() => undefined);
    logged = [];
    const quiet = () => undefined;
    logger = { error: quiet, info: quiet, debug: quiet, warn: (m) => logged.push(m) };
  });
  afterEach(() => {
    cluster.off('message', relay);
    vi.restoreAllMocks();
  });

  const codes = () => warn.mock.calls.map((c: unknown[]) => (c[1] as { code?: string }).code);

  it('warns once, with its code, when adapter messages come and nothing relays them', () => {
    const check = new AdapterCheck('advanced', logger);
    // The adapter's first message may beat the application's setupPrimary(): not judged.
    check.seen(adapter(1));
    expect(codes()).toEqual([]);
    check.seen(adapter(2));
    check.seen(adapter(3, { packet: { data: ['x'] } }));
    expect(codes()).toEqual([ADAPTER_WARNINGS.noRelay]);
    expect(logged).toEqual([expect.stringMatching(/call setupPrimary\(\)/)]);
  });

  it('says nothing when a listener on cluster messages (setupPrimary) relays them', () => {
    cluster.on('message', relay);
    const check = new AdapterCheck('advanced', logger);
    for (let i = 0; i < 3; i++) check.seen(jsonBroadcast);
    expect(codes()).toEqual([]);
  });

  it("warns once about a Buffer that crossed as JSON, and never with 'advanced'", () => {
    cluster.on('message', relay);
    const json = new AdapterCheck('json', logger);
    json.seen(adapter(3, { packet: { data: ['text only'] } }));
    expect(codes()).toEqual([]);
    json.seen(jsonBroadcast);
    json.seen(jsonBroadcast);
    expect(codes()).toEqual([ADAPTER_WARNINGS.jsonBuffer]);
    expect(logged).toEqual([expect.stringMatching(/serialization: 'advanced'/)]);
    new AdapterCheck('advanced', logger).seen(jsonBroadcast);
    expect(codes()).toEqual([ADAPTER_WARNINGS.jsonBuffer]);
  });

  it('ignores other messages, and looks at a bounded part of a huge one', () => {
    const check = new AdapterCheck('json', logger);
    for (const raw of [null, 'text', 42, { source: 'other', type: 3 }, { src: 'sticky-mesh' }]) {
      check.seen(raw);
    }
    expect(codes()).toEqual([]);
    cluster.on('message', relay);
    // A million elements, each read counted: the search reads a bounded number of them.
    let reads = 0;
    const huge = new Proxy(
      Array.from({ length: 1e6 }, () => ({ a: 1 })),
      {
        get(target, key, receiver) {
          if (typeof key === 'string' && /^\d+$/.test(key)) reads++;
          return Reflect.get(target, key, receiver);
        },
      },
    );
    check.seen(adapter(3, { packet: { data: [huge] } }));
    expect(reads).toBeGreaterThan(0);
    expect(reads).toBeLessThanOrEqual(256);
    expect(codes()).toEqual([]);
  });
});
