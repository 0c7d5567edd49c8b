/**
 * Delay before re-forking a slot's worker after its `crashes`-th crash in a row (1-based):
 * `base * 2^(crashes-1)`, capped at `max`.
 */
export function respawnDelay(crashes: number, base: number, max: number): number {
  if (crashes <= 1) return Math.min(base, max);
  // 2^31 already exceeds any delay setTimeout honours; clamp the exponent before it overflows.
  return Math.min(max, base * 2 ** Math.min(crashes - 1, 31));
}
