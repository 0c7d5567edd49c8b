/**
 * Rendezvous (highest-random-weight) hashing over fixed worker slots.
 *
 * Each key scores every slot; the live slot with the highest score wins. Removing a slot moves
 * exactly the keys that slot owned (each to its next-highest slot) and nobody else; when the slot
 * comes back, those keys return. With a seed and a slot count fixed, the mapping is a pure
 * function, so sibling balancers configured alike agree without sharing state.
 */

/** murmur3's 32-bit finaliser: full avalanche of a 32-bit value. */
export function fmix32(value: number): number {
  let h = value >>> 0;
  h ^= h >>> 16;
  h = Math.imul(h, 0x85ebca6b);
  h ^= h >>> 13;
  h = Math.imul(h, 0xc2b2ae35);
  h ^= h >>> 16;
  return h >>> 0;
}

/** Seeded 32-bit hash of a string's UTF-16 code units (murmur3-style block mixing). */
export function hashKey(key: string, seed: number): number {
  let h = seed >>> 0;
  for (let i = 0; i < key.length; i++) {
    let k = Math.imul(key.charCodeAt(i), 0xcc9e2d51);
    k = (k << 15) | (k >>> 17);
    h ^= Math.imul(k, 0x1b873593);
    h = (h << 13) | (h >>> 19);
    h = (Math.imul(h, 5) + 0xe6546b64) | 0;
  }
  return fmix32(h ^ key.length);
}

/** Chooses a slot for a key among the live slots, or `undefined` when none is live. */
export type SlotPicker = (key: string, liveSlots: readonly number[]) => number | undefined;

/** A rendezvous picker for `slotCount` slots under `seed`. */
export function rendezvous(seed: number, slotCount: number): SlotPicker {
  const salts = Uint32Array.from({ length: slotCount }, (_, slot) =>
    fmix32(Math.imul(slot + 1, 0x9e3779b9) ^ seed),
  );
  return (key, liveSlots) => {
    const h = hashKey(key, seed);
    let best: number | undefined;
    let bestScore = -1;
    for (const slot of liveSlots) {
      const score = fmix32(Math.imul(h ^ (salts[slot] ?? 0), 0x9e3779b1) ^ slot);
      // Ties (1 in 2^32) go to the lower slot, so the result never depends on iteration order.
      if (score > bestScore || (score === bestScore && best !== undefined && slot < best)) {
        best = slot;
        bestScore = score;
      }
    }
    return best;
  };
}
