// The chat's session fields, for editors and the type check of the examples
// (test/unit/readme-snippets.test.ts): express-session's SessionData, merged.
import type { IncomingMessage } from 'node:http';
import type { Session, SessionData } from 'express-session';

declare module 'express-session' {
  interface SessionData {
    /** The chat name the user picked. */
    name: string;
    /** When the session started (ms since the epoch). */
    since: number;
  }
}

/** Socket.io's handshake request, once `io.engine.use(sessions)` ran express-session on it. */
export type HandshakeRequest = IncomingMessage & { session?: Session & Partial<SessionData> };
