import { describe, expect, it } from 'vitest';
import {
  MessageType,
  message,
  PROTOCOL_VERSION,
  parseMessage,
  SOURCE,
} from '../../src/protocol/messages.js';

describe('IPC protocol', () => {
  it('round-trips every message type through JSON', () => {
    const all = [
      message(MessageType.Ready, { slot: 3 }),
      message(MessageType.Connection, {}),
      message(MessageType.Shutdown, {}),
      message(MessageType.StartFailed, { reason: 'boom' }),
      message(MessageType.StartFailed, {
        reason: 'boom',
        thrown: { name: 'Error', message: 'boom', code: 'E_X', stack: 'Error: boom\n    at f' },
      }),
      message(MessageType.Leaving, {}),
      message(MessageType.StoreQuery, { id: 7, sid: 'abcdefgh12345678' }),
      message(MessageType.StoreFound, { id: 7 }),
      message(MessageType.Ping, { n: 3 }),
      message(MessageType.Pong, { n: 3 }),
      message(MessageType.MetricsRequest, { id: 4 }),
      message(MessageType.MetricsReport, { id: 4, metrics: [{ name: 'x' }] }),
      message(MessageType.MetricsReport, { id: 5, metrics: [], error: 'no prom-client' }),
      message(MessageType.Shutdown, { reload: true, jitter: 2000 }),
      message(MessageType.Serve, { live: [0, 1], draining: 1 }),
      message(MessageType.Serve, { live: [0, 1], draining: 1, retained: ['a'] }),
      message(MessageType.Retain, {}),
      message(MessageType.Retain, { stop: true }),
      message(MessageType.Retained, { sids: ['a', 'b'] }),
      message(MessageType.Retiring, { add: ['a'], draining: 1 }),
      message(MessageType.Retiring, { remove: ['a'], draining: 0 }),
    ];
    for (const m of all) expect(parseMessage(JSON.parse(JSON.stringify(m)))).toEqual(m);
  });

  it.each([
    undefined,
    null,
    42,
    'ready',
    [],
    { cmd: 'NODE_CLUSTER' },
    { src: 'other-lib', v: PROTOCOL_VERSION, t: MessageType.Ready, slot: 0 },
    { src: SOURCE, v: 999, t: MessageType.Ready, slot: 0 },
    { src: SOURCE, v: PROTOCOL_VERSION, t: 999 },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Ready },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Ready, slot: 'x' },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.StartFailed, reason: 1 },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.StartFailed, reason: 'x', thrown: 'boom' },
    {
      src: SOURCE,
      v: PROTOCOL_VERSION,
      t: MessageType.StartFailed,
      reason: 'x',
      thrown: { name: 'Error', message: 'boom', stack: 42 },
    },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.StoreQuery, id: 1 },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.StoreQuery, id: 'x', sid: 'abc' },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.StoreFound, id: 1.5 },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.MetricsRequest },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.MetricsReport, id: 1, metrics: {} },
    {
      src: SOURCE,
      v: PROTOCOL_VERSION,
      t: MessageType.MetricsReport,
      id: 1,
      metrics: [],
      error: 2,
    },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Shutdown, reload: 'yes' },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Shutdown, jitter: -1.5 },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Serve, live: [0] },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Retained, sids: [1] },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Retiring, add: 'a', draining: 1 },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Retiring, add: ['a'] },
    { src: SOURCE, v: PROTOCOL_VERSION, t: MessageType.Retain, stop: 1 },
  ])('drops foreign or malformed input: %j', (input) => {
    expect(parseMessage(input)).toBeUndefined();
  });

  it('keeps its numeric type values (append-only)', () => {
    expect(MessageType).toEqual({
      Ready: 1,
      Connection: 2,
      Shutdown: 3,
      StartFailed: 4,
      Leaving: 5,
      Reroute: 6,
      Slots: 7,
      StoreChange: 8,
      StoreAck: 9,
      StoreState: 10,
      StoreHello: 11,
      StoreQuery: 12,
      StoreFound: 13,
      Ping: 14,
      Pong: 15,
      StoreOptions: 16,
      MetricsRequest: 17,
      MetricsReport: 18,
      Serve: 20,
      Retained: 21,
      Retiring: 22,
      Retain: 23,
      StoreBatch: 24,
      StoreLink: 25,
    });
  });
});
