import { X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import {
  ConfigurationError,
  createSessionBoundVerifier,
  jwksFromFile,
  jwtAccessTokenValidator,
  remoteJwks,
  type JwtAccessTokenValidatorOptions,
  type RemoteJwksStats,
  type SessionBoundVerifier,
  type VerifiedPrincipal,
} from '@tether/core';
import { guardHttp2Session, proxyProtocolListener, sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import { oneOf, originOf, parseCommandArgs, parseListen, readOptionFile, required, wantsHelp } from '../util/args.js';
import { resolveContext, shutdownSignal, type CommandContext } from '../util/context.js';
import { describeError, runtimeError, usageError } from '../util/errors.js';
import { startOpsServer, type OpsServer, type Readiness } from '@tether/core/node';
import { loadCaBundle, loadKeyPair } from '../util/pem.js';
import { PROMETHEUS_TEXT, resourceMetricsText, resourceReadiness, retryUntilLoaded, type ResourceStats } from './resource-ops.js';
import { DEV_AUDIENCE, DEV_ISSUER } from './dev-token.js';

export const resourceHelp = `Usage: tether resource --cert FILE --key FILE --ca FILE (--jwks-file FILE | --jwks-url URL) [options]

A protected echo resource built with @tether/core: HTTP/2 (HTTP/1.1 accepted too) over TLS 1.3
with client certificates required. Every request on any path and with any method is verified
(draft section 3.3, steps a to i) and answered 200 with JSON
  {"principal":{sub, client_id, scope, act, cnf, binding, claims},
   "request":{"method","path","httpVersion","bodyBytes","remoteAddress"}}
or refused with the draft's 401 (invalid_token, use_session_binding, invalid_proof) or 400.

Output (stdout, one JSON object per line):
  {"listening":"https://HOST:PORT","metrics":"http://HOST:PORT","pid":N}
                                      once, when listening (actual ports when they end in :0;
                                      metrics only with --metrics-listen)
  {"stats":{...}}                     each time the process receives SIGUSR2: the verifier's
                                      counters (requests, accepted, proofVerifications, cacheHits,
                                      failures by reason), bindings cached, open connections,
                                      and the JWKS fetch counters with --jwks-url
Nothing else is logged (stderr gets a warning when --jwks-url cannot be fetched at start; the
fetch is then retried, 1 s doubling to 30 s, until it succeeds). SIGTERM or SIGINT closes every
connection and exits 0.

Options:
  --listen HOST:PORT      address to listen on (default 127.0.0.1:8443); [IPv6]:PORT for IPv6;
                          port 0 picks a free port
  --cert FILE             server certificate, PEM (required)
  --key FILE              server private key, PEM (required)
  --ca FILE               CA certificates, PEM, that client certificates must chain to (required)
  --jwks-file FILE        JWK Set of the token issuer, read once at start
  --jwks-url URL          JWK Set URL of the token issuer, fetched and cached (give exactly one
                          of --jwks-file and --jwks-url)
  --jwks-ca FILE          extra CA certificates, PEM, for an https --jwks-url
  --issuer ISSUER         required token iss (default: ${DEV_ISSUER})
  --audience AUDIENCE     accepted token aud (default: ${DEV_AUDIENCE})
  --minimum-binding KIND  weakest token binding accepted: session (default), certificate or none
  --allow-tls12           accept TLS 1.2 as well as TLS 1.3 (renegotiation stays disabled)
  --proxy-protocol        require a PROXY protocol v2 header before TLS on every connection
                          (HAProxy send-proxy-v2): its source address is the remoteAddress
                          echoed; a connection without a valid header within 5 s is closed
  --metrics-listen HOST:PORT
                          operations listener, plain HTTP: GET /metrics (Prometheus text of the
                          counters above), /healthz (liveness) and /readyz (readiness: 503
                          {"status":"not_ready","reason":R} with R starting, draining,
                          not_listening, certificate_expired or jwks_unavailable); none by default
  -h, --help              show this help

Exit status: 0 after SIGTERM/SIGINT, 2 on bad arguments or unreadable files, 1 when the
address cannot be used.
`;

export interface ResourceOptions {
  host: string;
  port: number;
  cert: string | Buffer;
  key: string | Buffer;
  ca: string | Buffer;
  /** Key resolver for access tokens: `jwksFromFile`, `remoteJwks`, `localJwks`. */
  keys: JwtAccessTokenValidatorOptions['keys'];
  issuer?: string;
  audience?: string;
  minimumBinding?: 'session' | 'certificate' | 'none';
  allowTls12?: boolean;
  /** Require a PROXY protocol v2 header before TLS (see `proxyProtocolListener`). */
  proxyProtocol?: boolean;
}

export type { ResourceStats } from './resource-ops.js';

export interface RunningResource {
  /** `https://host:port`. */
  url: string;
  port: number;
  verifier: SessionBoundVerifier;
  stats(): ResourceStats;
  /** `/readyz`: see `resourceReadiness`. */
  readiness(): Readiness;
  /** Stop accepting, close every session and connection, resolve when the server is closed. */
  close(): Promise<void>;
}

const MAX_BODY = 1024 * 1024;

function echo(principal: VerifiedPrincipal, req: { method?: string; url?: string; httpVersion: string; socket: { remoteAddress?: string } }, bodyBytes: number): string {
  const { method, url: path, httpVersion } = req;
  return JSON.stringify({ principal, request: { method, path, httpVersion, bodyBytes, remoteAddress: req.socket.remoteAddress } });
}

function whyNotListening(error: unknown): string {
  const code = (error as { code?: unknown }).code;
  return code === 'EADDRINUSE' ? 'address already in use' : code === 'EADDRNOTAVAIL' ? 'address not available' : code === 'EACCES' ? 'permission denied' : describeError(error);
}

/** Start the protected echo resource. Rejects with a `CliError` when the address cannot be used. */
export async function startResource(options: ResourceOptions): Promise<RunningResource> {
  const allowTls12 = options.allowTls12 === true;
  const verifier = createSessionBoundVerifier({
    tokens: jwtAccessTokenValidator({ keys: options.keys, issuer: options.issuer ?? DEV_ISSUER, audience: options.audience ?? DEV_AUDIENCE }),
    minimumBinding: options.minimumBinding ?? 'session',
    tlsVersions: allowTls12 ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'],
  });
  const handler = sessionBoundHandler(verifier, (req, res, principal) => {
    let bodyBytes = 0;
    let tooLarge = false;
    req.on('data', (chunk: Buffer) => {
      bodyBytes += chunk.length;
      if (bodyBytes > MAX_BODY && !tooLarge) {
        tooLarge = true;
        if (!res.headersSent) {
          res.writeHead(413, { 'content-type': 'application/json', 'cache-control': 'no-store' });
          res.end('{"error":"request body too large"}');
        }
      }
    });
    req.on('end', () => {
      if (tooLarge || res.headersSent) return;
      const body = echo(principal, req, bodyBytes);
      res.writeHead(200, { 'content-type': 'application/json', 'cache-control': 'no-store' });
      res.end(body);
    });
    req.on('error', () => undefined);
  });

  const tls = sessionBoundTlsOptions({ cert: options.cert, key: options.key, ca: options.ca, allowTls12 });
  const server: Http2SecureServer = createSecureServer({ ...tls, allowHTTP1: true }, handler);
  const sessions = new Set<ServerHttp2Session>();
  const sockets = new Set<TLSSocket>();
  server.on('session', (session) => {
    // Rapid reset and sessions nobody reads any more end at once (see guardHttp2Session).
    guardHttp2Session(session);
    sessions.add(session);
    session.on('close', () => sessions.delete(session));
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    sockets.add(socket);
    socket.on('close', () => sockets.delete(socket));
  });
  // Peers that fail the handshake or break a session are dropped without a word.
  server.on('tlsClientError', () => undefined);
  server.on('sessionError', () => undefined);

  const listener = options.proxyProtocol === true ? proxyProtocolListener(server) : server;
  listener.listen(options.port, options.host);
  try {
    await Promise.race([
      once(listener, 'listening'),
      once(listener, 'error').then(([error]) => Promise.reject(error as Error)),
    ]);
  } catch (error) {
    const why = whyNotListening(error);
    throw runtimeError(`cannot listen on ${options.host}:${options.port}: ${why}`, error);
  }
  listener.on('error', () => undefined);
  const port = (listener.address() as AddressInfo).port;
  const jwksStats = (options.keys as { stats?: RemoteJwksStats }).stats;
  const certificateNotAfter = Date.parse(new X509Certificate(options.cert).validTo);
  let closing: Promise<void> | undefined;

  return {
    url: originOf(options.host, port),
    port,
    verifier,
    stats() {
      const s = verifier.stats;
      const out: ResourceStats = {
        requests: s.requests,
        accepted: s.accepted,
        proofVerifications: s.proofVerifications,
        cacheHits: s.cacheHits,
        failures: { ...s.failures },
        bindings: verifier.cache.size,
        connections: sockets.size,
      };
      const jwks = (options.keys as { stats?: RemoteJwksStats }).stats;
      if (jwksStats !== undefined && jwks !== undefined) out.jwks = jwks;
      return out;
    },
    readiness: () => resourceReadiness({ closing: closing !== undefined, listening: listener.listening, certificateNotAfter, now: Date.now(), jwks: (options.keys as { stats?: RemoteJwksStats }).stats }),
    close() {
      closing ??= new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          for (const session of sessions) session.destroy();
          for (const socket of sockets) socket.destroy();
        }, 1000);
        listener.close(() => {
          clearTimeout(force);
          resolve();
        });
        // HTTP/2: GOAWAY, in-flight streams finish. HTTP/1.1: end the keep-alive connections.
        for (const session of sessions) session.close();
        for (const socket of sockets) if (socket.alpnProtocol !== 'h2') socket.end();
      });
      return closing;
    },
  };
}

/** `tether resource`: run the protected echo resource until SIGTERM/SIGINT. */
export async function resourceCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(resourceHelp);
    return 0;
  }
  const { values } = parseCommandArgs({
    args,
    options: {
      listen: { type: 'string' },
      cert: { type: 'string' },
      key: { type: 'string' },
      ca: { type: 'string' },
      'jwks-file': { type: 'string' },
      'jwks-url': { type: 'string' },
      'jwks-ca': { type: 'string' },
      issuer: { type: 'string' },
      audience: { type: 'string' },
      'minimum-binding': { type: 'string' },
      'allow-tls12': { type: 'boolean' },
      'proxy-protocol': { type: 'boolean' },
      'metrics-listen': { type: 'string' },
    },
  });
  const { host, port } = parseListen(values.listen ?? '127.0.0.1:8443');
  const metricsListen = values['metrics-listen'] === undefined ? undefined : parseListen(values['metrics-listen'], '--metrics-listen');
  const minimumBinding = oneOf(values['minimum-binding'], '--minimum-binding', ['session', 'certificate', 'none'] as const, 'session');
  const certPath = required(values.cert, '--cert');
  const keyPath = required(values.key, '--key');
  const caPath = required(values.ca, '--ca');
  const jwksFile = values['jwks-file'];
  const jwksUrl = values['jwks-url'];
  if ((jwksFile === undefined) === (jwksUrl === undefined)) throw usageError('give exactly one of --jwks-file and --jwks-url');
  if (values['jwks-ca'] !== undefined && jwksUrl === undefined) throw usageError('--jwks-ca is only used with --jwks-url');
  for (const [option, value] of [['--issuer', values.issuer], ['--audience', values.audience]] as const) {
    if (value !== undefined && value.trim() === '') throw usageError(`${option} must not be empty`);
  }

  const { cert, key } = loadKeyPair(certPath, keyPath);
  const ca = loadCaBundle(caPath);
  let keys: JwtAccessTokenValidatorOptions['keys'];
  let reload: (() => Promise<boolean>) | undefined;
  try {
    if (jwksFile !== undefined) {
      const text = readOptionFile(jwksFile, '--jwks-file').toString('utf8');
      keys = jwksFromFile(jwksFile);
      if ((JSON.parse(text) as { keys: unknown[] }).keys.length === 0) throw usageError(`JWKS file ${jwksFile} holds no keys`);
    } else {
      let url: URL;
      try {
        url = new URL(jwksUrl as string);
      } catch {
        throw usageError(`--jwks-url '${jwksUrl}' is not a URL`);
      }
      const jwksCa = values['jwks-ca'] === undefined ? undefined : loadCaBundle(values['jwks-ca'], '--jwks-ca');
      const resolver = remoteJwks(url, jwksCa === undefined ? {} : { ca: jwksCa });
      keys = resolver;
      reload = () => resolver.reload();
    }
  } catch (error) {
    if (error instanceof ConfigurationError) throw usageError(`${error.message}`, error);
    throw error;
  }

  return serve(
    ctx,
    {
      host,
      port,
      cert: cert.pem,
      key: key.pem,
      ca,
      keys,
      minimumBinding,
      allowTls12: values['allow-tls12'] === true,
      proxyProtocol: values['proxy-protocol'] === true,
      ...(values.issuer === undefined ? {} : { issuer: values.issuer }),
      ...(values.audience === undefined ? {} : { audience: values.audience }),
    },
    { metricsListen, reload, jwksUrl },
  );
}

const NO_TRAFFIC = { requests: 0, accepted: 0, proofVerifications: 0, cacheHits: 0, failures: {}, bindings: 0, connections: 0 };

async function listenOps(address: { host: string; port: number }, running: () => RunningResource | undefined): Promise<OpsServer> {
  try {
    return await startOpsServer({
      ...address,
      metrics: async () => ({ contentType: PROMETHEUS_TEXT, body: resourceMetricsText(running()?.stats() ?? NO_TRAFFIC) }),
      readiness: () => running()?.readiness() ?? { ready: false, reason: 'starting' },
    });
  } catch (error) {
    const why = whyNotListening(error);
    throw runtimeError(`--metrics-listen: cannot listen on ${address.host}:${address.port}: ${why}`, error);
  }
}

/**
 * Run the resource until the shutdown signal: the operations listener first (when asked for;
 * not ready until the resource listens), then the resource, the ready line, and on shutdown the
 * resource closed (readiness `draining` meanwhile) before the operations listener.
 */
async function serve(
  ctx: CommandContext,
  options: ResourceOptions,
  extra: { metricsListen: { host: string; port: number } | undefined; reload: (() => Promise<boolean>) | undefined; jwksUrl: string | undefined },
): Promise<number> {
  const shutdown = shutdownSignal(ctx);
  let running: RunningResource | undefined;
  let ops: OpsServer | undefined;
  try {
    if (extra.metricsListen !== undefined) ops = await listenOps(extra.metricsListen, () => running);
    running = await startResource(options);
  } catch (error) {
    shutdown.dispose();
    await ops?.close();
    throw error;
  }
  const resource = running;
  const onStats = () => ctx.stdout.write(`${JSON.stringify({ stats: resource.stats() })}\n`);
  process.on('SIGUSR2', onStats);
  let retry: { stop(): void } | undefined;
  try {
    if (extra.reload !== undefined && !(await extra.reload())) {
      ctx.stderr.write(`tether resource: warning: cannot fetch the JWKS from ${extra.jwksUrl}; tokens are refused until a fetch succeeds (retrying)\n`);
      retry = retryUntilLoaded(extra.reload);
    }
    ctx.stdout.write(`${JSON.stringify({ listening: resource.url, ...(ops === undefined ? {} : { metrics: ops.url }), pid: process.pid })}\n`);
    if (!shutdown.signal.aborted) await once(shutdown.signal, 'abort');
  } finally {
    retry?.stop();
    process.off('SIGUSR2', onStats);
    shutdown.dispose();
    await resource.close();
    await ops?.close();
  }
  return 0;
}
