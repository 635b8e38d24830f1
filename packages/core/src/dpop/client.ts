import { createPrivateKey, KeyObject } from 'node:crypto';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { parseWwwAuthenticate } from '../challenge.js';
import { exchangeHttp2, Http2SessionPool, readHttp1Response, type BufferedResponse } from '../client/transport.js';
import { ConfigurationError } from '../errors.js';
import { dpopAlgorithmsForKey, type DpopAlgorithm } from './algorithms.js';
import { DPOP_HEADER } from './constants.js';
import { jwkThumbprint, publicJwkOf, type DpopPublicJwk } from './jwk.js';
import { createDpopProof } from './sign.js';

export interface DpopClientOptions {
  /** The DPoP private key (PEM or key object): P-256, P-384, Ed25519 or RSA >= 2048 bits. */
  privateKey: KeyObject | string | Buffer;
  /** Proof algorithm (default: the first the key supports: ES256, ES384, EdDSA or PS256). */
  alg?: DpopAlgorithm;
  /** CA certificates (PEM) that verify the server. Default: Node's bundled roots. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Optional TLS client certificate and key (PEM), for servers that request one. Not used by DPoP itself. */
  cert?: string | Buffer;
  key?: string | Buffer;
  /** `h2` (default): one multiplexed session per origin. `http/1.1`: a keep-alive pool. */
  protocol?: 'h2' | 'http/1.1';
  /** Request timeout, ms (default 30000). */
  timeoutMs?: number;
}

export interface DpopRequest {
  method?: string;
  headers?: Record<string, string>;
  body?: string | Uint8Array;
  /** DPoP-bound access token, sent as `Authorization: DPoP <token>` with `ath` in the proof. Without it, a proof is still sent (token endpoint use). */
  token?: string;
}

export interface DpopResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: Buffer;
  /** True when the request was retried once with a server-provided nonce. */
  retried: boolean;
}

/** Counters, counted at the point of the event. */
export interface DpopClientStats {
  /** Requests asked of the client. */
  requests: number;
  /** HTTP exchanges sent (requests plus retries). */
  attempts: number;
  /** DPoP proofs signed: exactly one per attempt. */
  proofsSigned: number;
  /** Requests retried after `use_dpop_nonce`. */
  nonceRetries: number;
  /** `DPoP-Nonce` values received. */
  noncesReceived: number;
}

/**
 * An HTTPS client for DPoP-protected APIs (RFC 9449). Every attempt carries a fresh proof (new
 * `jti`, `htm`, `htu`, `iat`, `ath` of the token, and the origin's latest nonce): one signature
 * per request, by design (section 7.3 asks for a unique proof even on retries). A `DPoP-Nonce`
 * received in any response is kept per origin and used from then on (section 8.2); a
 * `use_dpop_nonce` refusal (401 with a DPoP challenge, or 400 with that JSON error from an
 * authorization server) is retried once with the new nonce (sections 8 and 9).
 */
export class DpopClient {
  readonly stats: DpopClientStats = { requests: 0, attempts: 0, proofsSigned: 0, nonceRetries: 0, noncesReceived: 0 };
  readonly #privateKey: KeyObject;
  readonly #jwk: DpopPublicJwk;
  readonly #alg: DpopAlgorithm;
  readonly #tls: ConnectionOptions;
  readonly #timeoutMs: number;
  readonly #agent: HttpsAgent | undefined;
  readonly #nonces = new Map<string, string>();
  readonly #pool: Http2SessionPool;
  #closed = false;

  constructor(options: DpopClientOptions) {
    try {
      this.#privateKey = options.privateKey instanceof KeyObject ? options.privateKey : createPrivateKey(options.privateKey);
    } catch (cause) {
      throw new ConfigurationError('cannot load the DPoP private key', { cause });
    }
    if (this.#privateKey.type !== 'private') throw new ConfigurationError('the DPoP key must be a private key');
    const algs = dpopAlgorithmsForKey(this.#privateKey);
    const alg = options.alg ?? algs[0];
    if (alg === undefined || !algs.includes(alg)) throw new ConfigurationError('the DPoP key cannot sign proofs with this algorithm');
    this.#alg = alg;
    this.#jwk = publicJwkOf(this.#privateKey);
    this.#timeoutMs = options.timeoutMs ?? 30_000;
    this.#tls = {
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      ...(options.cert === undefined ? {} : { cert: options.cert }),
      ...(options.key === undefined ? {} : { key: options.key }),
      minVersion: 'TLSv1.2',
    };
    this.#pool = new Http2SessionPool(this.#tls, this.#timeoutMs);
    if ((options.protocol ?? 'h2') === 'http/1.1') this.#agent = new HttpsAgent({ ...this.#tls, keepAlive: true });
  }

  /** The public JWK sent in every proof. */
  get publicJwk(): DpopPublicJwk {
    return { ...this.#jwk };
  }

  /** RFC 7638 thumbprint of the DPoP key: what an authorization server puts in `cnf.jkt`. */
  thumbprint(): Promise<string> {
    return jwkThumbprint(this.#jwk);
  }

  /** The nonce currently held for `origin`, if any. */
  nonceFor(origin: string): string | undefined {
    return this.#nonces.get(new URL(origin).origin);
  }

  /** Send a request; resolves with the whole response body. */
  async request(url: string | URL, init: DpopRequest = {}): Promise<DpopResponse> {
    if (this.#closed) throw new Error('client is closed');
    const target = new URL(url);
    if (target.protocol !== 'https:') throw new TypeError('DPoP requests need an https URL');
    this.stats.requests++;
    const { usedNonce, ...first } = await this.#attempt(target, init);
    let response = first;
    let retried = false;
    const nonce = this.#nonces.get(target.origin);
    // Retry once, and only with a nonce other than the one just refused (no loop on a stuck server).
    if (nonce !== undefined && nonce !== usedNonce && isUseDpopNonce(response)) {
      this.stats.nonceRetries++;
      retried = true;
      const { usedNonce: _used, ...again } = await this.#attempt(target, init);
      response = again;
    }
    return { ...response, retried };
  }

  /** Close every connection. */
  async close(): Promise<void> {
    this.#closed = true;
    this.#agent?.destroy();
    await this.#pool.close();
  }

  async #attempt(url: URL, init: DpopRequest): Promise<Omit<DpopResponse, 'retried'> & { usedNonce: string | undefined }> {
    this.stats.attempts++;
    const method = (init.method ?? 'GET').toUpperCase();
    const nonce = this.#nonces.get(url.origin);
    const proof = await createDpopProof({
      privateKey: this.#privateKey,
      publicJwk: this.#jwk,
      alg: this.#alg,
      htm: method,
      htu: url,
      ...(init.token === undefined ? {} : { accessToken: init.token }),
      ...(nonce === undefined ? {} : { nonce }),
    });
    this.stats.proofsSigned++;
    const headers: Record<string, string> = { ...init.headers, [DPOP_HEADER.toLowerCase()]: proof };
    if (init.token !== undefined) headers.authorization = `DPoP ${init.token}`;
    const response = this.#agent === undefined ? await this.#sendH2(url, method, headers, init.body) : await this.#sendH1(url, method, headers, init.body);
    const received = response.headers['dpop-nonce'];
    if (typeof received === 'string' && received !== '') {
      this.stats.noncesReceived++;
      this.#nonces.set(url.origin, received);
    }
    return { ...response, usedNonce: nonce };
  }

  async #sendH2(url: URL, method: string, headers: Record<string, string>, body: string | Uint8Array | undefined): Promise<BufferedResponse> {
    const { session, ready } = this.#pool.get(url);
    await ready;
    return exchangeHttp2(session, url, method, headers, body, this.#timeoutMs);
  }

  #sendH1(url: URL, method: string, headers: Record<string, string>, body: string | Uint8Array | undefined): Promise<BufferedResponse> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, agent: this.#agent, headers, timeout: this.#timeoutMs });
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.on('response', (res) => {
        readHttp1Response(res).then(resolve, reject);
      });
      req.end(body);
    });
  }
}

/** A `use_dpop_nonce` refusal: 401 with a DPoP challenge (RFC 9449 section 9) or 400 with that JSON error (section 8). */
function isUseDpopNonce(response: { status: number; headers: Record<string, string | string[] | undefined>; body: Buffer }): boolean {
  if (response.status === 401) {
    return parseWwwAuthenticate(response.headers['www-authenticate']).some((c) => c.scheme === 'dpop' && c.params.error === 'use_dpop_nonce');
  }
  if (response.status === 400) {
    try {
      return (JSON.parse(response.body.toString('utf8')) as { error?: unknown }).error === 'use_dpop_nonce';
    } catch {
      return false;
    }
  }
  return false;
}
