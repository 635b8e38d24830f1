import { createPrivateKey, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { parseWwwAuthenticate } from '../challenge.js';
import { ConfigurationError } from '../errors.js';
import { deriveSessionExporter, type TlsVersion } from '../exporter.js';
import { PROOF_HEADER } from '../proof/constants.js';
import { assertKeyMatchesCertificate, createSessionBindingProof } from '../proof/sign.js';
import { signingAlgorithmForKey, type ProofAlgorithm } from '../proof/algorithms.js';
import { exchangeHttp2, Http2SessionPool, readHttp1Response } from './transport.js';

export interface SessionBoundClientOptions {
  /** Client certificate (PEM), presented in the mTLS handshake; its key signs the proofs. */
  cert: string | Buffer;
  /** Private key of `cert` (PEM). */
  key: string | Buffer;
  /** CA certificates (PEM) that verify the server. Default: Node's bundled roots. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** `h2` (default): one multiplexed session per origin. `http/1.1`: a keep-alive pool. */
  protocol?: 'h2' | 'http/1.1';
  /** Also offer TLS 1.2 (default: TLS 1.3 only). */
  allowTls12?: boolean;
  /**
   * Highest TLS version offered (default `TLSv1.3`). `TLSv1.2` forces TLS 1.2 and needs
   * `allowTls12`; meant for testing TLS 1.2 deployments.
   */
  maxTlsVersion?: TlsVersion;
  /** Connections per origin for HTTP/1.1 (default 6). */
  maxConnectionsPerOrigin?: number;
  /**
   * Add `jti`, `htm` and `htu` to every proof (draft section 2.3.2.2). Costs one signature per
   * request; protects against replay inside a connection.
   */
  perRequestClaims?: boolean;
  /** Re-sign a cached proof older than this many seconds (default 3000). */
  proofRefreshAfter?: number;
  /** Use RS256 rather than PS256 for RSA keys. */
  preferRs256?: boolean;
  /** Request timeout, ms (default 30000). */
  timeoutMs?: number;
}

export interface SessionBoundRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** Access token to send as `Authorization: Bearer`, with a Session-Binding-Proof. */
  token?: string;
}

export interface SessionBoundResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** Client-side number of the TLS connection that carried the (last) attempt. */
  connectionId: number;
  /** True when the request was retried once on a fresh proof. */
  retried: boolean;
}

/** Counters, counted at the point of the event. */
export interface SessionBoundClientStats {
  /** Requests asked of the client. */
  requests: number;
  /** HTTP exchanges sent (requests plus retries). */
  attempts: number;
  /** Proofs signed. */
  proofsSigned: number;
  /** TLS connections opened. */
  connectionsOpened: number;
  /** Requests retried after `use_session_binding` / `invalid_proof`. */
  retries: number;
}

type Attempt = SessionBoundResponse & { sentProof: string | undefined };

interface ConnectionState {
  id: number;
  ekm: Buffer | undefined;
  /** token -> proof, for proofs without per-request claims. A promise, so concurrent requests share one signature. */
  proofs: Map<string, { proof: Promise<string>; iat: number }>;
}

const RETRYABLE = new Set(['use_session_binding', 'invalid_proof']);
let nextClientConnectionId = 1;

/**
 * An HTTPS client for session-bound APIs. It always knows which TLS connection carries a request,
 * signs one Session-Binding Proof per (token, connection) and reuses it, signs again on a new
 * connection, and retries a request once on a fresh proof after `use_session_binding` or
 * `invalid_proof`. Many tokens can share one connection.
 */
export class SessionBoundClient {
  readonly stats: SessionBoundClientStats = { requests: 0, attempts: 0, proofsSigned: 0, connectionsOpened: 0, retries: 0 };
  readonly #privateKey: KeyObject;
  readonly #certificate: X509Certificate;
  readonly #alg: ProofAlgorithm;
  readonly #tls: ConnectionOptions;
  readonly #options: SessionBoundClientOptions;
  readonly #tlsVersions: readonly TlsVersion[];
  readonly #connections = new WeakMap<TLSSocket, ConnectionState>();
  readonly #pool: Http2SessionPool;
  readonly #agent: HttpsAgent | undefined;
  #closed = false;

  constructor(options: SessionBoundClientOptions) {
    this.#options = options;
    try {
      this.#privateKey = createPrivateKey(options.key);
      this.#certificate = new X509Certificate(options.cert);
    } catch (cause) {
      throw new ConfigurationError('cannot load the client certificate or key', { cause });
    }
    assertKeyMatchesCertificate(this.#privateKey, this.#certificate);
    this.#alg = signingAlgorithmForKey(this.#privateKey, options.preferRs256 === true);
    this.#tlsVersions = options.allowTls12 === true ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'];
    const maxVersion = options.maxTlsVersion ?? 'TLSv1.3';
    if (!this.#tlsVersions.includes(maxVersion)) {
      throw new ConfigurationError('maxTlsVersion must be TLSv1.3, or TLSv1.2 together with allowTls12');
    }
    this.#tls = {
      cert: options.cert,
      key: options.key,
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      minVersion: options.allowTls12 === true ? 'TLSv1.2' : 'TLSv1.3',
      maxVersion,
    };
    this.#pool = new Http2SessionPool(this.#tls, options.timeoutMs ?? 30_000, () => this.stats.connectionsOpened++);
    if ((options.protocol ?? 'h2') === 'http/1.1') {
      this.#agent = new HttpsAgent({ ...this.#tls, keepAlive: true, maxSockets: options.maxConnectionsPerOrigin ?? 6 });
    }
  }

  /** Send a request; resolves with the whole response body. */
  async request(url: string | URL, init: SessionBoundRequest = {}): Promise<SessionBoundResponse> {
    if (this.#closed) throw new Error('client is closed');
    const target = new URL(url);
    if (target.protocol !== 'https:') throw new TypeError('session-bound requests need an https URL');
    this.stats.requests++;
    let attempt = await this.#attempt(target, init);
    let retried = false;
    if (attempt.status === 401 && init.token !== undefined) {
      const error = parseWwwAuthenticate(attempt.headers['www-authenticate']).find((c) => c.scheme === 'bearer')?.params.error;
      if (error !== undefined && RETRYABLE.has(error)) {
        this.stats.retries++;
        retried = true;
        attempt = await this.#attempt(target, init, attempt.sentProof ?? '');
      }
    }
    const { sentProof: _sent, ...response } = attempt;
    return { ...response, retried };
  }

  /** Close every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#agent?.destroy();
    await this.#pool.close();
  }

  #state(socket: TLSSocket): ConnectionState {
    let state = this.#connections.get(socket);
    if (state === undefined) {
      state = { id: nextClientConnectionId++, ekm: undefined, proofs: new Map() };
      this.#connections.set(socket, state);
      // A new connection gets fresh proofs; drop this connection's proofs with it.
      socket.once('close', () => state?.proofs.clear());
    }
    return state;
  }

  /** The proof for (token, connection); `rejected` names a proof the server refused, which is never reused. */
  async #proofFor(socket: TLSSocket, token: string, method: string, url: URL, rejected: string | undefined): Promise<string> {
    const state = this.#state(socket);
    state.ekm ??= deriveSessionExporter(socket, this.#tlsVersions);
    const now = Math.floor(Date.now() / 1000);
    const base = { privateKey: this.#privateKey, certificate: this.#certificate, accessToken: token, ekm: state.ekm, iat: now, alg: this.#alg };
    if (this.#options.perRequestClaims === true) {
      this.stats.proofsSigned++;
      return createSessionBindingProof({ ...base, jti: randomUUID(), htm: method, htu: `${url.origin}${url.pathname}` });
    }
    const cached = state.proofs.get(token);
    if (cached !== undefined && now - cached.iat < (this.#options.proofRefreshAfter ?? 3000)) {
      // A concurrent retry may already have replaced the rejected proof: share that one.
      const proof = await cached.proof.catch(() => undefined);
      if (proof !== undefined && proof !== rejected) return proof;
    }
    this.stats.proofsSigned++;
    const proof = createSessionBindingProof(base);
    const entry = { proof, iat: now };
    state.proofs.set(token, entry);
    proof.catch(() => {
      if (state.proofs.get(token) === entry) state.proofs.delete(token);
    });
    return proof;
  }

  #attempt(url: URL, init: SessionBoundRequest, rejected?: string): Promise<Attempt> {
    this.stats.attempts++;
    return this.#agent === undefined ? this.#attemptH2(url, init, rejected) : this.#attemptH1(url, init, rejected);
  }

  async #attemptH2(url: URL, init: SessionBoundRequest, rejected: string | undefined): Promise<Attempt> {
    const { session, socket, ready } = this.#pool.get(url);
    await ready;
    const method = (init.method ?? 'GET').toUpperCase();
    let sentProof: string | undefined;
    const headers: Record<string, string> = { ...init.headers };
    if (init.token !== undefined) {
      headers.authorization = `Bearer ${init.token}`;
      sentProof = await this.#proofFor(socket, init.token, method, url, rejected);
      headers[PROOF_HEADER.toLowerCase()] = sentProof;
    }
    const connectionId = this.#state(socket).id;
    const response = await exchangeHttp2(session, url, method, headers, init.body, this.#options.timeoutMs ?? 30_000);
    return { ...response, connectionId, retried: false, sentProof };
  }

  #attemptH1(url: URL, init: SessionBoundRequest, rejected: string | undefined): Promise<Attempt> {
    const method = (init.method ?? 'GET').toUpperCase();
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, agent: this.#agent, headers: { ...init.headers }, timeout: this.#options.timeoutMs ?? 30_000 });
      let connectionId = 0;
      let sentProof: string | undefined;
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.once('socket', (raw) => {
        const socket = raw as TLSSocket;
        const known = this.#connections.has(socket);
        const state = this.#state(socket);
        connectionId = state.id;
        const send = () => {
          if (init.token === undefined) {
            req.end(init.body);
            return;
          }
          req.setHeader('authorization', `Bearer ${init.token}`);
          this.#proofFor(socket, init.token, method, url, rejected).then(
            (proof) => {
              sentProof = proof;
              req.setHeader(PROOF_HEADER, proof);
              req.end(init.body);
            },
            (error: unknown) => req.destroy(error instanceof Error ? error : new Error(String(error))),
          );
        };
        if (known) send();
        else {
          this.stats.connectionsOpened++;
          socket.once('secureConnect', send);
        }
      });
      req.on('response', (res) => {
        readHttp1Response(res).then((response) => resolve({ ...response, connectionId, retried: false, sentProof }), reject);
      });
    });
  }
}
