/**
 * The operations listener: plain HTTP on its own address (`--metrics-listen`), never on the
 * public TLS listeners. `GET /metrics` (Prometheus text), `GET /healthz` (liveness: 200
 * `{"status":"ok"}` while the process answers) and `GET /readyz` (readiness: 200
 * `{"status":"ready"}`, or 503 `{"status":"not_ready","reason":...}`). GET and HEAD only; 404
 * elsewhere. Requests are answered from memory, have a 5 s timeout and keep-alive connections
 * are closed with the listener. One implementation for every server command: the AS, `tether
 * resource` and the sidecars.
 */
import { once } from 'node:events';
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIP, type AddressInfo } from 'node:net';

/** Whether a server should receive traffic; `reason` is a stable code (`starting`, `draining`, ...). */
export type Readiness = { ready: true } | { ready: false; reason: string };

export interface OpsServerOptions {
  host: string;
  port: number;
  /** Prometheus exposition text and its content type. */
  metrics: () => Promise<{ contentType: string; body: string }>;
  readiness: () => Readiness;
}

export interface OpsServer {
  /** `http://host:port` (the actual port when asked for port 0). */
  readonly url: string;
  close(): Promise<void>;
}

const JSON_HEADERS = { 'content-type': 'application/json', 'cache-control': 'no-store' };

function answer(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, JSON_HEADERS).end(JSON.stringify(body));
}

function handle(options: OpsServerOptions, req: IncomingMessage, res: ServerResponse): void {
  const path = (req.url ?? '/').split('?')[0];
  if (req.method !== 'GET' && req.method !== 'HEAD') {
    res.writeHead(405, { allow: 'GET, HEAD', ...JSON_HEADERS }).end(JSON.stringify({ error: 'method_not_allowed' }));
    return;
  }
  switch (path) {
    case '/healthz':
      answer(res, 200, { status: 'ok' });
      return;
    case '/readyz': {
      let state: Readiness;
      try {
        state = options.readiness();
      } catch {
        state = { ready: false, reason: 'internal' }; // fail closed
      }
      answer(res, state.ready ? 200 : 503, state.ready ? { status: 'ready' } : { status: 'not_ready', reason: state.reason });
      return;
    }
    case '/metrics':
      options.metrics().then(
        ({ contentType, body }) => res.writeHead(200, { 'content-type': contentType, 'cache-control': 'no-store' }).end(body),
        () => answer(res, 500, { error: 'metrics_unavailable' }),
      );
      return;
    default:
      answer(res, 404, { error: 'not_found' });
  }
}

/** Start the operations listener; rejects (the server closed) when the address cannot be used. */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const server = createServer({ requestTimeout: 5000, headersTimeout: 5000, keepAliveTimeout: 5000 }, (req, res) => handle(options, req, res));
  server.listen(options.port, options.host);
  try {
    await Promise.race([once(server, 'listening'), once(server, 'error').then(([error]) => Promise.reject(error as Error))]);
  } catch (error) {
    server.close();
    throw error;
  }
  server.on('error', () => undefined);
  const { port } = server.address() as AddressInfo;
  let closing: Promise<void> | undefined;
  return {
    url: `http://${isIP(options.host) === 6 ? `[${options.host}]` : options.host}:${port}`,
    close() {
      closing ??= new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      });
      return closing;
    },
  };
}
