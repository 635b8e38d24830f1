/**
 * The authorization server's protocol logic, independent of HTTP: grants (client_credentials and
 * RFC 8693 token exchange), binding policy (draft sections 3.1 and 3.2, NOTES decisions 4 and 5),
 * deferred key binding (`tmb`), DPoP-bound tokens (RFC 9449; never mixed with certificate or
 * session binding), introspection (RFC 7662), revocation (RFC 7009) and metadata
 * (RFC 8414). The HTTP layer (server.ts) turns a request into a {@link RequestInfo}.
 */
import { randomUUID } from 'node:crypto';
import type { JWTPayload } from 'jose';
import type { Logger } from 'pino';
import {
  EXPORTER_LABEL,
  InvalidProofError,
  TlsExporterError,
  bindingRequirement,
  isCanonicalCompactJws,
  verifySessionBindingProof,
  type Confirmation,
} from '@tether/core';
import { DPOP_ALGORITHMS, InvalidDpopProofError, UseDpopNonceError, verifyDpopProof } from '@tether/core/dpop';
import type { ReplayStore } from '@tether/core/verifier';
import { authenticateClient, type AuthenticatedClient, type ClientAuthContext } from './client-auth.js';
import {
  GRANT_CLIENT_CREDENTIALS,
  GRANT_TOKEN_EXCHANGE,
  type BindingLevel,
  type ResolvedClient,
  type ResolvedConfig,
  type ResolvedResource,
} from './config.js';
import type { Peer } from './connection.js';
import type { DpopNonces } from './dpop-nonce.js';
import { OAuthError, invalidDpopProof, invalidGrant, invalidRequest, useDpopNonce } from './errors.js';
import type { FormParams } from './form.js';
import { signAccessToken, verifyAccessTokenSignature } from './jwt.js';
import type { KeyManager } from './keys.js';
import type { AsMetrics } from './metrics.js';
import type { Store } from './store/contract.js';

export const TOKEN_TYPE_ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
export const TOKEN_TYPE_JWT = 'urn:ietf:params:oauth:token-type:jwt';
const TOKEN_TYPES = new Set([TOKEN_TYPE_ACCESS_TOKEN, TOKEN_TYPE_JWT]);
const MAX_TOKEN_LENGTH = 16_384;
const MAX_AUDIENCES = 20;
const LEVEL: Record<BindingLevel, number> = { none: 0, certificate: 1, session: 2 };
const maxLevel = (...levels: BindingLevel[]): BindingLevel => levels.reduce((a, b) => (LEVEL[b] > LEVEL[a] ? b : a), 'none');

export interface EngineUrls {
  issuer: string;
  /** Base URL of the mutual-TLS listener. */
  mtlsBase: string;
  /** Base URL of the plain-TLS listener, when configured. */
  plainBase: string | undefined;
}

export type Endpoint = 'token' | 'introspection' | 'revocation';

/** A request as the engine sees it. */
export interface RequestInfo {
  listener: 'mtls' | 'plain';
  peer: Peer | undefined;
  params: FormParams;
  /** Every Authorization header value. */
  authorization: readonly string[];
  /** Every Session-Binding-Proof header value. */
  proofs: readonly string[];
  /** Every DPoP header value (RFC 9449); absent means none was sent. */
  dpop?: readonly string[];
  /** Full URL of the endpoint called (for client assertion `aud` and proof `htu`). */
  endpointUrl: string;
}

/** Claims of an access token this server issued. */
export interface OwnTokenClaims extends JWTPayload {
  iss: string;
  sub: string;
  exp: number;
  iat: number;
  jti: string;
  client_id?: string;
  scope?: string;
  cnf?: Confirmation;
  act?: ActClaim;
  may_act?: { sub?: string; iss?: string };
}

export interface ActClaim {
  sub: string;
  act?: ActClaim;
  [claim: string]: unknown;
}

export interface TokenResponse {
  access_token: string;
  /** `DPoP` for a token bound to a DPoP key (`cnf.jkt`, RFC 9449 section 5), `Bearer` otherwise. */
  token_type: 'Bearer' | 'DPoP';
  expires_in: number;
  scope?: string;
  issued_token_type?: string;
}

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

type Validated = { ok: true; claims: OwnTokenClaims } | { ok: false; reason: string };

function actDepth(act: ActClaim | undefined): number {
  let depth = 0;
  for (let a = act; a !== undefined; a = a.act) depth++;
  return depth;
}

function isActClaim(value: unknown, depth = 0): value is ActClaim {
  if (depth > 64 || typeof value !== 'object' || value === null || Array.isArray(value)) return false;
  const v = value as Record<string, unknown>;
  return typeof v.sub === 'string' && (v.act === undefined || isActClaim(v.act, depth + 1));
}

function audiencesOf(claims: JWTPayload): string[] {
  return typeof claims.aud === 'string' ? [claims.aud] : Array.isArray(claims.aud) ? claims.aud.filter((a): a is string => typeof a === 'string') : [];
}

function splitScope(scope: string | undefined): string[] {
  return scope === undefined ? [] : scope.split(' ').filter((s) => s !== '');
}

const SCOPE_SYNTAX = /^[\x21\x23-\x5b\x5d-\x7e]+( [\x21\x23-\x5b\x5d-\x7e]+)*$/;

/** The key a verified DPoP proof at the token endpoint was made with. */
interface DpopKey {
  /** RFC 7638 thumbprint of the proof's `jwk`. */
  jkt: string;
}

/** Why a token request that carries DPoP is refused: the token would mix two binding types. */
const mixedBinding = (reason: string): OAuthError => invalidRequest('DPoP cannot be combined with certificate/session binding for this client', reason);

/** A parsed `tmb` request parameter (draft-richer-oauth-tmb-claim section 3). */
interface DeferredBinding {
  thumbprint: string;
  session: boolean;
}

export class AuthorizationEngine {
  readonly config: ResolvedConfig;
  readonly #store: Store;
  readonly #keys: KeyManager;
  readonly #metrics: AsMetrics;
  readonly #log: Logger;
  readonly #clock: () => number;
  #urls: EngineUrls | undefined;
  readonly #configClients: ResolvedClient[];
  #clients = new Map<string, ResolvedClient>();
  /** Recipient identifier -> client. */
  #recipients = new Map<string, ResolvedClient>();
  #resources = new Map<string, ResolvedResource>();
  /** Certificates already recorded as observed (client_id, thumbprint -> expiry): one store write per new one, not per request. */
  readonly #observed = new Map<string, number>();
  /** DPoP proof `jti` replay detection, in the server's store (shared with Session-Binding-Proof jtis; fails closed when it throws). */
  readonly #dpopReplay: ReplayStore;
  readonly #dpopNonces: DpopNonces | undefined;

  constructor(deps: EngineDeps) {
    this.config = deps.config;
    this.#store = deps.store;
    this.#keys = deps.keys;
    this.#metrics = deps.metrics;
    this.#log = deps.logger;
    this.#clock = deps.clock;
    this.#dpopNonces = deps.dpopNonces;
    this.#dpopReplay = { use: (key, expiresAt) => deps.store.rememberOnce('dpop', key, expiresAt) };
    this.#configClients = deps.config.clients;
    for (const r of deps.config.resources) this.#resources.set(r.identifier, r);
    this.setRegisteredClients([]);
  }

  /** A fresh nonce for the `DPoP-Nonce` header of token responses, when nonces are required. */
  dpopNonce(): string | undefined {
    return this.#dpopNonces?.issue();
  }

  /** Epoch seconds. */
  now(): number {
    return Math.floor(this.#clock() / 1000);
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

  get clients(): ResolvedClient[] {
    return [...this.#clients.values()];
  }

  /** Token endpoint URL on each listener. */
  endpoint(name: Endpoint, listener: 'mtls' | 'plain'): string {
    const base = listener === 'plain' ? (this.urls.plainBase ?? this.urls.mtlsBase) : this.urls.mtlsBase;
    return `${base}${PATHS[name]}`;
  }

  // ---------------------------------------------------------------------------------------------
  // Client authentication

  async authenticate(req: RequestInfo): Promise<AuthenticatedClient> {
    const urls = this.urls;
    const audiences = new Set([urls.issuer, req.endpointUrl, `${urls.mtlsBase}${PATHS.token}`]);
    if (urls.plainBase !== undefined) audiences.add(`${urls.plainBase}${PATHS.token}`);
    const ctx: ClientAuthContext = {
      config: this.config,
      store: this.#store,
      observeCertificate: (clientId, thumbprint, expiresAt) => this.#observeCertificate(clientId, thumbprint, expiresAt),
      lookup: (id) => this.#clients.get(id),
      assertionAudiences: [...audiences],
      now: () => this.now(),
      realm: urls.issuer,
    };
    try {
      const auth = await authenticateClient(ctx, req.params, req.listener === 'mtls' ? req.peer : undefined, req.authorization);
      this.#metrics.clientAuthentications.inc({ method: auth.method, result: 'success' });
      return auth;
    } catch (error) {
      if (error instanceof OAuthError) this.#metrics.clientAuthentications.inc({ method: 'unknown', result: error.reason });
      throw error;
    }
  }

  async #observeCertificate(clientId: string, thumbprint: string, expiresAt: number): Promise<void> {
    const key = `${clientId} ${thumbprint}`;
    if (this.#observed.get(key) === expiresAt) return;
    await this.#store.observeCertificate(clientId, thumbprint, expiresAt);
    if (this.#observed.size >= 10_000) this.#observed.clear();
    this.#observed.set(key, expiresAt);
  }

  // ---------------------------------------------------------------------------------------------
  // Own tokens

  /** Validate an access token this server issued: signature, `typ`, `iss`, `exp`, revocation. */
  async validateOwnToken(token: string, options: { allowExpired?: boolean } = {}): Promise<Validated> {
    if (typeof token !== 'string' || token.length > MAX_TOKEN_LENGTH || !isCanonicalCompactJws(token)) {
      return { ok: false, reason: 'malformed' };
    }
    let verified = verifyAccessTokenSignature(token, this.#keys.verificationKeys);
    // Signed by a key another instance on this store created since this one last looked.
    if (!verified.ok && verified.reason === 'unknown_key' && (await this.#keys.refresh())) verified = verifyAccessTokenSignature(token, this.#keys.verificationKeys);
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
    if (await this.#store.isRevoked(claims.jti)) return { ok: false, reason: 'revoked' };
    return { ok: true, claims };
  }

  // ---------------------------------------------------------------------------------------------
  // Token endpoint

  async token(req: RequestInfo): Promise<TokenResponse> {
    const auth = await this.authenticate(req);
    const grantType = req.params.require('grant_type');
    if (grantType !== GRANT_CLIENT_CREDENTIALS && grantType !== GRANT_TOKEN_EXCHANGE) {
      throw new OAuthError('unsupported_grant_type', 'The grant type is not supported', { reason: 'unsupported_grant_type' });
    }
    if (grantType === GRANT_TOKEN_EXCHANGE && !this.config.tokenExchange.enabled) {
      throw new OAuthError('unsupported_grant_type', 'The grant type is not supported', { reason: 'token_exchange_disabled' });
    }
    if (!(auth.client.grant_types as string[]).includes(grantType)) {
      throw new OAuthError('unauthorized_client', 'The client may not use this grant type', { reason: 'grant_not_allowed' });
    }
    req.params.assertNoDuplicates();
    const dpop = await this.#verifyDpop(req, auth.client);
    return grantType === GRANT_CLIENT_CREDENTIALS ? this.#clientCredentials(req, auth, dpop) : this.#tokenExchange(req, auth, dpop);
  }

  /**
   * RFC 9449 section 5: the DPoP proof of a token request, when one is sent. Exactly one DPoP
   * header; the proof is verified for `POST` to the token endpoint URL the client addressed (the
   * mTLS alias or the plain listener), without `ath`, within `tokens.dpopProofMaxAge` (plus
   * `tokens.clockSkew`), and its `jti` is recorded in the store (a replay, or a store that cannot
   * answer, refuses the request). A client registered with `dpop_bound_access_tokens` must send one
   * (section 5.2).
   */
  async #verifyDpop(req: RequestInfo, client: ResolvedClient): Promise<DpopKey | undefined> {
    const values = req.dpop ?? [];
    if (values.length === 0) {
      if (client.dpop_bound_access_tokens) throw invalidRequest('This client must send a DPoP proof (dpop_bound_access_tokens)', 'dpop_required');
      return undefined;
    }
    if (values.length > 1) throw invalidDpopProof('dpop_duplicate', 'more than one DPoP header');
    try {
      const verified = await verifyDpopProof(values[0] as string, {
        htm: 'POST',
        htu: req.endpointUrl,
        now: this.#clock() / 1000,
        maxAge: this.config.tokens.dpopProofMaxAge,
        clockSkew: this.config.tokens.clockSkew,
        algorithms: DPOP_ALGORITHMS,
        replayStore: this.#dpopReplay,
        ...(this.#dpopNonces === undefined ? {} : { nonce: this.#dpopNonces }),
      });
      return { jkt: verified.jkt };
    } catch (error) {
      if (error instanceof UseDpopNonceError) throw useDpopNonce(`dpop_${error.reason}`, error.nonce);
      if (error instanceof InvalidDpopProofError) throw invalidDpopProof(`dpop_${error.reason}`, error.description);
      throw error;
    }
  }

  async #clientCredentials(req: RequestInfo, auth: AuthenticatedClient, dpop: DpopKey | undefined): Promise<TokenResponse> {
    const client = auth.client;
    const tmb = this.#parseTmb(req.params.get('tmb'));
    const audiences = this.#audiences(req.params, client);
    const requested = req.params.get('scope');
    const allowed = [...client.scopes];
    let scopes: string[];
    if (requested === undefined) {
      scopes = client.default_scope === undefined ? allowed : splitScope(client.default_scope);
    } else {
      if (!SCOPE_SYNTAX.test(requested)) throw new OAuthError('invalid_scope', 'The scope is malformed', { reason: 'scope_syntax' });
      scopes = [...new Set(splitScope(requested))];
      if (scopes.some((s) => !client.scopes.has(s))) throw new OAuthError('invalid_scope', 'The requested scope exceeds what the client may request', { reason: 'scope_not_allowed' });
    }
    scopes = this.#restrictToResources(scopes, audiences, requested !== undefined);
    const level = this.#bindingLevel(client, audiences, 'none', 0);
    const cnf = await this.#confirmation(level, tmb, req.peer, client, dpop);
    return this.#issue({
      grant: 'client_credentials',
      client,
      sub: client.client_id,
      audiences,
      scopes,
      cnf,
      deferred: tmb !== undefined,
      act: undefined,
      lifetimeCap: undefined,
      issuedTokenType: undefined,
    });
  }

  async #tokenExchange(req: RequestInfo, auth: AuthenticatedClient, dpop: DpopKey | undefined): Promise<TokenResponse> {
    const p = req.params;
    const client = auth.client;
    const subjectToken = p.require('subject_token');
    const subjectType = p.require('subject_token_type');
    if (!TOKEN_TYPES.has(subjectType)) throw invalidRequest('subject_token_type is not supported', 'subject_token_type');
    const actorToken = p.get('actor_token');
    const actorType = p.get('actor_token_type');
    if ((actorToken === undefined) !== (actorType === undefined)) throw invalidRequest('actor_token and actor_token_type go together', 'actor_token_type');
    if (actorType !== undefined && !TOKEN_TYPES.has(actorType)) throw invalidRequest('actor_token_type is not supported', 'actor_token_type');
    const requestedType = p.get('requested_token_type') ?? TOKEN_TYPE_ACCESS_TOKEN;
    if (!TOKEN_TYPES.has(requestedType)) throw invalidRequest('requested_token_type is not supported', 'requested_token_type');
    const tmb = this.#parseTmb(p.get('tmb'));

    // The subject token: issued here, current, not revoked, with a binding tether understands.
    const subjectResult = await this.validateOwnToken(subjectToken);
    if (!subjectResult.ok) throw invalidGrant('The subject_token is not valid', `subject_${subjectResult.reason}`);
    const subject = subjectResult.claims;
    const subjectBinding = bindingRequirement(subject.cnf);
    if (subjectBinding.kind === 'invalid') throw invalidGrant('The subject_token is not valid', 'subject_cnf');
    const peer = req.listener === 'mtls' ? req.peer : undefined;

    // T6 (NOTES decision 4): the requester is the holder (and proves it on this connection), or
    // an intended recipient authenticated by mTLS. Anyone else is refused.
    // A DPoP-bound subject token has only the holder path: the request's DPoP proof must be made
    // with the key of its cnf.jkt, and the successor is bound to that same key (never dropped).
    const bound = subjectBinding.kind === 'session' || subjectBinding.kind === 'certificate';
    const holder = bound && peer?.thumbprint !== undefined && peer.thumbprint === subjectBinding.thumbprint;
    if (subjectBinding.kind === 'dpop') {
      if (dpop === undefined) throw invalidGrant('A DPoP-bound subject_token can only be exchanged with a DPoP proof of its key', 'dpop_subject_without_proof');
      if (dpop.jkt !== subjectBinding.jkt) throw invalidGrant('The DPoP proof is not made with the key the subject_token is bound to', 'dpop_subject_key_mismatch');
    } else if (holder) {
      if (subjectBinding.kind === 'session') await this.#verifyHolderProof(req, peer as Peer, subjectToken);
    } else {
      const recipient = this.#isIntendedRecipient(subject, client);
      const ownBearer = !bound && subject.client_id === client.client_id;
      if (!recipient && !ownBearer) throw invalidGrant('The client may not exchange this subject_token', bound ? 'not_holder_nor_recipient' : 'not_recipient');
      if (bound && !auth.mtls) throw invalidGrant('The client may not exchange this subject_token', 'recipient_not_mtls');
    }

    // The actor token, when sent, must represent the requester and be held by it (no splicing).
    let inherited: BindingLevel = subjectBinding.kind === 'dpop' ? 'none' : levelOf(subjectBinding.kind);
    if (actorToken !== undefined) {
      const actorResult = await this.validateOwnToken(actorToken);
      if (!actorResult.ok) throw invalidGrant('The actor_token is not valid', `actor_${actorResult.reason}`);
      const actor = actorResult.claims;
      const actorBinding = bindingRequirement(actor.cnf);
      if (actorBinding.kind === 'invalid') throw invalidGrant('The actor_token is not valid', 'actor_cnf');
      if (!client.recipientIds.has(actor.sub)) throw invalidGrant('The actor_token does not represent the client', 'actor_not_requester');
      const held =
        actorBinding.kind === 'dpop'
          ? dpop !== undefined && dpop.jkt === actorBinding.jkt
          : actorBinding.kind === 'session' || actorBinding.kind === 'certificate'
            ? peer?.thumbprint !== undefined && peer.thumbprint === actorBinding.thumbprint
            : actor.client_id === client.client_id;
      if (!held) throw invalidGrant('The actor_token is not held by the client', 'actor_not_held');
      if (actorBinding.kind !== 'dpop') inherited = maxLevel(inherited, levelOf(actorBinding.kind));
    }

    // The actor chain: the requester becomes the current actor, the subject token's chain (or its
    // client, when it had none) the prior one. A holder exchanging its own token adds nobody.
    let act: ActClaim | undefined;
    if (subject.client_id === client.client_id) act = subject.act;
    else {
      const prior = subject.act ?? (typeof subject.client_id === 'string' ? { sub: subject.client_id } : undefined);
      act = prior === undefined ? { sub: client.client_id } : { sub: client.client_id, act: prior };
    }
    const depth = actDepth(act);
    if (depth > this.config.tokenExchange.maxDelegationDepth) throw invalidGrant('The delegation chain is too long', 'delegation_depth');

    const audiences = this.#audiences(p, client);
    const subjectScopes = new Set(splitScope(subject.scope));
    const requested = p.get('scope');
    let scopes: string[];
    if (requested === undefined) scopes = [...subjectScopes];
    else {
      if (!SCOPE_SYNTAX.test(requested)) throw new OAuthError('invalid_scope', 'The scope is malformed', { reason: 'scope_syntax' });
      scopes = [...new Set(splitScope(requested))];
      if (scopes.some((s) => !subjectScopes.has(s))) throw new OAuthError('invalid_scope', 'The requested scope exceeds the subject_token scope', { reason: 'scope_exceeds_subject' });
    }
    scopes = this.#restrictToResources(scopes, audiences, requested !== undefined);

    const level = this.#bindingLevel(client, audiences, inherited, depth);
    const cnf = await this.#confirmation(level, tmb, peer, client, dpop);
    return this.#issue({
      grant: 'token_exchange',
      client,
      sub: subject.sub,
      audiences,
      scopes,
      cnf,
      deferred: tmb !== undefined,
      act,
      lifetimeCap: subject.exp,
      issuedTokenType: requestedType,
      parentJti: subject.jti,
    });
  }

  /** NOTES decision 4 (a): the holder proves possession on its connection to this server. */
  async #verifyHolderProof(req: RequestInfo, peer: Peer, subjectToken: string): Promise<void> {
    if (req.proofs.length > 1) throw invalidRequest('Only one Session-Binding-Proof may be sent', 'duplicate_proof');
    const proof = req.proofs[0];
    if (proof === undefined) throw invalidGrant('The holder of a session-bound subject_token must send a Session-Binding-Proof', 'holder_without_proof');
    let ekm: Buffer;
    try {
      ekm = peer.exporter();
    } catch (error) {
      if (error instanceof TlsExporterError) throw invalidGrant('The Session-Binding-Proof cannot be verified on this connection', 'exporter_unavailable');
      throw error;
    }
    let verified: Awaited<ReturnType<typeof verifySessionBindingProof>>;
    try {
      verified = await verifySessionBindingProof(proof, {
        certificate: peer.certificate as NonNullable<Peer['certificate']>,
        ekm,
        accessToken: subjectToken,
        now: this.#clock() / 1000,
        maxAge: this.config.tokens.proofMaxAge,
        clockSkew: this.config.tokens.clockSkew,
      });
    } catch (error) {
      if (error instanceof InvalidProofError) throw invalidGrant('The Session-Binding-Proof is not valid', `proof_${error.reason}`);
      throw error;
    }
    const { htm, htu, jti, iat } = verified.claims;
    if (htm !== undefined && htm !== 'POST') throw invalidGrant('The Session-Binding-Proof is not valid', 'proof_htm');
    if (htu !== undefined && htu !== req.endpointUrl) throw invalidGrant('The Session-Binding-Proof is not valid', 'proof_htu');
    if (jti !== undefined) {
      const until = iat + this.config.tokens.proofMaxAge + 2 * this.config.tokens.clockSkew;
      if (!(await this.#store.rememberOnce('proof', `${verified.header['x5t#S256']} ${jti}`, until))) {
        throw invalidGrant('The Session-Binding-Proof is not valid', 'proof_replayed');
      }
    }
  }

  /** The client is named in the token's `aud`, in its `may_act`, or trusted by policy for its client. */
  #isIntendedRecipient(subject: OwnTokenClaims, client: ResolvedClient): boolean {
    if (audiencesOf(subject).some((a) => client.recipientIds.has(a))) return true;
    const mayAct = subject.may_act;
    if (typeof mayAct === 'object' && mayAct !== null && typeof mayAct.sub === 'string' && client.recipientIds.has(mayAct.sub)) {
      if (mayAct.iss === undefined || mayAct.iss === this.urls.issuer) return true;
    }
    const allowed = client.token_exchange.subject_clients;
    return typeof subject.client_id === 'string' && (allowed.includes('*') ? subject.client_id !== client.client_id : allowed.includes(subject.client_id));
  }

  #audiences(params: FormParams, client: ResolvedClient): string[] {
    let requested = [...new Set([...params.all('audience'), ...params.all('resource')])];
    if (requested.length === 0) {
      const fallback = client.default_audience;
      requested = fallback === undefined ? [] : Array.isArray(fallback) ? fallback : [fallback];
    }
    if (requested.length === 0) throw new OAuthError('invalid_target', 'An audience or resource is required', { reason: 'no_audience' });
    if (requested.length > MAX_AUDIENCES) throw new OAuthError('invalid_target', 'Too many audiences', { reason: 'too_many_audiences' });
    for (const a of requested) {
      const known = this.#resources.has(a) || this.#recipients.has(a);
      if (!known) throw new OAuthError('invalid_target', 'The requested audience is not known', { reason: 'unknown_target' });
      if (!client.audiences.includes('*') && !client.audiences.includes(a)) {
        throw new OAuthError('invalid_target', 'The client may not request tokens for this audience', { reason: 'target_not_allowed' });
      }
    }
    return requested;
  }

  /** When every target lists its scopes, keep only scopes some target accepts. */
  #restrictToResources(scopes: string[], audiences: string[], explicit: boolean): string[] {
    const lists = audiences.map((a) => this.#resources.get(a)?.scopes);
    if (lists.some((l) => l === undefined)) return scopes;
    const accepted = new Set(lists.flatMap((l) => [...(l as Set<string>)]));
    const kept = scopes.filter((s) => accepted.has(s));
    if (explicit && kept.length !== scopes.length) throw new OAuthError('invalid_scope', 'The requested scope is not accepted by the audience', { reason: 'scope_not_for_target' });
    return kept;
  }

  /**
   * Binding of a new token: the strongest of the server default, the client's metadata
   * (`tls_session_bound_access_tokens`, `tls_client_certificate_bound_access_tokens`), the
   * requirement of each audience, the depth threshold, and the binding of the subject and actor
   * tokens (a bound input always yields a bound successor, NOTES decision 5).
   */
  #bindingLevel(client: ResolvedClient, audiences: string[], inherited: BindingLevel, depth: number): BindingLevel {
    const levels: BindingLevel[] = [this.config.tokens.defaultBinding, inherited];
    if (client.tls_session_bound_access_tokens) levels.push('session');
    if (client.tls_client_certificate_bound_access_tokens) levels.push('certificate');
    for (const a of audiences) {
      const resource = this.#resources.get(a);
      if (resource !== undefined) levels.push(resource.binding);
      const recipient = this.#recipients.get(a);
      if (recipient?.tls_session_bound_access_tokens === true) levels.push('session');
    }
    const threshold = this.config.tokenExchange.sessionBindingFromDepth;
    if (threshold !== undefined && depth >= threshold) levels.push('session');
    return maxLevel(...levels);
  }

  #parseTmb(value: string | undefined): DeferredBinding | undefined {
    if (value === undefined) return undefined;
    let parsed: unknown;
    try {
      parsed = JSON.parse(value);
    } catch {
      throw invalidRequest('tmb must be a JSON object', 'tmb_malformed');
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw invalidRequest('tmb must be a JSON object', 'tmb_malformed');
    const members = parsed as Record<string, unknown>;
    for (const k of Object.keys(members)) {
      if (k !== 'x5t#S256' && k !== 'tls_exp') throw invalidRequest('tmb may only carry x5t#S256 and tls_exp', 'tmb_member');
    }
    const thumbprint = members['x5t#S256'];
    if (typeof thumbprint !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(thumbprint) || Buffer.from(thumbprint, 'base64url').toString('base64url') !== thumbprint) {
      throw invalidRequest('tmb needs an x5t#S256 certificate thumbprint', 'tmb_thumbprint');
    }
    if (members.tls_exp !== undefined && members.tls_exp !== EXPORTER_LABEL) throw invalidRequest('tmb names an unknown exporter label', 'tmb_tls_exp');
    return { thumbprint, session: members.tls_exp !== undefined };
  }

  /** Thumbprints `client` may bind tokens to through `tmb`. */
  async #tmbAllowed(client: ResolvedClient, thumbprint: string): Promise<boolean> {
    if (client.tmb.thumbprints.includes(thumbprint)) return true;
    for (const id of client.tmb.clients) {
      const holder = this.#clients.get(id);
      if (holder === undefined) continue;
      if (holder.certificate_thumbprints.includes(thumbprint) || holder.registeredThumbprints.has(thumbprint)) return true;
      if ((await this.#store.observedCertificates(id)).includes(thumbprint)) return true;
    }
    return false;
  }

  /**
   * The `cnf` of a new token. With a verified DPoP proof it is `{jkt}` (RFC 9449 section 6.1), and
   * only when nothing else asks for a binding: a certificate or session binding from policy, from
   * the subject or actor token, or from `tmb` refuses the request (`invalid_request`) rather than
   * issue a token that mixes `jkt` with `x5t#S256`/`tls_exp` or silently drops either binding.
   */
  async #confirmation(level: BindingLevel, tmb: DeferredBinding | undefined, peer: Peer | undefined, client: ResolvedClient, dpop?: DpopKey): Promise<Confirmation | undefined> {
    if (dpop !== undefined) {
      if (tmb !== undefined) throw mixedBinding('dpop_with_tmb');
      if (level !== 'none') throw mixedBinding(`dpop_with_${level}_binding`);
      return { jkt: dpop.jkt };
    }
    let thumbprint: string | undefined;
    let effective = level;
    if (tmb !== undefined) {
      if (!(await this.#tmbAllowed(client, tmb.thumbprint))) throw invalidGrant('The client may not request tokens bound to this key', 'tmb_not_allowed');
      thumbprint = tmb.thumbprint;
      effective = maxLevel(level, tmb.session ? 'session' : 'certificate');
    } else {
      if (level === 'none') return undefined;
      thumbprint = peer?.thumbprint;
      if (thumbprint === undefined) throw invalidRequest('A bound token needs a client certificate on the connection', 'binding_without_certificate');
    }
    return effective === 'session' ? { 'x5t#S256': thumbprint, tls_exp: EXPORTER_LABEL } : { 'x5t#S256': thumbprint };
  }

  async #issue(spec: {
    grant: 'client_credentials' | 'token_exchange';
    client: ResolvedClient;
    sub: string;
    audiences: string[];
    scopes: string[];
    cnf: Confirmation | undefined;
    deferred: boolean;
    act: ActClaim | undefined;
    /** The new token never outlives this (epoch seconds). */
    lifetimeCap: number | undefined;
    issuedTokenType: string | undefined;
    /** The subject token of an exchange: revoking it revokes this one. */
    parentJti?: string;
  }): Promise<TokenResponse> {
    const now = this.now();
    let lifetime = spec.client.access_token_lifetime ?? this.config.tokens.lifetime;
    if (spec.lifetimeCap !== undefined) lifetime = Math.min(lifetime, spec.lifetimeCap - now);
    if (lifetime <= 0) throw invalidGrant('The subject_token is about to expire', 'subject_expiring');
    await this.#keys.coverLifetime(lifetime);
    const key = this.#keys.active;
    const jti = randomUUID();
    if (spec.parentJti !== undefined) await this.#store.recordExchange(spec.parentJti, jti, now + lifetime + this.config.tokens.clockSkew);
    const payload: Record<string, unknown> = {
      client_id: spec.client.client_id,
      ...(spec.scopes.length > 0 ? { scope: spec.scopes.join(' ') } : {}),
      ...(spec.cnf === undefined ? {} : { cnf: spec.cnf }),
      ...(spec.act === undefined ? {} : { act: spec.act }),
      ...(spec.client.may_act === undefined ? {} : { may_act: { sub: spec.client.may_act } }),
    };
    const token = signAccessToken(key.alg, key.kid, key.key, {
      iss: this.urls.issuer,
      sub: spec.sub,
      aud: spec.audiences.length === 1 ? spec.audiences[0] : spec.audiences,
      iat: now,
      exp: now + lifetime,
      jti,
      ...payload,
    });
    const binding = spec.cnf === undefined ? 'none' : spec.cnf.jkt !== undefined ? 'dpop' : spec.cnf.tls_exp !== undefined ? 'session' : 'certificate';
    this.#metrics.tokensIssued.inc({ grant: spec.grant, binding, deferred: String(spec.deferred) });
    this.#log.info(
      { event: 'token_issued', grant: spec.grant, client_id: spec.client.client_id, sub: spec.sub, aud: spec.audiences, binding, deferred: spec.deferred, jti, depth: actDepth(spec.act), kid: key.kid },
      'access token issued',
    );
    return {
      access_token: token,
      token_type: binding === 'dpop' ? 'DPoP' : 'Bearer',
      expires_in: lifetime,
      ...(spec.scopes.length > 0 ? { scope: spec.scopes.join(' ') } : {}),
      ...(spec.issuedTokenType === undefined ? {} : { issued_token_type: spec.issuedTokenType }),
    };
  }

  // ---------------------------------------------------------------------------------------------
  // Introspection (RFC 7662) and revocation (RFC 7009)

  async introspect(req: RequestInfo): Promise<Record<string, unknown>> {
    const auth = await this.authenticate(req);
    req.params.assertNoDuplicates();
    const token = req.params.require('token');
    const result = await this.validateOwnToken(token);
    // RFC 7662 section 4: a client sees only tokens meant for it (named in `aud`) or issued to it,
    // unless its metadata says `introspection: "any"`; for others the token is simply not active.
    const client = auth.client;
    const visible =
      result.ok &&
      (client.introspection === 'any' || result.claims.client_id === client.client_id || audiencesOf(result.claims).some((a) => client.recipientIds.has(a)));
    this.#metrics.introspections.inc({ active: String(visible) });
    if (!result.ok || !visible) return { active: false };
    const c = result.claims;
    // RFC 9449 section 6.2: a DPoP-bound token is introspected with token_type DPoP and its cnf.jkt.
    const out: Record<string, unknown> = { active: true, token_type: typeof c.cnf?.jkt === 'string' ? 'DPoP' : 'Bearer' };
    for (const name of ['iss', 'sub', 'aud', 'exp', 'iat', 'nbf', 'jti', 'client_id', 'scope', 'cnf', 'act', 'may_act'] as const) {
      if (c[name] !== undefined) out[name] = c[name];
    }
    return out;
  }

  async revoke(req: RequestInfo): Promise<void> {
    const auth = await this.authenticate(req);
    req.params.assertNoDuplicates();
    const token = req.params.require('token');
    const result = await this.validateOwnToken(token, { allowExpired: true });
    if (!result.ok) {
      // RFC 7009 section 2.2: an invalid token is not an error.
      this.#metrics.revocations.inc({ result: `ignored_${result.reason}` });
      return;
    }
    const c = result.claims;
    const id = auth.client.client_id;
    if (c.client_id !== id && c.sub !== id) {
      this.#metrics.revocations.inc({ result: 'refused' });
      throw new OAuthError('unauthorized_client', 'The token was not issued to this client', { reason: 'revoke_foreign_token' });
    }
    if (c.exp + this.config.tokens.clockSkew >= this.now()) {
      await this.#store.revoke(c.jti, c.exp + this.config.tokens.clockSkew);
    }
    this.#metrics.revocations.inc({ result: 'revoked' });
    this.#log.info({ event: 'token_revoked', client_id: id, jti: c.jti }, 'access token revoked');
  }

  // ---------------------------------------------------------------------------------------------
  // Metadata (RFC 8414, RFC 8705 section 3.3/5, draft section 3.2)

  metadata(): Record<string, unknown> {
    const urls = this.urls;
    const base = urls.plainBase ?? urls.mtlsBase;
    const ca = this.config.clientAuthentication;
    const methods: string[] = [];
    if (ca.tls_client_auth.enabled && this.config.clientCaCerts.length > 0) methods.push('tls_client_auth');
    if (ca.self_signed_tls_client_auth.enabled) methods.push('self_signed_tls_client_auth');
    if (ca.private_key_jwt.enabled) methods.push('private_key_jwt');
    const algs = ca.private_key_jwt.enabled ? { token_endpoint_auth_signing_alg_values_supported: [...ca.private_key_jwt.algorithms] } : {};
    const grants = [GRANT_CLIENT_CREDENTIALS, ...(this.config.tokenExchange.enabled ? [GRANT_TOKEN_EXCHANGE] : [])];
    const scopes = [...new Set(this.clients.flatMap((c) => [...c.scopes]))].sort();
    const doc: Record<string, unknown> = {
      issuer: urls.issuer,
      token_endpoint: `${base}${PATHS.token}`,
      jwks_uri: `${base}${PATHS.jwks}`,
      introspection_endpoint: `${base}${PATHS.introspection}`,
      revocation_endpoint: `${base}${PATHS.revocation}`,
      response_types_supported: [],
      grant_types_supported: grants,
      token_endpoint_auth_methods_supported: methods,
      ...algs,
      introspection_endpoint_auth_methods_supported: methods,
      ...(ca.private_key_jwt.enabled ? { introspection_endpoint_auth_signing_alg_values_supported: [...ca.private_key_jwt.algorithms] } : {}),
      revocation_endpoint_auth_methods_supported: methods,
      ...(ca.private_key_jwt.enabled ? { revocation_endpoint_auth_signing_alg_values_supported: [...ca.private_key_jwt.algorithms] } : {}),
      ...(scopes.length > 0 ? { scopes_supported: scopes } : {}),
      tls_client_certificate_bound_access_tokens: true,
      tls_session_bound_access_tokens_supported: true,
      dpop_signing_alg_values_supported: [...DPOP_ALGORITHMS],
    };
    if (urls.plainBase !== undefined) {
      doc.mtls_endpoint_aliases = {
        token_endpoint: `${urls.mtlsBase}${PATHS.token}`,
        introspection_endpoint: `${urls.mtlsBase}${PATHS.introspection}`,
        revocation_endpoint: `${urls.mtlsBase}${PATHS.revocation}`,
      };
    }
    return doc;
  }
}

function levelOf(kind: 'none' | 'certificate' | 'session'): BindingLevel {
  return kind;
}

export const PATHS = {
  token: '/token',
  introspection: '/introspect',
  revocation: '/revoke',
  jwks: '/jwks',
  metadata: '/.well-known/oauth-authorization-server',
  health: '/health',
} as const;
