/**
 * Tokens the egress obtains itself (deferred key binding, variant "the egress fetches tokens"): an
 * RFC 6749 client_credentials request to the authorization server over the egress's own mTLS
 * connection (RFC 8705 `tls_client_auth`), with `resource` (RFC 8707) = the route's audience. The
 * authorization server binds the token to the certificate it sees on that connection, which is the
 * egress's, so the agent never holds either the key or the token.
 */
import { request as httpsRequest } from 'node:https';
import type { ConnectionOptions } from 'node:tls';
import { SidecarConfigError } from './config.js';

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
}

export class TokenSource {
  readonly #endpoint: URL;
  readonly #cache = new Map<string, Cached>();
  readonly #pending = new Map<string, Promise<string>>();
  fetches = 0;

  constructor(
    private readonly config: TokenEndpointConfig,
    private readonly tls: ConnectionOptions,
  ) {
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

  /** A current token for (audience, scope); fetched once and shared by concurrent callers. */
  get(audience: string, scope: string | undefined): Promise<string> {
    const key = `${audience}\n${scope ?? ''}`;
    const hit = this.#cache.get(key);
    if (hit !== undefined && Date.now() < hit.refreshAt) return Promise.resolve(hit.token);
    let pending = this.#pending.get(key);
    if (pending === undefined) {
      pending = this.#fetch(audience, scope).then(
        (entry) => {
          this.#cache.set(key, entry);
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

  /** Forget a token the resource server refused as invalid. */
  invalidate(audience: string, scope: string | undefined, token: string): void {
    const key = `${audience}\n${scope ?? ''}`;
    if (this.#cache.get(key)?.token === token) this.#cache.delete(key);
  }

  #fetch(audience: string, scope: string | undefined): Promise<Cached> {
    this.fetches++;
    const form = new URLSearchParams({ grant_type: 'client_credentials', client_id: this.config.clientId, resource: audience });
    if (scope !== undefined) form.set('scope', scope);
    const body = form.toString();
    const timeoutMs = this.config.timeoutMs ?? 5000;
    return new Promise((resolve, reject) => {
      const req = httpsRequest(this.#endpoint, {
        ...this.tls,
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
          const lifetime = typeof json.expires_in === 'number' && json.expires_in > 0 ? json.expires_in : 300;
          const refreshBefore = Math.min(this.config.refreshBefore ?? 60, lifetime / 2);
          resolve({ token: json.access_token, refreshAt: Date.now() + (lifetime - refreshBefore) * 1000 });
        });
      });
      req.end(body);
    });
  }
}
