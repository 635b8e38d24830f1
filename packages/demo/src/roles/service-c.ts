/** Service C: a plain HTTP API returning the verified principal. */
import { createServer, type Server } from 'node:http';
import { closeHttp, listenLocal, principalOf, type RoleHandlers } from './shared.js';

/** Service C: an ordinary HTTP API behind its ingress; answers with the principal it was given. */
export function appCRole(): RoleHandlers {
  let server: Server | undefined;
  let requests = 0;
  return {
    methods: {
      start() {
        server = createServer((req, res) => {
          requests++;
          const body = JSON.stringify({ service: 'service-c', path: req.url, principal: principalOf(req.headers) });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }).end(body);
        });
        return listenLocal(server);
      },
      stats: () => ({ requests }),
    },
    async close() {
      await closeHttp(server);
    },
  };
}
