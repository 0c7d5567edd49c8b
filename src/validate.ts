import { InvalidOptionError } from './errors.js';

/**
 * Validators shared by every option set (sticky's, the store's, the transports'). Each returns
 * the value it was given when it is valid, and otherwise throws an {@link InvalidOptionError}
 * that names the option, so that a resolver reads as a list of its options.
 */

/** Longest delay a timer honours, in ms. */
export const MAX_MS = 2 ** 31 - 1;

/** An HTTP token (RFC 9110 section 5.6.2): what a method or header name consists of. */
export const HTTP_TOKEN = /^[!#$%&'*+\-.^_`|~0-9A-Za-z]+$/;

/** `value` if it is an integer in `min .. max`, else an error that names option `name`. */
export function integer(name: string, value: unknown, min: number, max: number): number {
  if (typeof value !== 'number' || !Number.isInteger(value) || value < min || value > max) {
    throw new InvalidOptionError(name, `an integer from ${min} to ${max}`, value);
  }
  return value;
}

/** `value` if it is a boolean, else an error that names option `name`. */
export function boolean(name: string, value: unknown): boolean {
  if (typeof value !== 'boolean') throw new InvalidOptionError(name, 'a boolean', value);
  return value;
}

/**
 * Refuses the first key of `given` that is not in `known` (a misspelt option would otherwise be
 * ignored without a word). `name` turns a key into the option's full name in the error.
 */
export function rejectUnknown(
  given: object,
  known: ReadonlySet<string>,
  name: (key: string) => string = (key) => key,
): void {
  for (const [key, value] of Object.entries(given)) {
    if (!known.has(key)) {
      throw new InvalidOptionError(name(key), 'a known option (is it misspelt?)', value);
    }
  }
}

/** A copy of `o` without its `undefined` fields (so that defaults fill them). */
export function definedFields<T extends object>(o: T): Partial<T> {
  return Object.fromEntries(Object.entries(o).filter(([, v]) => v !== undefined)) as Partial<T>;
}

/** Whether `value` is an object with a method of each of these names (duck typing). */
export function hasMethods(value: unknown, ...names: string[]): boolean {
  if (typeof value !== 'object' || value === null) return false;
  const o = value as Record<string, unknown>;
  return names.every((name) => typeof o[name] === 'function');
}
