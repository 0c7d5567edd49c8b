/** Helpers for tests that drive Socket.io clients. */
import type { Socket } from 'socket.io-client';

/**
 * An engine.io-client error as one line: its message, the transport's own error (`description`)
 * and, when the server answered something, the start of that answer (for example engine.io's
 * `{"code":1,"message":"Session ID unknown"}`).
 */
export function explain(err: unknown): string {
  if (!(err instanceof Error)) return String(err);
  const { description, context } = err as Error & { description?: unknown; context?: unknown };
  const answer = (context as { responseText?: unknown } | undefined)?.responseText;
  const parts = [err.message];
  if (description !== undefined) {
    parts.push(description instanceof Error ? description.message : String(description));
  }
  if (typeof answer === 'string' && answer !== '') parts.push(answer.slice(0, 200));
  return parts.join(' | ');
}

/** What examples/socketio's chat sends each client when it connects. */
export interface Hello {
  slot: number;
  pid: number;
  name: string | null;
}

/** A chat message as examples/socketio's chat broadcasts it (and acks it to its sender). */
export interface ChatMessage {
  id: string;
  name: string;
  text: string;
  slot: number;
  at: number;
}

/** What a client of the chat saw, from its side. */
export interface ChatRecord {
  readonly hellos: Hello[];
  readonly chats: ChatMessage[];
  readonly connectErrors: string[];
  readonly disconnects: string[];
  readonly upgradeErrors: string[];
  pings: number;
  /** Set before the test closes it: what happens after that is not counted. */
  closing: boolean;
}

/**
 * Records into `record` what `socket` sees: hellos, chats, pings, and every connect error,
 * disconnection and failed upgrade (as explain() puts it) until `record.closing` is set.
 */
export function recordChat(socket: Socket, record: ChatRecord): void {
  socket.on('hello', (hello: Hello) => record.hellos.push(hello));
  socket.on('chat', (message: ChatMessage) => record.chats.push(message));
  socket.on('connect_error', (err) => {
    if (!record.closing) record.connectErrors.push(explain(err));
  });
  socket.on('disconnect', (reason, details) => {
    if (!record.closing) record.disconnects.push(`${reason} ${details ? explain(details) : ''}`);
  });
  const manager = socket.io;
  manager.on('ping', () => {
    record.pings++;
  });
  // Every engine (a reconnection makes a new one) reports its failed upgrades.
  manager.on('open', () => {
    manager.engine.on('upgradeError', (err) => {
      if (!record.closing) record.upgradeErrors.push(explain(err));
    });
  });
}

/** How often each value occurs (keyed by its string form), for summaries: clients per slot. */
export function countBy<T>(values: readonly T[]): Record<string, number> {
  const counts: Record<string, number> = {};
  for (const v of values) counts[String(v)] = (counts[String(v)] ?? 0) + 1;
  return counts;
}
