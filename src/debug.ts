import { debuglog } from 'node:util';

/** `NODE_DEBUG=sticky-mesh` turns this on; it costs a boolean check when off. */
export const debug = debuglog('sticky-mesh');
