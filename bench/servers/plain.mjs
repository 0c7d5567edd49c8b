// (e) One plain process with the same handler: no cluster, no balancer.
import http from 'node:http';
import { env, handler, ready } from './handler.mjs';

const { port, host } = env();
http.createServer(handler).listen(port, host, () => ready('workers=0'));
