/**
 * The authorization server's protocol logic, independent of HTTP (the HTTP layer, server.ts, turns
 * a request into a {@link RequestInfo}). This file holds the server's state (configuration,
 * clients, resources, store, keys) and the steps every endpoint shares: client authentication and
 * validation of this server's own tokens. The rest lives one concern per file:
 *
 * - grants/index.ts: the grants table; grants/client-credentials.ts, grants/token-exchange.ts
 * - t6.ts: who may exchange a token (a pure decision with its table)
 * - holder-proof.ts, dpop-request.ts: proofs at the token endpoint
 * - binding.ts, targets.ts, issuance.ts: the binding, audiences/scopes and issuing of a new token
 * - introspection.ts, revocation.ts, metadata.ts: the other endpoints
 */
import type { Logger } from 'pino';
import type { ReplayStore } from '@tether/core/verifier';
import { authenticateClient, type AuthenticatedClient, type ClientAuthContext } from './client-auth.js';
import type { ResolvedClient, ResolvedConfig, ResolvedResource } from './config.js';
import type { DpopNonces } from './dpop-nonce.js';
import { verifyTokenRequestDpop } from './dpop-request.js';
import { OAuthError } from './errors.js';
import { TrustedIssuers } from './external/issuers.js';
import { GRANTS } from './grants/index.js';
import { introspect } from './introspection.js';
import { verifyAccessTokenSignature } from './jwt.js';
import type { KeyManager } from './keys.js';
import { metadata } from './metadata.js';
import type { AsMetrics } from './metrics.js';
import { PATHS, type Endpoint, type EngineUrls, type RequestInfo } from './request.js';
import { revoke } from './revocation.js';
import type { Store } from './store/contract.js';
import { isActClaim, type OwnTokenClaims, type TokenResponse } from './token-claims.js';

export { TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT, type ActClaim, type OwnTokenClaims, type TokenResponse } from './token-claims.js';
export { PATHS, type Endpoint, type EngineUrls, type RequestInfo } from './request.js';

const MAX_TOKEN_LENGTH = 16_384;

export interface EngineDeps {
  config: ResolvedConfig;
  store: Store;
  keys: KeyManager;
  metrics: AsMetrics;
  logger: Logger;
  /** Epoch milliseconds. */
  clock: () => number;
  /** Server nonces DPoP proofs at the token endpoint must carry (`tokens.dpopNonce.required`). */
  dpopNonces?: DpopNonces;
}

export type Validated = { ok: true; claims: OwnTokenClaims } | { ok: false; reason: string };

export class AuthorizationEngine {
  readonly config: ResolvedConfig;
  readonly store: Store;
  readonly keys: KeyManager;
  readonly metrics: AsMetrics;
  readonly log: Logger;
  /** Epoch milliseconds. */
  readonly clock: () => number;
  /** Identity providers whose tokens may be exchanged (external/). */
  readonly trustedIssuers: TrustedIssuers;
  #urls: EngineUrls | undefined;
  readonly #configClients: ResolvedClient[];
  #clients = new Map<string, ResolvedClient>();
  /** Recipient identifier -> client. */
  #recipients = new Map<string, ResolvedClient>();
  readonly #resources = new Map<string, ResolvedResource>();
  /** Certificates already recorded as observed (client_id, thumbprint -> expiry): one store write per new one, not per request. */
  readonly #observed = new Map<string, number>();
  /** DPoP proof `jti` replay detection, in the server's store (fails closed when it throws). */
  readonly #dpopReplay: ReplayStore;
  readonly #dpopNonces: DpopNonces | undefined;

  constructor(deps: EngineDeps) {
    this.config = deps.config;
    this.store = deps.store;
    this.keys = deps.keys;
    this.metrics = deps.metrics;
    this.log = deps.logger;
    this.clock = deps.clock;
    this.#dpopNonces = deps.dpopNonces;
    this.#dpopReplay = { use: (key, expiresAt) => deps.store.rememberOnce('dpop', key, expiresAt) };
    this.#configClients = deps.config.clients;
    this.trustedIssuers = new TrustedIssuers(deps.config.trustedIssuers);
    for (const r of deps.config.resources) this.#resources.set(r.identifier, r);
    this.setRegisteredClients([]);
  }

  /** Epoch seconds. */
  now(): number {
    return Math.floor(this.clock() / 1000);
  }

  get urls(): EngineUrls {
    if (this.#urls === undefined) throw new OAuthError('temporarily_unavailable', 'The server is starting', { reason: 'starting' });
    return this.#urls;
  }

  setUrls(urls: EngineUrls): void {
    this.#urls = urls;
  }

  get ready(): boolean {
    return this.#urls !== undefined;
  }

  /** Install the clients registered at run time (the configured ones always stay). */
  setRegisteredClients(registered: readonly ResolvedClient[]): void {
    const clients = new Map<string, ResolvedClient>();
    const recipients = new Map<string, ResolvedClient>();
    for (const c of [...this.#configClients, ...registered]) {
      clients.set(c.client_id, c);
      for (const id of c.recipientIds) recipients.set(id, c);
    }
    this.#clients = clients;
    this.#recipients = recipients;
  }

  client(clientId: string): ResolvedClient | undefined {
    return this.#clients.get(clientId);
  }

  /** The client a recipient identifier (client_id or one of its `identifiers`) names. */
  recipient(identifier: string): ResolvedClient | undefined {
    return this.#recipients.get(identifier);
  }

  resource(identifier: string): ResolvedResource | undefined {
    return this.#resources.get(identifier);
  }

  get clients(): ResolvedClient[] {
    return [...this.#clients.values()];
  }

  /** Endpoint URL on each listener. */
  endpoint(name: Endpoint, listener: 'mtls' | 'plain'): string {
    const base = listener === 'plain' ? (this.urls.plainBase ?? this.urls.mtlsBase) : this.urls.mtlsBase;
    return `${base}${PATHS[name]}`;
  }

  /** A fresh nonce for the `DPoP-Nonce` header of token responses, when nonces are required. */
  dpopNonce(): string | undefined {
    return this.#dpopNonces?.issue();
  }

  async authenticate(req: RequestInfo): Promise<AuthenticatedClient> {
    const urls = this.urls;
    const audiences = new Set([urls.issuer, req.endpointUrl, `${urls.mtlsBase}${PATHS.token}`]);
    if (urls.plainBase !== undefined) audiences.add(`${urls.plainBase}${PATHS.token}`);
    const ctx: ClientAuthContext = {
      config: this.config,
      store: this.store,
      observeCertificate: (clientId, thumbprint, expiresAt) => this.#observeCertificate(clientId, thumbprint, expiresAt),
      lookup: (id) => this.#clients.get(id),
      assertionAudiences: [...audiences],
      now: () => this.now(),
      realm: urls.issuer,
    };
    try {
      const auth = await authenticateClient(ctx, req.params, req.listener === 'mtls' ? req.peer : undefined, req.authorization);
      this.metrics.clientAuthentications.inc({ method: auth.method, result: 'success' });
      return auth;
    } catch (error) {
      if (error instanceof OAuthError) this.metrics.clientAuthentications.inc({ method: 'unknown', result: error.reason });
      throw error;
    }
  }

  async #observeCertificate(clientId: string, thumbprint: string, expiresAt: number): Promise<void> {
    const key = `${clientId} ${thumbprint}`;
    if (this.#observed.get(key) === expiresAt) return;
    await this.store.observeCertificate(clientId, thumbprint, expiresAt);
    if (this.#observed.size >= 10_000) this.#observed.clear();
    this.#observed.set(key, expiresAt);
  }

  /** Validate an access token this server issued: signature, `typ`, `iss`, `exp`, revocation (of it or an ancestor). */
  async validateOwnToken(token: string, options: { allowExpired?: boolean } = {}): Promise<Validated> {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH) return { ok: false, reason: 'malformed' };
    let verified = verifyAccessTokenSignature(token, this.keys.verificationKeys);
    // Signed by a key another instance on this store created since this one last looked.
    if (!verified.ok && verified.reason === 'unknown_key' && (await this.keys.refresh())) verified = verifyAccessTokenSignature(token, this.keys.verificationKeys);
    if (!verified.ok) return { ok: false, reason: verified.reason };
    const claims = verified.payload as OwnTokenClaims;
    const now = this.now();
    if (claims.iss !== this.urls.issuer) return { ok: false, reason: 'iss' };
    if (typeof claims.exp !== 'number' || typeof claims.iat !== 'number' || typeof claims.jti !== 'string' || typeof claims.sub !== 'string') {
      return { ok: false, reason: 'invalid' };
    }
    if (options.allowExpired !== true && now >= claims.exp) return { ok: false, reason: 'expired' };
    if (claims.nbf !== undefined && (typeof claims.nbf !== 'number' || claims.nbf > now)) return { ok: false, reason: 'nbf' };
    if (claims.act !== undefined && !isActClaim(claims.act)) return { ok: false, reason: 'invalid_act' };
    if (await this.store.isRevoked(claims.jti)) return { ok: false, reason: 'revoked' };
    return { ok: true, claims };
  }

  /** The token endpoint: authenticate, pick the grant from the table, check DPoP, run the grant. */
  async token(req: RequestInfo): Promise<TokenResponse> {
    const auth = await this.authenticate(req);
    const grantType = req.params.require('grant_type');
    const grant = GRANTS.get(grantType);
    if (grant === undefined) throw new OAuthError('unsupported_grant_type', 'The grant type is not supported', { reason: 'unsupported_grant_type' });
    if (!grant.enabled(this)) throw new OAuthError('unsupported_grant_type', 'The grant type is not supported', { reason: 'token_exchange_disabled' });
    if (!(auth.client.grant_types as string[]).includes(grantType)) {
      throw new OAuthError('unauthorized_client', 'The client may not use this grant type', { reason: 'grant_not_allowed' });
    }
    req.params.assertNoDuplicates();
    const dpop = await verifyTokenRequestDpop({ config: this.config, clock: this.clock, replay: this.#dpopReplay, nonces: this.#dpopNonces }, req, auth.client);
    return grant.handle(this, { req, auth, dpop });
  }

  introspect(req: RequestInfo): Promise<Record<string, unknown>> {
    return introspect(this, req);
  }

  revoke(req: RequestInfo): Promise<void> {
    return revoke(this, req);
  }

  metadata(): Record<string, unknown> {
    return metadata(this);
  }
}
