// (a) sticky-mesh in IP mode, exactly the documented form:
//   sticky({ num }, () => http.createServer(handler)).listen(port, '127.0.0.1', callback)
// The callback fires in the primary once the port is bound and every worker is ready.
// Needs dist/ (npm run build); imported by the package's own name.
import http from 'node:http';
import { sticky } from 'sticky-mesh';
import { env, handler, ready } from './handler.mjs';

const { port, host, workers } = env();
const app = sticky({ num: workers }, () => http.createServer(handler));
if (app.role === 'primary') {
  app.listen(port, host, () => ready(`workers=${workers}`));
} else {
  app.listen(port, host);
}
