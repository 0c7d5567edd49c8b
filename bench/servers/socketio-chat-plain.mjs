// The same Socket.io chat (examples/socketio/chat.js) in one plain process: no cluster, no
// balancer, express-session's MemoryStore, Socket.io's default adapter. The bench's reference
// for what the chat itself costs per session on this machine. Env PORT.
import session from 'express-session';
import { createChatServer } from '../../examples/socketio/chat.js';
import { env, ready } from './handler.mjs';

const { port, host } = env();
createChatServer({ slot: 0, store: new session.MemoryStore() }).listen(port, host, () =>
  ready('workers=1'),
);
