/**
 * Tokens the egress obtains itself (deferred key binding, variant "the egress fetches tokens"): an
 * RFC 6749 client_credentials request to the authorization server over the egress's own mTLS
 * connection (RFC 8705 `tls_client_auth`), with `resource` (RFC 8707) = the route's audience. The
 * authorization server binds the token to the certificate it sees on that connection, which is the
 * egress's, so the agent never holds either the key or the token.
 *
 * With certificate rotation, tokens are fetched and cached per certificate generation: a token is
 * only ever used with the certificate it was fetched with (`bind`), and tokens of an earlier
 * generation are dropped when the egress switches (`switched`).
 */
import { request as httpsRequest } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { SidecarConfigError } from './config.js';

/** The certificate a token is fetched with, and so bound to: one generation of the egress's credentials. */
export interface TokenCredentials {
  /** Generation number (increasing). */
  readonly number: number;
  /** TLS options with that certificate and key. */
  readonly tls: ConnectionOptions;
  /** `x5t#S256` of the certificate: a JWT whose `cnf` names another certificate is refused. */
  readonly thumbprint?: string;
}

export interface TokenSourceOptions {
  /** Called for each fetch made by `bind` or `prefetch` (those made by `get` are counted in `fetches`). */
  onBackgroundFetch?: () => void;
}

export interface TokenEndpointConfig {
  /** Token endpoint `https://...`. */
  endpoint: string;
  /** `client_id` sent with `tls_client_auth`. */
  clientId: string;
  /** Request timeout, ms (default 5000). */
  timeoutMs?: number;
  /** Refresh a token this many seconds before `expires_in` runs out (default 60). */
  refreshBefore?: number;
}

export class TokenFetchError extends Error {}

interface Cached {
  token: string;
  /** Epoch ms after which a new token is fetched. */
  refreshAt: number;
  /** Epoch ms when the token expires. */
  expiresAt: number;
}

/** What a token of ours was fetched for and with. */
interface Issued {
  audience: string;
  scope: string | undefined;
  generation: number;
  expiresAt: number;
}

const keyOf = (generation: number, audience: string, scope: string | undefined): string => `${generation}\n${audience}\n${scope ?? ''}`;

/** `cnf.x5t#S256` of a JWT (payload decoded without verification: our own token, checked for its binding only). */
function jwtThumbprint(token: string): string | undefined {
  const payload = token.split('.')[1];
  if (payload === undefined || token.split('.').length !== 3) return undefined;
  try {
    const claims = JSON.parse(Buffer.from(payload, 'base64url').toString('utf8')) as { cnf?: { 'x5t#S256'?: unknown } };
    const x5t = claims.cnf?.['x5t#S256'];
    return typeof x5t === 'string' ? x5t : undefined;
  } catch {
    return undefined;
  }
}

export class TokenSource {
  readonly #endpoint: URL;
  readonly #cache = new Map<string, Cached>();
  readonly #pending = new Map<string, Promise<string>>();
  /** Every token of ours that has not expired, by value. */
  readonly #issued = new Map<string, Issued>();
  readonly #credentials: () => TokenCredentials;
  readonly #onBackgroundFetch: () => void;
  /** Fetches made by `get`. */
  fetches = 0;

  /**
   * `credentials`: fixed TLS options (one generation for ever), or the current generation of a
   * rotating certificate.
   */
  constructor(
    private readonly config: TokenEndpointConfig,
    credentials: ConnectionOptions | (() => TokenCredentials),
    options: TokenSourceOptions = {},
  ) {
    const fixed: TokenCredentials = { number: 1, tls: typeof credentials === 'function' ? {} : credentials };
    this.#credentials = typeof credentials === 'function' ? credentials : () => fixed;
    this.#onBackgroundFetch = options.onBackgroundFetch ?? (() => undefined);
    let url: URL;
    try {
      url = new URL(config.endpoint);
    } catch {
      throw new SidecarConfigError('--token-endpoint is not a URL');
    }
    if (url.protocol !== 'https:') throw new SidecarConfigError('--token-endpoint must be https:// (tls_client_auth)');
    if (typeof config.clientId !== 'string' || config.clientId === '') throw new SidecarConfigError('--client-id is required with --token-endpoint');
    this.#endpoint = url;
  }

  /** A current token for (audience, scope) with the current certificate; fetched once and shared by concurrent callers. */
  get(audience: string, scope: string | undefined): Promise<string> {
    return this.#get(audience, scope, this.#credentials(), false);
  }

  /**
   * `token` when it is not ours or was fetched with `credentials`; otherwise a token for the same
   * audience and scope fetched with `credentials` (a token travels only with its certificate).
   */
  bind(token: string, credentials: TokenCredentials): Promise<string> {
    const issued = this.#issued.get(token);
    if (issued === undefined || issued.generation === credentials.number) return Promise.resolve(token);
    return this.#get(issued.audience, issued.scope, credentials, true);
  }

  /** Fetch, with `credentials`, a token for every (audience, scope) that has one now. Resolves once all are settled. */
  async prefetch(credentials: TokenCredentials): Promise<{ fetched: number; failed: number }> {
    const wanted = new Map<string, Issued>();
    for (const i of this.#issued.values()) if (i.expiresAt > Date.now()) wanted.set(keyOf(0, i.audience, i.scope), i);
    const results = await Promise.allSettled([...wanted.values()].map((i) => this.#get(i.audience, i.scope, credentials, true)));
    const failed = results.filter((r) => r.status === 'rejected').length;
    return { fetched: results.length - failed, failed };
  }

  /** `credentials` is current now: cached tokens of other generations are dropped (they stay recognised for `bind`). */
  switched(credentials: TokenCredentials): void {
    for (const [key, entry] of this.#cache) if (this.#issued.get(entry.token)?.generation !== credentials.number) this.#cache.delete(key);
  }

  /** Forget a token the resource server refused as invalid. */
  invalidate(audience: string, scope: string | undefined, token: string): void {
    const issued = this.#issued.get(token);
    if (issued === undefined) return;
    const key = keyOf(issued.generation, audience, scope);
    if (this.#cache.get(key)?.token === token) this.#cache.delete(key);
  }

  #get(audience: string, scope: string | undefined, credentials: TokenCredentials, background: boolean): Promise<string> {
    const key = keyOf(credentials.number, audience, scope);
    const hit = this.#cache.get(key);
    if (hit !== undefined && Date.now() < hit.refreshAt) return Promise.resolve(hit.token);
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      if (background) this.#onBackgroundFetch();
      else this.fetches++;
      pending = this.#fetch(audience, scope, credentials).then(
        (entry) => {
          this.#remember(entry, { audience, scope, generation: credentials.number, expiresAt: entry.expiresAt });
          // Tokens of an earlier generation (a connection that was already open) are not kept.
          if (credentials.number >= this.#credentials().number) this.#cache.set(key, entry);
          this.#pending.delete(key);
          return entry.token;
        },
        (error: unknown) => {
          this.#pending.delete(key);
          throw error;
        },
      );
      this.#pending.set(key, pending);
    }
    return pending;
  }

  #remember(entry: Cached, issued: Issued): void {
    const now = Date.now();
    for (const [token, i] of this.#issued) if (i.expiresAt <= now) this.#issued.delete(token);
    this.#issued.set(entry.token, issued);
  }

  #fetch(audience: string, scope: string | undefined, credentials: TokenCredentials): Promise<Cached> {
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: this.config.clientId, resource: audience });
    if (scope !== undefined) form.set('scope', scope);
    const body = form.toString();
    const timeoutMs = this.config.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const req = httpsRequest(this.#endpoint, {
        ...credentials.tls,
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json', 'content-length': String(Buffer.byteLength(body)) },
        timeout: timeoutMs,
      });
      req.on('timeout', () => req.destroy(new TokenFetchError('token endpoint timed out')));
      req.on('error', (error) => reject(error instanceof TokenFetchError ? error : new TokenFetchError(`token endpoint unreachable: ${error.message}`)));
      req.on('response', (res) => {
        const chunks: Buffer[] = [];
        let size = 0;
        res.on('data', (c: Buffer) => {
          size += c.length;
          if (size > 256 * 1024) req.destroy(new TokenFetchError('token response too large'));
          else chunks.push(c);
        });
        res.on('error', () => undefined);
        res.on('end', () => {
          let json: { access_token?: unknown; token_type?: unknown; expires_in?: unknown; error?: unknown };
          try {
            json = JSON.parse(Buffer.concat(chunks).toString('utf8')) as typeof json;
          } catch {
            reject(new TokenFetchError(`token endpoint answered ${res.statusCode} without JSON`));
            return;
          }
          if (res.statusCode !== 200 || typeof json.access_token !== 'string' || json.access_token === '') {
            reject(new TokenFetchError(`token endpoint refused: ${typeof json.error === 'string' ? json.error : String(res.statusCode)}`));
            return;
          }
          if (typeof json.token_type === 'string' && json.token_type.toLowerCase() !== 'bearer') {
            reject(new TokenFetchError(`unsupported token_type ${json.token_type}`));
            return;
          }
          const bound = jwtThumbprint(json.access_token);
          if (bound !== undefined && credentials.thumbprint !== undefined && bound !== credentials.thumbprint) {
            reject(new TokenFetchError('the token is bound to another certificate than the one it was fetched with'));
            return;
          }
          const lifetime = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 300;
          const refreshBefore = Math.min(this.config.refreshBefore ?? 60, lifetime / 2);
          const now = Date.now();
          resolve({ token: json.access_token, refreshAt: now + (lifetime - refreshBefore) * 1000, expiresAt: now + lifetime * 1000 });
        });
      });
      req.end(body);
    });
  }
}
