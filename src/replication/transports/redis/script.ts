import { compareVersions, type Version } from '../../clock.js';
import type { Change, SessionTable } from '../../table.js';
import { parseChange } from '../../wire.js';
import type { RedisClientLike } from './options.js';

/**
 * How sessions are kept in Redis: one hash per session (`t`, `c`, `n`: the version; `e`: the
 * expiry; `d`: the session JSON, absent in a tombstone), written only through {@link APPLY_LUA}, and read back by {@link scanRecords}.
 */

/**
 * Applies one change to a session's hash if its version is newer, and publishes it.
 * KEYS[1]: the session's key. ARGV: op, t, c, n, expiresAt, data, tombstoneTtl, now, channel,
 * message. Returns 1 if applied, 0 if stale. (HGET per field: it behaves the same in Redis and
 * in the Lua of test doubles.)
 */
export const APPLY_LUA = `
local key = KEYS[1]
local op, t, c, n = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3]), ARGV[4]
local e, ttl, now = tonumber(ARGV[5]), tonumber(ARGV[7]), tonumber(ARGV[8])
local function field(f)
  local v = redis.call('HGET', key, f)
  if v == false or v == nil then return nil end
  return v
end
local ct = field('t')
if ct then
  ct = tonumber(ct)
  local cc, cn = tonumber(field('c')), field('n')
  local newer = t > ct or (t == ct and (c > cc or (c == cc and n > cn)))
  if not newer then return 0 end
end
if op == 'touch' then
  local cur = tonumber(field('e'))
  if not ct or not cur or field('d') == nil or e <= cur then return 0 end
  redis.call('HSET', key, 'e', e)
  redis.call('PEXPIREAT', key, e + ttl)
elseif op == 'set' then
  if e <= now then return 0 end
  redis.call('DEL', key)
  redis.call('HSET', key, 't', t, 'c', c, 'n', n, 'e', e, 'd', ARGV[6])
  redis.call('PEXPIREAT', key, e + ttl)
else
  redis.call('DEL', key)
  redis.call('HSET', key, 't', t, 'c', c, 'n', n, 'e', now + ttl)
  redis.call('PEXPIREAT', key, now + ttl)
end
redis.call('PUBLISH', ARGV[9], ARGV[10])
return 1
`;

const APPLY_COMMAND = 'stickyMeshApply';
type Command = (...keyAndArgs: (string | number)[]) => Promise<number>;

/** Makes {@link APPLY_LUA} a command of `cmd` (ioredis runs it by its hash, loading it once). */
export function defineApply(cmd: RedisClientLike): void {
  cmd.defineCommand(APPLY_COMMAND, { numberOfKeys: 1, lua: APPLY_LUA });
}

/** Runs {@link APPLY_LUA} with {@link applyArgs}: 1 if applied, 0 if Redis held a newer one. */
export function runApply(cmd: RedisClientLike, keyAndArgs: (string | number)[]): Promise<number> {
  const run = (cmd as unknown as Record<string, Command>)[APPLY_COMMAND] as Command;
  return run.call(cmd, ...keyAndArgs);
}

/**
 * Runs {@link APPLY_LUA} once per entry of `batch` ({@link applyArgs} each) in one pipeline: the
 * commands go out in one write to the connection, in order, and their replies come back
 * together. Resolves with each one's result (1 applied, 0 stale) or error, in order; rejects
 * only if the pipeline as a whole failed (the connection went).
 */
export async function runApplyBatch(
  cmd: RedisClientLike,
  batch: readonly (string | number)[][],
): Promise<[Error | null, unknown][]> {
  const pipe = cmd.pipeline();
  const run = (pipe as unknown as Record<string, (...a: (string | number)[]) => unknown>)[
    APPLY_COMMAND
  ] as (...a: (string | number)[]) => unknown;
  for (const keyAndArgs of batch) run.apply(pipe, keyAndArgs);
  const results = await pipe.exec();
  if (!results || results.length !== batch.length) throw new Error('Redis pipeline failed');
  return results;
}

/** The key and arguments of {@link APPLY_LUA} for one change, in the script's order. */
export function applyArgs(
  keyPrefix: string,
  change: Change,
  tombstoneTtl: number,
  channel: string,
  message: string,
): (string | number)[] {
  const v = change.version;
  return [
    keyPrefix + change.sid,
    change.op,
    v.t,
    v.c,
    v.n,
    change.op === 'destroy' ? 0 : change.expiresAt,
    change.op === 'set' ? change.data : '',
    tombstoneTtl,
    Date.now(),
    channel,
    message,
  ];
}

/** A session hash as the script writes it, back to a change; `undefined` if it is not one. */
export function toChange(sid: string, value: unknown): Change | undefined {
  if (typeof value !== 'object' || value === null) return undefined;
  const h = value as Record<string, string>;
  if (h.t === undefined) return undefined;
  const version = { t: Number(h.t), c: Number(h.c), n: h.n };
  const expiresAt = Number(h.e);
  return parseChange(
    h.d === undefined
      ? { op: 'destroy', sid, version }
      : { op: 'set', sid, data: h.d, expiresAt, version },
  );
}

/** One session's record in Redis as a change; `undefined` if Redis holds none. */
export async function readRecord(
  cmd: RedisClientLike,
  keyPrefix: string,
  sid: string,
): Promise<Change | undefined> {
  return toChange(sid, await cmd.hgetall(keyPrefix + sid));
}

/** What Redis holds of each session: its version and, for a live session, its expiry. */
export type RecordVersions = Map<string, { version: Change['version']; e: number }>;

/**
 * Reads every record under `keyPrefix` (SCAN, then HGETALL pipelined per batch) and hands each
 * batch to `apply`; returns what Redis holds of each session.
 */
export async function scanRecords(
  cmd: RedisClientLike,
  keyPrefix: string,
  apply: (changes: Change[]) => void,
): Promise<RecordVersions> {
  const clientPrefix = cmd.options?.keyPrefix ?? '';
  const pattern = `${clientPrefix}${keyPrefix}*`;
  const versions: RecordVersions = new Map();
  let cursor = '0';
  do {
    const [next, keys] = await cmd.scan(cursor, 'MATCH', pattern, 'COUNT', 1000);
    cursor = next;
    if (keys.length === 0) continue;
    const pipe = cmd.pipeline();
    const names = keys.map((k) => k.slice(clientPrefix.length));
    for (const k of names) pipe.hgetall(k);
    const results = (await pipe.exec()) ?? [];
    const changes: Change[] = [];
    results.forEach(([err, value], i) => {
      if (err) return;
      const change = toChange((names[i] as string).slice(keyPrefix.length), value);
      if (!change) return;
      versions.set(change.sid, {
        version: change.version,
        e: change.op === 'set' ? change.expiresAt : 0,
      });
      changes.push(change);
    });
    apply(changes);
  } while (cursor !== '0');
  return versions;
}

/**
 * What a machine holds newer than Redis, to be written back after a rebuild (writes dropped
 * from a full queue, made while the rebuild ran, or lost when Redis restarted empty), so Redis
 * and every machine end up the same. What came from Redis itself (`inRedis`: scanned; `heard`:
 * published during the rebuild) is not sent again. A session is written back with its touched
 * expiry, not its last save's; a touch only when Redis holds the session with an earlier one.
 * With `onlyThese` (after an outage longer than Redis keeps tombstones, when a session Redis
 * lacks may have been ended elsewhere and forgotten), a session Redis lacks goes back only if
 * it is one of them (written here meanwhile); the others are listed in `gone`.
 */
export function* newerThanRedis(
  table: SessionTable,
  inRedis: RecordVersions,
  heard: ReadonlyMap<string, Version> | undefined,
  onlyThese?: ReadonlySet<string>,
  gone?: string[],
): IterableIterator<Change> {
  const known = (sid: string) => {
    const scanned = inRedis.get(sid)?.version;
    const h = heard?.get(sid);
    if (!scanned) return h;
    if (!h) return scanned;
    return compareVersions(h, scanned) > 0 ? h : scanned;
  };
  for (const change of table.changes()) {
    if (change.op === 'touch') {
      const r = inRedis.get(change.sid);
      if (r && compareVersions(change.version, r.version) > 0 && change.expiresAt > r.e) {
        yield change;
      }
      continue;
    }
    const there = known(change.sid);
    if (there !== undefined && compareVersions(change.version, there) <= 0) continue;
    if (there === undefined && onlyThese && !onlyThese.has(change.sid)) {
      gone?.push(change.sid);
      continue;
    }
    yield change.op === 'set'
      ? { ...change, expiresAt: table.record(change.sid)?.expiresAt ?? change.expiresAt }
      : change;
  }
}

/** A change as the script publishes it on the cluster's channel, with the machine that wrote it. */
export function channelMessage(machineId: string, change: Change): string {
  return JSON.stringify({ m: machineId, c: change });
}

/**
 * How every message {@link channelMessage} makes for `machineId` starts: a message that starts
 * so is this machine's own, known without parsing it.
 */
export function ownMessagePrefix(machineId: string): string {
  return `{"m":${JSON.stringify(machineId)},`;
}

/**
 * A message from the cluster's channel: its change, `'own'` for one this machine wrote, or
 * `undefined` for anything that is not a well-formed one. Never throws. `ownPrefix`
 * ({@link ownMessagePrefix} of `machineId`) spares parsing this machine's own messages, which
 * come back to its subscriber as every other machine's do.
 */
export function readChannelMessage(
  message: unknown,
  machineId: string,
  ownPrefix?: string,
): Change | 'own' | undefined {
  if (ownPrefix !== undefined && typeof message === 'string' && message.startsWith(ownPrefix)) {
    return 'own';
  }
  let parsed: { m?: unknown; c?: unknown };
  try {
    parsed = JSON.parse(String(message)) as typeof parsed;
  } catch {
    return undefined;
  }
  if (parsed?.m === machineId) return 'own';
  return parseChange(parsed?.c);
}

/** Remembers the newest set or destroy heard per session (what needs no writing back). */
export function noteNewest(heard: Map<string, Version>, change: Change): void {
  if (change.op === 'touch') return;
  const before = heard.get(change.sid);
  if (!before || compareVersions(change.version, before) > 0) heard.set(change.sid, change.version);
}
