/**
 * Environment for a session-app fixture (test/fixtures/session-app.mjs) whose sessions live a
 * day: a one-hour session saved by a machine hours behind would already be expired on one whose
 * clock runs ahead (as it would be in production).
 */
export const DAY_LONG_SESSIONS: Readonly<Record<string, string>> = Object.freeze({
  COOKIE_MAX_AGE: String(86_400_000),
});

/**
 * Environment that makes every process of a fixture (cluster workers too, through NODE_OPTIONS)
 * run its clock `shiftMs` ahead (test/fixtures/fast-clock.mjs), with day-long sessions.
 */
export function fastClock(shiftMs: number): Record<string, string> {
  return {
    ...DAY_LONG_SESSIONS,
    NODE_OPTIONS: `--import=${new URL('../fixtures/fast-clock.mjs', import.meta.url).href}`,
    CLOCK_SHIFT_MS: String(shiftMs),
  };
}
