// sticky-mesh in proxy mode, the documented form with `proxy: true`:
//   sticky({ num, proxy: true }, () => http.createServer(handler)).listen(port, '127.0.0.1', cb)
// The primary reads each connection's request head and routes it by the right-most address of
// `X-Forwarded-For` (the default `header` and `trustedProxies: 1`; the bench sends one address,
// so left- and right-most are the same and the figures compare with runs made when the default
// was `trustedProxies: 0`, the left-most); a request without the header
// gets 400 (`ignoreMissingHeader: false`). Env STICKY_SCOPE, when set and not empty, is passed as
// the `scope` option (issue 16's routing scope: with 'engine.io', plain requests stay on the
// worker their connection is on); until sticky() knows that option it rejects it and this
// server exits before READY. Used by bench/proxy.mjs. Needs dist/ (npm run build); imported by
// the package's own name.
import http from 'node:http';
import { sticky } from 'sticky-mesh';
import { env, handler, ready } from './handler.mjs';

const { port, host, workers } = env();
const scope = process.env.STICKY_SCOPE || undefined;
const app = sticky({ num: workers, proxy: true, ...(scope ? { scope } : {}) }, () =>
  http.createServer(handler),
);
if (app.role === 'primary') {
  app.listen(port, host, () =>
    ready(`workers=${workers} proxy=true${scope ? ` scope=${scope}` : ''}`),
  );
} else {
  app.listen(port, host);
}
