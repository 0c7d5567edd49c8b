import http from 'node:http';
import type { AddressInfo } from 'node:net';
import session, { Store } from 'express-session';
import { afterEach, describe, expect, it, vi } from 'vitest';
import { ReplicatedStore, type SessionData } from '../../src/replication/store.js';

const stores: ReplicatedStore[] = [];
function store(options: ConstructorParameters<typeof ReplicatedStore>[0] = {}) {
  const s = new ReplicatedStore(options);
  stores.push(s);
  return s;
}

afterEach(async () => {
  vi.useRealTimers();
  await Promise.all(stores.splice(0).map((s) => s.close()));
});

function sess(expiresInMs: number | null, extra: Record<string, unknown> = {}): SessionData {
  return {
    cookie: {
      originalMaxAge: expiresInMs,
      expires: expiresInMs === null ? null : new Date(Date.now() + expiresInMs),
    },
    ...extra,
  };
}

describe('ReplicatedStore: the express-session store contract', () => {
  it('is an express-session Store and answers through callbacks, asynchronously', async () => {
    const s = store();
    expect(s).toBeInstanceOf(Store);
    let sync = true;
    const got = await new Promise<unknown>((resolve, reject) => {
      s.set('a', sess(60_000, { user: 'ann' }), (err) => {
        if (err) reject(err);
        s.get('a', (err2, value) => (err2 ? reject(err2) : resolve(value)));
      });
      expect(sync).toBe(true);
      sync = false;
    });
    expect(got).toMatchObject({ user: 'ann' });
  });

  it('offers promise forms of every method', async () => {
    const s = store();
    await s.set('a', sess(60_000, { n: 1 }));
    await s.set('b', sess(60_000, { n: 2 }));
    expect(await s.get('a')).toMatchObject({ n: 1 });
    expect(await s.length()).toBe(2);
    expect((await s.ids())?.sort()).toEqual(['a', 'b']);
    expect(Object.keys((await s.all()) ?? {}).sort()).toEqual(['a', 'b']);
    await s.destroy('a');
    expect(await s.get('a')).toBeNull();
    await s.clear();
    expect(await s.length()).toBe(0);
  });

  it('set is an upsert, and what get returns is a copy', async () => {
    const s = store();
    await s.set('a', sess(60_000, { list: [1] }));
    const first = (await s.get('a')) as SessionData & { list: number[] };
    first.list.push(2);
    expect(await s.get('a')).toMatchObject({ list: [1] });
    await s.set('a', sess(60_000, { list: [9] }));
    expect(await s.get('a')).toMatchObject({ list: [9] });
    expect(await s.length()).toBe(1);
  });

  it('takes the lifetime from cookie.expires, falls back to ttl, and deletes on a past expiry', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const s = store({ ttl: 5_000 });
    await s.set('cookie', sess(60_000));
    await s.set('browser-session', sess(null));
    await s.set('past', sess(-1));
    expect(await s.get('past')).toBeNull();
    vi.setSystemTime(1_000_000 + 5_001);
    expect(await s.get('browser-session')).toBeNull();
    expect(await s.get('cookie')).not.toBeNull();
    vi.setSystemTime(1_000_000 + 60_001);
    expect(await s.get('cookie')).toBeNull();
    expect(await s.length()).toBe(0);
  });

  it('touch raises the expiry without rewriting data; disableTouch ignores it', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const s = store();
    await s.set('a', sess(10_000, { v: 1 }));
    await s.touch('a', sess(100_000, { v: 'stale copy' }));
    vi.setSystemTime(1_000_000 + 50_000);
    expect(await s.get('a')).toMatchObject({ v: 1 });
    const still = store({ disableTouch: true });
    vi.setSystemTime(1_000_000);
    await still.set('a', sess(10_000));
    await still.touch('a', sess(100_000));
    vi.setSystemTime(1_000_000 + 50_000);
    expect(await still.get('a')).toBeNull();
  });

  it('skips touches that would move the expiry by less than touchAfter or a tenth of the lifetime', async () => {
    vi.useFakeTimers({ now: 1_000_000 });
    const s = store();
    await s.set('long', sess(3_600_000));
    await s.set('short', sess(5_000));
    vi.setSystemTime(1_000_000 + 2_000);
    // 2 s later: an hour-long session gains 2 s (< 10 s: skipped), a 5 s one gains 2 s (> 0.5 s).
    await s.touch('long', sess(3_600_000));
    await s.touch('short', sess(5_000));
    vi.setSystemTime(1_000_000 + 6_000);
    expect(await s.get('short')).not.toBeNull();
    vi.setSystemTime(1_000_000 + 3_600_000 + 1);
    expect(await s.get('long')).toBeNull();
    const every = store({ touchAfter: 0 });
    vi.setSystemTime(1_000_000);
    await every.set('long', sess(3_600_000));
    vi.setSystemTime(1_000_000 + 2_000);
    await every.touch('long', sess(3_600_000));
    vi.setSystemTime(1_000_000 + 3_600_000 + 1);
    expect(await every.get('long')).not.toBeNull();
  });

  it('a touch after a logout does not bring the session back', async () => {
    const s = store();
    await s.set('a', sess(60_000, { user: 'ann' }));
    await s.destroy('a');
    await s.touch('a', sess(60_000, { user: 'ann' }));
    expect(await s.get('a')).toBeNull();
  });

  it('refuses a session over maxSessionBytes with a clear error and keeps the old one', async () => {
    const s = store({ maxSessionBytes: 1_024 });
    await s.set('a', sess(60_000, { small: true }));
    await expect(s.set('a', sess(60_000, { big: 'x'.repeat(2_000) }))).rejects.toMatchObject({
      code: 'ERR_STICKY_SESSION_TOO_LARGE',
    });
    expect(await s.get('a')).toMatchObject({ small: true });
  });

  it.each([
    ['300 characters long', 'L'.repeat(300), /300 characters long, over the limit of 256/],
    ['empty', '', /is empty/],
    ['not a string', 42, /not a string/],
    ['with a lone surrogate', 'abc\uD800def', /lone UTF-16 surrogate/],
  ])(
    'refuses a session id %s in set, destroy and touch, before applying anything',
    async (_, sid, why) => {
      const s = store();
      const changes: unknown[] = [];
      s.on('change', (c) => changes.push(c));
      const id = sid as string;
      for (const call of [
        () => s.set(id, sess(60_000, { user: 'ann' })),
        () => s.destroy(id),
        () => s.touch(id, sess(60_000, { user: 'ann' })),
      ]) {
        const err = await (call() as Promise<void>).catch((e: unknown) => e);
        expect(err).toMatchObject({
          name: 'StickyMeshError',
          code: 'ERR_STICKY_INVALID_SESSION_ID',
        });
        expect((err as Error).message).toMatch(why);
        expect((err as Error).message).toMatch(/nothing was written/);
      }
      expect(await s.length()).toBe(0);
      expect(await s.get(id)).toBeNull();
      expect(changes).toEqual([]);
    },
  );

  it('takes an id of exactly 256 characters, and non-ASCII ids', async () => {
    const s = store();
    await s.set('x'.repeat(256), sess(60_000, { user: 'ann' }));
    await s.set('ß€😀', sess(60_000, { user: 'bob' }));
    expect(await s.get('x'.repeat(256))).toMatchObject({ user: 'ann' });
    expect(await s.get('ß€😀')).toMatchObject({ user: 'bob' });
  });

  it('the size error names the session, its size and the limit; maxSessionBytes is capped at the limit every replica accepts', async () => {
    const s = store({ maxSessionBytes: 1_024 });
    const err = await (s.set('a', sess(60_000, { big: 'x'.repeat(2_000) })) as Promise<void>).catch(
      (e: unknown) => e as Error,
    );
    expect(err?.message).toMatch(/session a is \d+ bytes as JSON, over maxSessionBytes \(1024\)/);
    expect(() => new ReplicatedStore({ maxSessionBytes: 64 * 1024 * 1024 + 1 })).toThrow(
      /"maxSessionBytes"/,
    );
  });

  it('holds 1,000 sessions and lists them all', async () => {
    const s = store();
    await Promise.all(Array.from({ length: 1_000 }, (_, i) => s.set(`s${i}`, sess(60_000, { i }))));
    expect(await s.length()).toBe(1_000);
    const all = (await s.all()) ?? {};
    expect(Object.keys(all)).toHaveLength(1_000);
    expect(all.s999).toMatchObject({ i: 999 });
  });

  it('rejects unknown and out-of-range options by name', () => {
    expect(() => new ReplicatedStore({ tll: 5 } as never)).toThrow(/"tll"/);
    expect(() => new ReplicatedStore({ ttl: 0 })).toThrow(/"ttl"/);
    expect(() => new ReplicatedStore({ disableTouch: 'yes' } as never)).toThrow(/"disableTouch"/);
  });

  it('refuses writes once closed, and its sweeper never holds the process open', async () => {
    const s = store();
    await s.close();
    await s.close();
    await expect(s.set('a', sess(60_000))).rejects.toMatchObject({
      code: 'ERR_STICKY_STORE_CLOSED',
    });
  });
});

describe('ReplicatedStore under the real express-session middleware', () => {
  it('keeps a login across requests, and a logout ends it', async () => {
    const s = store();
    const mw = session({
      store: s,
      secret: 'test secret',
      resave: false,
      saveUninitialized: false,
    });
    const server = http.createServer((req, res) => {
      mw(req as never, res as never, () => {
        const r = req as unknown as {
          url: string;
          session: Record<string, unknown> & { destroy(cb: () => void): void };
        };
        if (r.url === '/login') r.session.user = 'ann';
        if (r.url === '/logout') {
          r.session.destroy(() => res.end('bye'));
          return;
        }
        res.end(String(r.session.user ?? 'nobody'));
      });
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    const port = (server.address() as AddressInfo).port;
    const call = async (path: string, cookie?: string) => {
      const res = await fetch(`http://127.0.0.1:${port}${path}`, {
        headers: cookie ? { cookie } : {},
      });
      return { text: await res.text(), cookie: res.headers.get('set-cookie')?.split(';')[0] };
    };
    try {
      const login = await call('/login');
      expect(login.cookie).toMatch(/^connect\.sid=s%3A/);
      expect((await call('/', login.cookie)).text).toBe('ann');
      expect(await s.length()).toBe(1);
      await call('/logout', login.cookie);
      expect((await call('/', login.cookie)).text).toBe('nobody');
      expect(await s.length()).toBe(0);
    } finally {
      await new Promise((resolve) => server.close(resolve));
    }
  });
});
