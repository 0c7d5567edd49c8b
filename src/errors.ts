/**
 * Every error the library raises is a `StickyMeshError` with a stable `code`.
 * Codes are never renamed or reused once published; the README lists them.
 */
export type StickyMeshErrorCode =
  | 'ERR_STICKY_INVALID_OPTION'
  | 'ERR_STICKY_INVALID_ARGUMENT'
  | 'ERR_STICKY_ALREADY_LISTENING'
  | 'ERR_STICKY_LISTEN_FAILED'
  | 'ERR_STICKY_FACTORY_FAILED'
  | 'ERR_STICKY_STARTUP_FAILED'
  | 'ERR_STICKY_SESSION_TOO_LARGE'
  | 'ERR_STICKY_WRITE_REFUSED'
  | 'ERR_STICKY_INVALID_SESSION_ID'
  | 'ERR_STICKY_STORE_CLOSED'
  | 'ERR_STICKY_TRANSPORT_FAILED'
  | 'ERR_STICKY_WRITE_FAILED'
  | 'ERR_STICKY_METRICS_FAILED'
  | 'ERR_STICKY_RELOAD_FAILED'
  | 'ERR_STICKY_CLOSED';

export class StickyMeshError extends Error {
  readonly code: StickyMeshErrorCode;

  constructor(code: StickyMeshErrorCode, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StickyMeshError';
    this.code = code;
  }
}

/** A user-supplied option has the wrong type or is out of range. Names the option. */
export class InvalidOptionError extends StickyMeshError {
  readonly option: string;

  constructor(option: string, expected: string, actual: unknown, message?: string) {
    super(
      'ERR_STICKY_INVALID_OPTION',
      message ?? `sticky-mesh: option "${option}" must be ${expected}, got ${describe(actual)}`,
    );
    this.name = 'InvalidOptionError';
    this.option = option;
  }

  /** For a rule that "must be X, got Y" cannot say (a missing pair, a misplaced option). */
  static explained(option: string, message: string): InvalidOptionError {
    return new InvalidOptionError(option, '', undefined, `sticky-mesh: ${message}`);
  }
}

export function describe(value: unknown): string {
  if (value === null) return 'null';
  if (typeof value === 'string')
    return JSON.stringify(value.length > 40 ? `${value.slice(0, 40)}…` : value);
  if (typeof value === 'number' || typeof value === 'boolean' || typeof value === 'bigint') {
    return String(value);
  }
  if (typeof value === 'function') return 'a function';
  if (Array.isArray(value)) return 'an array';
  return typeof value === 'object' ? 'an object' : typeof value;
}
