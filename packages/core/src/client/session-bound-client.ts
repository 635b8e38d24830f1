import { randomUUID } from 'node:crypto';
import { request as httpsRequest, Agent as HttpsAgent } from 'node:https';
import { createSecureContext, type ConnectionOptions, type TLSSocket } from 'node:tls';
import { parseWwwAuthenticate } from '../challenge.js';
import { ConfigurationError } from '../errors.js';
import type { TlsVersion } from '../exporter.js';
import { PROOF_HEADER } from '../proof/constants.js';
import { buildWithClientKey, isPkcs11Uri, tlsKeyOptions, type ClientKeyInput, type ExternalClientKey, type Pkcs11KeyOptions } from './client-key.js';
import { ConnectionProofSigner } from './connection-proofs.js';
import { exchangeHttp2, Http2SessionPool, readHttp1Response } from './transport.js';

export interface SessionBoundClientOptions {
  /** Client certificate (PEM), presented in the mTLS handshake; its key signs the proofs. */
  cert: string | Buffer;
  /**
   * Private key of `cert`: PEM, a key already opened (`ExternalClientKey`), or a PKCS#11 URI
   * (`pkcs11:token=...;object=...`, RFC 7512), which needs {@link SessionBoundClient.create} and
   * the `@tether/pkcs11` package.
   */
  key: ClientKeyInput;
  /** Module, PIN file and signing deadline for a `pkcs11:` key. */
  pkcs11?: Pkcs11KeyOptions;
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
  /** The TLS version of that connection (`TLSv1.3`), for diagnostics. */
  tlsVersion: string | undefined;
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

const RETRYABLE = new Set(['use_session_binding', 'invalid_proof']);

/**
 * An HTTPS client for session-bound APIs. It always knows which TLS connection carries a request,
 * signs one Session-Binding Proof per (token, connection) and reuses it, signs again on a new
 * connection, and retries a request once on a fresh proof after `use_session_binding` or
 * `invalid_proof`. Many tokens can share one connection.
 */
export class SessionBoundClient {
  readonly stats: SessionBoundClientStats = { requests: 0, attempts: 0, proofsSigned: 0, connectionsOpened: 0, retries: 0 };
  readonly #signer: ConnectionProofSigner;
  readonly #tls: ConnectionOptions;
  readonly #options: SessionBoundClientOptions;
  readonly #pool: Http2SessionPool;
  readonly #agent: HttpsAgent | undefined;
  /** A key this client opened from a URI, closed with the client. */
  #ownedKey: ExternalClientKey | undefined;
  #closed = false;

  /**
   * A client whose key may be a `pkcs11:` URI: the key is opened (module loaded, PIN checked, key
   * found and checked against `cert`) before this resolves, and closed by {@link close}.
   */
  static async create(options: SessionBoundClientOptions): Promise<SessionBoundClient> {
    const { built, ownedKey } = await buildWithClientKey(options, (key) => new SessionBoundClient({ ...options, key }));
    built.#ownedKey = ownedKey;
    return built;
  }

  /** @throws {ConfigurationError} for a `pkcs11:` URI key: use {@link SessionBoundClient.create}. */
  constructor(options: SessionBoundClientOptions) {
    this.#options = options;
    const tlsVersions: readonly TlsVersion[] = options.allowTls12 === true ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'];
    if (isPkcs11Uri(options.key)) {
      throw new ConfigurationError('a pkcs11: key needs SessionBoundClient.create(options)');
    }
    this.#signer = new ConnectionProofSigner({
      cert: options.cert,
      key: options.key,
      preferRs256: options.preferRs256 === true,
      tlsVersions,
      refreshAfter: options.proofRefreshAfter ?? 3000,
      onSign: () => this.stats.proofsSigned++,
    });
    const maxVersion = options.maxTlsVersion ?? 'TLSv1.3';
    if (!tlsVersions.includes(maxVersion)) {
      throw new ConfigurationError('maxTlsVersion must be TLSv1.3, or TLSv1.2 together with allowTls12');
    }
    const tls = {
      cert: options.cert,
      ...tlsKeyOptions(options.key),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      minVersion: options.allowTls12 === true ? 'TLSv1.2' : 'TLSv1.3',
      maxVersion,
    } as const;
    // One secure context for every connection: Node would otherwise build one per connection,
    // which for a token-held key means loading the engine key (and logging in) per handshake.
    this.#tls = { ...tls, secureContext: createSecureContext(tls) };
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

  /** Close every connection, and the key if this client opened it. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#agent?.destroy();
    await this.#pool.close();
    const key = this.#ownedKey;
    this.#ownedKey = undefined;
    await key?.close();
  }

  /** The proof for this request on `socket`: per (token, connection), or single-use with per-request claims. */
  #proofFor(socket: TLSSocket, token: string, method: string, url: URL, rejected: string | undefined): Promise<string> {
    if (this.#options.perRequestClaims === true) {
      return this.#signer.perRequestProof(socket, token, { jti: randomUUID(), htm: method, htu: `${url.origin}${url.pathname}` });
    }
    return this.#signer.proofFor(socket, token, rejected);
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
    const connectionId = this.#signer.attach(socket).id;
    const response = await exchangeHttp2(session, url, method, headers, init.body, this.#options.timeoutMs ?? 30_000);
    return { ...response, connectionId, retried: false, sentProof, tlsVersion: socket.getProtocol() ?? undefined };
  }

  #attemptH1(url: URL, init: SessionBoundRequest, rejected: string | undefined): Promise<Attempt> {
    const method = (init.method ?? 'GET').toUpperCase();
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, agent: this.#agent, headers: { ...init.headers }, timeout: this.#options.timeoutMs ?? 30_000 });
      let connectionId = 0;
      let sentProof: string | undefined;
      let tlsSocket: TLSSocket | undefined;
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.once('socket', (raw) => {
        const socket = raw as TLSSocket;
        tlsSocket = socket;
        const known = this.#signer.known(socket);
        connectionId = this.#signer.attach(socket).id;
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
        readHttp1Response(res).then((response) => resolve({ ...response, connectionId, retried: false, sentProof, tlsVersion: tlsSocket?.getProtocol() ?? undefined }), reject);
      });
    });
  }
}
