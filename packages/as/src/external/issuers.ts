/**
 * The trusted identity providers at run time: for each, where its keys are (a configured JWKS
 * URL, or the `jwks_uri` of its OIDC discovery document, fetched on first use with a deadline and
 * kept) and jose's remote JWK Set over a fetch that trusts the issuer's `caFiles`. jose caches the
 * keys, refetches on an unknown `kid` at most once per cooldown, and bounds each fetch.
 *
 * Whether the IdP could be read is kept apart from whether the token is good: a JWKS or discovery
 * fetch that fails is {@link IssuerUnavailable} (the token endpoint answers 503), a key that is
 * not in the set is jose's `JWKSNoMatchingKey` (the token is refused).
 */
import { createRemoteJWKSet, customFetch, errors, type JWTVerifyGetKey } from 'jose';
import type { ResolvedTrustedIssuer } from '../config.js';
import { trustedFetch, type TrustedFetch } from './https-fetch.js';

/** After a failed discovery, requests fail fast for this long rather than each wait on a dead IdP. */
const DISCOVERY_RETRY_MS = 5000;
/** jose: the shortest time between two JWKS fetches caused by an unknown `kid`. */
const JWKS_COOLDOWN_MS = 30_000;
/** jose: keys older than this are fetched again before use. */
const JWKS_MAX_AGE_MS = 600_000;

/** The IdP's keys could not be obtained right now. `detail` is for logs only. */
export class IssuerUnavailable extends Error {
  constructor(readonly detail: string, options?: { cause?: unknown }) {
    super(detail, options);
    this.name = 'IssuerUnavailable';
  }
}

/** The `jwks_uri` of a discovery document, after checking it is the document of `issuer`. */
async function discoverJwksUri(fetch: TrustedFetch, url: string, issuer: string): Promise<string> {
  const response = await fetch(url);
  let doc: unknown;
  try {
    doc = await response.json();
  } catch (error) {
    throw new IssuerUnavailable(`${url}: not JSON`, { cause: error });
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) throw new IssuerUnavailable(`${url}: not a JSON object`);
  const { issuer: named, jwks_uri: jwksUri } = doc as Record<string, unknown>;
  // OpenID Connect Discovery 1.0 section 4.3: the document's issuer is exactly the one asked for.
  if (named !== issuer) throw new IssuerUnavailable(`${url}: issuer ${JSON.stringify(named)} is not ${issuer}`);
  if (typeof jwksUri !== 'string' || !URL.canParse(jwksUri) || new URL(jwksUri).protocol !== 'https:') {
    throw new IssuerUnavailable(`${url}: jwks_uri is missing or not an https URL`);
  }
  return jwksUri;
}

export class TrustedIssuer {
  readonly config: ResolvedTrustedIssuer;
  readonly #fetch: TrustedFetch;
  #jwks: JWTVerifyGetKey | undefined;
  #pending: Promise<JWTVerifyGetKey> | undefined;
  #failed: { at: number; detail: string } | undefined;

  constructor(config: ResolvedTrustedIssuer) {
    this.config = config;
    this.#fetch = trustedFetch(config.ca, config.fetchTimeoutMs);
  }

  #remote(jwksUri: string): JWTVerifyGetKey {
    return createRemoteJWKSet(new URL(jwksUri), {
      timeoutDuration: this.config.fetchTimeoutMs,
      cooldownDuration: JWKS_COOLDOWN_MS,
      cacheMaxAge: JWKS_MAX_AGE_MS,
      [customFetch]: this.#fetch,
    });
  }

  /** The remote key set, after discovery when configured. */
  async #keySet(): Promise<JWTVerifyGetKey> {
    if (this.#jwks !== undefined) return this.#jwks;
    const keys = this.config.keys;
    if ('jwksUri' in keys) return (this.#jwks = this.#remote(keys.jwksUri));
    if (this.#failed !== undefined && Date.now() - this.#failed.at < DISCOVERY_RETRY_MS) throw new IssuerUnavailable(`discovery failed recently: ${this.#failed.detail}`);
    this.#pending ??= discoverJwksUri(this.#fetch, keys.discovery, this.config.issuer)
      .then((uri) => (this.#jwks = this.#remote(uri)))
      .catch((error: unknown) => {
        const detail = error instanceof Error ? error.message : String(error);
        this.#failed = { at: Date.now(), detail };
        throw error instanceof IssuerUnavailable ? error : new IssuerUnavailable(detail, { cause: error });
      })
      .finally(() => (this.#pending = undefined));
    return this.#pending;
  }

  /** A jose key resolver: a missing key is the token's fault, anything else the IdP's. */
  readonly getKey: JWTVerifyGetKey = async (header, token) => {
    const keySet = await this.#keySet();
    try {
      return await keySet(header, token);
    } catch (error) {
      if (error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) throw error;
      throw new IssuerUnavailable(`JWKS of ${this.config.issuer}: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
    }
  };
}

/** The configured issuers by their exact `iss`. */
export class TrustedIssuers {
  readonly #byIssuer: ReadonlyMap<string, TrustedIssuer>;

  constructor(list: readonly ResolvedTrustedIssuer[]) {
    this.#byIssuer = new Map(list.map((c) => [c.issuer, new TrustedIssuer(c)]));
  }

  get size(): number {
    return this.#byIssuer.size;
  }

  get(iss: string): TrustedIssuer | undefined {
    return this.#byIssuer.get(iss);
  }
}
