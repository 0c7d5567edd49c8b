/**
 * A client connection as libuv accepted it (Node's internal TCP handle), before any `net.Socket`
 * exists. The primary routes these directly (and a worker hands them back), as Node's own round-robin scheduler does: building
 * a stream object per connection only to give it away cost the primary about a third more CPU
 * per connection and, since a worker takes one handle at a time, throughput.
 */
export interface RawHandle {
  getpeername(out: { address?: string }): number;
  close(callback?: () => void): void;
  readStop(): number;
  readStart(): number;
  /** Node's flag: the handle was told to read. */
  reading?: boolean;
}
