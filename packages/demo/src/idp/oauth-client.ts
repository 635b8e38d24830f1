/**
 * The native-app side of the authorization code flow (RFC 6749 section 4.1, PKCE RFC 7636 S256,
 * resource RFC 8707, iss RFC 9207), shared by the scripted login and the browser test.
 */
import { createHash, randomBytes } from 'node:crypto';
import { decodeJwt } from 'jose';
import { httpsCall } from './https-client.js';

export interface ProviderMetadata {
  issuer: string;
  authorization_endpoint: string;
  token_endpoint: string;
  jwks_uri: string;
}

export interface AuthorizationRequest {
  /** The URL to open (in a browser, or with loginWithForms). */
  url: URL;
  state: string;
  nonce: string;
  codeVerifier: string;
}

export interface LoginTokens {
  /** An RFC 9068 JWT access token whose `aud` is the requested resource. */
  accessToken: string;
  idToken: string;
  /** Seconds, as the token endpoint said. */
  expiresIn: number;
}

const random = (): string => randomBytes(32).toString('base64url');

export async function discover(issuer: string, ca: string | Buffer, timeoutMs: number): Promise<ProviderMetadata> {
  const answer = await httpsCall(new URL('/.well-known/openid-configuration', issuer), { ca, timeoutMs });
  if (answer.status !== 200) throw new Error(`discovery at ${issuer} answered ${answer.status}`);
  const metadata = JSON.parse(answer.body) as ProviderMetadata;
  if (metadata.issuer !== issuer) throw new Error(`discovery at ${issuer} names issuer ${metadata.issuer}`);
  return metadata;
}

export function authorizationRequest(metadata: ProviderMetadata, p: { clientId: string; redirectUri: string; scope: string; resource: string }): AuthorizationRequest {
  const codeVerifier = random();
  const state = random();
  const nonce = random();
  const url = new URL(metadata.authorization_endpoint);
  url.search = new URLSearchParams({
    response_type: 'code',
    client_id: p.clientId,
    redirect_uri: p.redirectUri,
    scope: p.scope,
    resource: p.resource,
    state,
    nonce,
    code_challenge: createHash('sha256').update(codeVerifier).digest('base64url'),
    code_challenge_method: 'S256',
  }).toString();
  return { url, state, nonce, codeVerifier };
}

/** The code of an authorization response, after checking its state and issuer (RFC 9207). */
export function codeFrom(params: URLSearchParams, request: AuthorizationRequest, metadata: ProviderMetadata): string {
  const error = params.get('error');
  if (error !== null) throw new Error(`authorization refused: ${error}${params.has('error_description') ? ` (${params.get('error_description')})` : ''}`);
  if (params.get('state') !== request.state) throw new Error('the authorization response has another state');
  if (params.get('iss') !== metadata.issuer) throw new Error('the authorization response comes from another issuer');
  const code = params.get('code');
  if (code === null || code === '') throw new Error('the authorization response has no code');
  return code;
}

/** Redeems the code with its code_verifier; checks the ID token's nonce (its signature is the caller's to check, if it keeps it). */
export async function redeemCode(
  metadata: ProviderMetadata,
  p: { ca: string | Buffer; timeoutMs: number; clientId: string; redirectUri: string; resource: string; code: string; request: AuthorizationRequest },
): Promise<LoginTokens> {
  const body = new URLSearchParams({ grant_type: 'authorization_code', code: p.code, redirect_uri: p.redirectUri, client_id: p.clientId, code_verifier: p.request.codeVerifier, resource: p.resource });
  const answer = await httpsCall(new URL(metadata.token_endpoint), {
    ca: p.ca,
    timeoutMs: p.timeoutMs,
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded', accept: 'application/json' },
    body: body.toString(),
  });
  const json = JSON.parse(answer.body) as { access_token?: string; id_token?: string; expires_in?: number; error?: string };
  if (answer.status !== 200 || typeof json.access_token !== 'string' || typeof json.id_token !== 'string') {
    throw new Error(`the token endpoint refused the code: ${answer.status} ${json.error ?? ''}`);
  }
  if (decodeJwt(json.id_token).nonce !== p.request.nonce) throw new Error('the ID token has another nonce');
  return { accessToken: json.access_token, idToken: json.id_token, expiresIn: json.expires_in ?? 0 };
}
