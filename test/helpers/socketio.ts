/** Helpers for tests that drive Socket.io clients. */

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
