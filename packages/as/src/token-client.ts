/**
 * A small client for the authorization server's endpoints over mutual TLS. Its one feature beyond
 * `https.request`: it can send a Session-Binding-Proof for the `subject_token` built on the very
 * connection that carries the request (NOTES decision 4 (a): a holder exchanging its own
 * session-bound token proves possession to the authorization server). The proof header is set
 * after the TLS handshake of the request's socket, before the request is sent.
 */
import { X509Certificate, createPrivateKey, type KeyObject } from 'node:crypto';
import { Agent, request as httpsRequest } from 'node:https';
import { createSecureContext, type TLSSocket } from 'node:tls';
import {
  PROOF_HEADER,
  createSessionBindingProof,
  deriveSessionExporter,
  isExternalClientKey,
  isPkcs11Uri,
  buildWithClientKey,
  signingAlgorithmForKey,
  tlsKeyOptions,
  type ClientKeyInput,
  type ExternalClientKey,
  type Pkcs11KeyOptions,
  type TlsVersion,
} from '@tether/core';

export interface TokenClientOptions {
  /** Client certificate (PEM) for mutual TLS; omit for a client without a certificate. */
  cert?: string | Buffer;
  /**
   * Its private key: PEM, a key already opened, or a `pkcs11:` URI (RFC 7512; needs
   * {@link TokenClient.create} and the `@tether/pkcs11` package).
   */
  key?: ClientKeyInput;
  /** Module, PIN file and signing deadline for a `pkcs11:` key. */
  pkcs11?: Pkcs11KeyOptions;
  /** CA certificates (PEM) that verify the server. */
  ca?: string | Buffer | Array<string | Buffer>;
  /** Offer TLS 1.2 too (default TLS 1.3 only). */
  allowTls12?: boolean;
  /** Connections kept per origin (default 1: every request of this client shares one connection). */
  maxSockets?: number;
  /** Request timeout, ms (default 10000). */
  timeoutMs?: number;
}

export interface TokenRequestOptions {
  /** Sign a Session-Binding-Proof for `params.subject_token` on this request's connection. */
  proveSubjectToken?: boolean;
  /** Add per-request claims (`jti`, `htm`, `htu`) to that proof. */
  perRequestClaims?: boolean;
  /** Send this exact Session-Binding-Proof value (tests of refusals). */
  proof?: string;
  headers?: Record<string, string>;
}

export interface TokenRequestResult {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  /** Parsed JSON body, or undefined when the body is empty or not JSON. */
  json: Record<string, unknown> | undefined;
  text: string;
}

let connectionIds = 0;

export class TokenClient {
  readonly #agent: Agent;
  readonly #options: TokenClientOptions;
  readonly #privateKey: KeyObject | ExternalClientKey | undefined;
  readonly #certificate: X509Certificate | undefined;
  readonly #tlsVersions: readonly TlsVersion[];
  readonly #ids = new WeakMap<TLSSocket, number>();
  /** A key this client opened from a URI, closed with the client. */
  #ownedKey: ExternalClientKey | undefined;

  /** A client whose key may be a `pkcs11:` URI (opened and checked before this resolves; closed by {@link close}). */
  static async create(options: TokenClientOptions = {}): Promise<TokenClient> {
    const { key, cert } = options;
    if (key === undefined || cert === undefined) return new TokenClient(options);
    const { built, ownedKey } = await buildWithClientKey({ key, cert, pkcs11: options.pkcs11 }, (opened) => new TokenClient({ ...options, key: opened }));
    built.#ownedKey = ownedKey;
    return built;
  }

  constructor(options: TokenClientOptions = {}) {
    this.#options = options;
    const { cert, key } = options;
    if ((cert === undefined) !== (key === undefined)) throw new TypeError('cert and key go together');
    if (isPkcs11Uri(key)) throw new TypeError('a pkcs11: key needs TokenClient.create(options)');
    this.#privateKey = key === undefined ? undefined : isExternalClientKey(key) ? key : createPrivateKey(key);
    this.#certificate = cert === undefined ? undefined : new X509Certificate(cert);
    this.#tlsVersions = options.allowTls12 === true ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'];
    const tls = {
      ...(cert === undefined || key === undefined ? {} : { cert, ...tlsKeyOptions(key) }),
      ...(options.ca === undefined ? {} : { ca: options.ca }),
      minVersion: options.allowTls12 === true ? 'TLSv1.2' : 'TLSv1.3',
      maxVersion: 'TLSv1.3',
    } as const;
    // One secure context for every connection (a token-held key is then loaded once, not per handshake).
    this.#agent = new Agent({ keepAlive: true, maxSockets: options.maxSockets ?? 1, ...tls, secureContext: createSecureContext(tls) });
  }

  /** POST a form to `url`. Array values become repeated parameters. */
  post(url: string | URL, params: Record<string, string | readonly string[] | undefined>, options: TokenRequestOptions = {}): Promise<TokenRequestResult> {
    const form = new URLSearchParams();
    for (const [name, value] of Object.entries(params)) {
      if (value === undefined) continue;
      for (const v of typeof value === 'string' ? [value] : value) form.append(name, v);
    }
    return this.#send(new URL(url), 'POST', form.toString(), { 'content-type': 'application/x-www-form-urlencoded', ...options.headers }, options, params.subject_token);
  }

  /** GET `url` (metadata, JWKS, health). */
  get(url: string | URL, headers: Record<string, string> = {}): Promise<TokenRequestResult> {
    return this.#send(new URL(url), 'GET', undefined, headers, {}, undefined);
  }

  /** Raw request with any body and headers (tests of malformed input). */
  raw(url: string | URL, method: string, body: string | Buffer | undefined, headers: Record<string, string>): Promise<TokenRequestResult> {
    return this.#send(new URL(url), method, body, headers, {}, undefined);
  }

  /** Close the connections, and the key if this client opened it. */
  async close(): Promise<void> {
    this.#agent.destroy();
    const key = this.#ownedKey;
    this.#ownedKey = undefined;
    await key?.close();
  }

  #send(
    url: URL,
    method: string,
    body: string | Buffer | undefined,
    headers: Record<string, string>,
    options: TokenRequestOptions,
    subjectToken: string | readonly string[] | undefined,
  ): Promise<TokenRequestResult> {
    return new Promise((resolve, reject) => {
      const req = httpsRequest(url, { method, agent: this.#agent, headers, timeout: this.#options.timeoutMs ?? 10_000 });
      req.on('timeout', () => req.destroy(new Error('request timed out')));
      req.on('error', reject);
      req.once('socket', (raw) => {
        const socket = raw as TLSSocket;
        const send = () => {
          if (!this.#ids.has(socket)) this.#ids.set(socket, ++connectionIds);
          this.#proof(socket, url, method, options, subjectToken).then(
            (proof) => {
              if (proof !== undefined) req.setHeader(PROOF_HEADER, proof);
              req.end(body);
            },
            (error: unknown) => req.destroy(error instanceof Error ? error : new Error(String(error))),
          );
        };
        // A pooled socket has finished its handshake; a new one has not.
        if (socket.connecting || (socket as { _secureEstablished?: boolean })._secureEstablished !== true) socket.once('secureConnect', send);
        else send();
      });
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('error', reject);
        res.on('end', () => {
          const text = Buffer.concat(chunks).toString('utf8');
          let json: Record<string, unknown> | undefined;
          try {
            const parsed: unknown = text === '' ? undefined : JSON.parse(text);
            json = typeof parsed === 'object' && parsed !== null ? (parsed as Record<string, unknown>) : undefined;
          } catch {
            json = undefined;
          }
          resolve({ status: res.statusCode ?? 0, headers: res.headers, json, text });
        });
      });
    });
  }

  async #proof(socket: TLSSocket, url: URL, method: string, options: TokenRequestOptions, subjectToken: string | readonly string[] | undefined): Promise<string | undefined> {
    if (options.proof !== undefined) return options.proof;
    if (options.proveSubjectToken !== true) return undefined;
    if (typeof subjectToken !== 'string') throw new TypeError('proveSubjectToken needs exactly one subject_token');
    if (this.#privateKey === undefined || this.#certificate === undefined) throw new TypeError('proveSubjectToken needs a client certificate and key');
    return createSessionBindingProof({
      privateKey: this.#privateKey,
      alg: signingAlgorithmForKey(this.#certificate.publicKey),
      certificate: this.#certificate,
      accessToken: subjectToken,
      ekm: deriveSessionExporter(socket, this.#tlsVersions),
      ...(options.perRequestClaims === true ? { jti: crypto.randomUUID(), htm: method, htu: `${url.origin}${url.pathname}` } : {}),
    });
  }
}
