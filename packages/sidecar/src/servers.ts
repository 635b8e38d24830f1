import { chmodSync, existsSync, lstatSync, unlinkSync } from 'node:fs';
import { createServer as createHttpServer, type IncomingMessage, type Server as HttpServer, type ServerResponse } from 'node:http';
import type { Http2SecureServer, Http2Server, Http2ServerRequest, ServerHttp2Session } from 'node:http2';
import { type AddressInfo, type Server as NetServer, type Socket } from 'node:net';
import type { Registry } from 'prom-client';
import { describeEndpoint, type Endpoint } from './config.js';

/** Listen on a TCP endpoint or a Unix socket (a stale socket file is removed; the socket gets mode 0600 unless told otherwise). */
export async function listen(server: NetServer | HttpServer | Http2Server | Http2SecureServer, endpoint: Endpoint, unixMode = 0o600): Promise<Endpoint> {
  if (endpoint.kind === 'unix' && existsSync(endpoint.path) && lstatSync(endpoint.path).isSocket()) unlinkSync(endpoint.path);
  await new Promise<void>((resolve, reject) => {
    const onError = (error: Error) => reject(error);
    server.once('error', onError);
    const done = () => {
      server.off('error', onError);
      resolve();
    };
    if (endpoint.kind === 'unix') server.listen(endpoint.path, done);
    else server.listen(endpoint.port, endpoint.host, done);
  });
  if (endpoint.kind === 'unix') {
    chmodSync(endpoint.path, unixMode);
    return endpoint;
  }
  const address = server.address() as AddressInfo;
  return { kind: 'tcp', host: endpoint.host, port: address.port };
}

/**
 * Tracks connections and HTTP/2 sessions of a server so shutdown can drain them: stop accepting,
 * send GOAWAY / close idle keep-alive connections, wait for in-flight requests up to a deadline,
 * then destroy what is left.
 */
export class ConnectionTracker {
  readonly sockets = new Set<Socket>();
  readonly sessions = new Set<ServerHttp2Session>();
  /** In-flight requests. */
  active = 0;
  #idle: Array<() => void> = [];

  track(socket: Socket, onChange?: (open: number) => void): void {
    this.sockets.add(socket);
    onChange?.(this.sockets.size);
    socket.once('close', () => {
      this.sockets.delete(socket);
      onChange?.(this.sockets.size);
    });
  }

  trackSession(session: ServerHttp2Session): void {
    this.sessions.add(session);
    session.once('close', () => this.sessions.delete(session));
  }

  /** Count a request until `res` finishes or closes. */
  request(res: { once(event: 'close', l: () => void): unknown }): void {
    this.active++;
    res.once('close', () => {
      this.active--;
      if (this.active === 0) for (const l of this.#idle.splice(0)) l();
    });
  }

  idle(): Promise<void> {
    return this.active === 0 ? Promise.resolve() : new Promise((resolve) => this.#idle.push(resolve));
  }

  /** Drain: GOAWAY to sessions, close idle HTTP/1.1 sockets, wait up to `timeoutMs`, destroy the rest. */
  async drain(timeoutMs: number, closeIdle: () => void): Promise<void> {
    for (const s of this.sessions) if (!s.closed) s.close();
    closeIdle();
    let timer: NodeJS.Timeout | undefined;
    await Promise.race([this.idle(), new Promise<void>((resolve) => (timer = setTimeout(resolve, timeoutMs)))]);
    clearTimeout(timer);
    closeIdle();
    for (const s of this.sessions) s.destroy();
    for (const s of this.sockets) s.destroy();
  }
}

/**
 * Pipe a request body received by a server into an outgoing request, and end the outgoing request
 * only when the body really ended. An HTTP/1.1 body cut off by a closed connection fails; an HTTP/2
 * client that gives up mid-body may still end its stream first (Node's `stream.close(code)` sends
 * END_STREAM, then RST_STREAM), so its compat request 'end's before the reset is reported. Both
 * cancel the outgoing request instead: a truncated upload is never delivered as a complete one.
 */
export function pipeBody(source: IncomingMessage | Http2ServerRequest, destination: NodeJS.WritableStream, cancel: () => void): void {
  source.pipe(destination, { end: false });
  source.once('error', () => cancel());
  source.once('end', () => {
    if (!('stream' in source) || source.stream.endAfterHeaders) {
      destination.end();
      return;
    }
    // A RST_STREAM right behind the END_STREAM is processed in the same I/O callback: look after it.
    setImmediate(() => {
      const rstCode = source.stream.rstCode;
      if (source.aborted || (rstCode !== undefined && rstCode !== 0)) cancel();
      else destination.end();
    });
  });
}

export function closeServer(server: NetServer | HttpServer | Http2Server | Http2SecureServer): Promise<void> {
  return new Promise((resolve) => {
    if (!server.listening) resolve();
    else server.close(() => resolve());
  });
}

export interface MetricsServer {
  endpoint: Endpoint;
  url: string;
  close(): Promise<void>;
}

/** Whether a sidecar should receive traffic; `reason` is a stable code (`draining`, `not_listening`, ...). */
export type Readiness = { ready: true } | { ready: false; reason: string };

function answerJson(res: ServerResponse, status: number, body: unknown): void {
  res.writeHead(status, { 'content-type': 'application/json', 'cache-control': 'no-store' }).end(JSON.stringify(body));
}

/**
 * `/metrics` (Prometheus text), `/healthz` (200 `{"status":"ok"}` while `healthy()`, else 503
 * `{"status":"draining"}`) and `/readyz` (200 `{"status":"ready"}`, or 503
 * `{"status":"not_ready","reason":...}`; without `readiness`, ready exactly when `healthy()`) on
 * their own listener. A readiness check that throws answers not ready (`internal`): fail closed.
 */
export async function startMetricsServer(registry: Registry, endpoint: Endpoint, healthy: () => boolean, readiness?: () => Readiness): Promise<MetricsServer> {
  const ready = (): Readiness => {
    try {
      if (readiness !== undefined) return readiness();
      return healthy() ? { ready: true } : { ready: false, reason: 'draining' };
    } catch {
      return { ready: false, reason: 'internal' };
    }
  };
  const server = createHttpServer((req: IncomingMessage, res: ServerResponse) => {
    const path = (req.url ?? '/').split('?')[0];
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.writeHead(405, { allow: 'GET, HEAD' }).end();
    } else if (path === '/metrics') {
      registry.metrics().then(
        (text) => res.writeHead(200, { 'content-type': registry.contentType }).end(text),
        () => res.writeHead(500).end(),
      );
    } else if (path === '/healthz') {
      const ok = healthy();
      res.writeHead(ok ? 200 : 503, { 'content-type': 'application/json' }).end(JSON.stringify({ status: ok ? 'ok' : 'draining' }));
    } else if (path === '/readyz') {
      const state = ready();
      answerJson(res, state.ready ? 200 : 503, state.ready ? { status: 'ready' } : { status: 'not_ready', reason: state.reason });
    } else {
      res.writeHead(404).end();
    }
  });
  const bound = await listen(server, endpoint, 0o660);
  return {
    endpoint: bound,
    url: bound.kind === 'tcp' ? `http://${describeEndpoint(bound)}` : describeEndpoint(bound),
    async close() {
      const closed = closeServer(server);
      server.closeAllConnections();
      await closed;
    },
  };
}
