/**
 * The oidc-provider configuration of the demo identity provider: authorization code flow with PKCE
 * (S256, which is all oidc-provider 9 implements) for public native clients, RFC 9068 JWT access
 * tokens for one resource (RFC 8707), ES256 ID tokens. Keys are generated at each start.
 */
import { generateKeyPairSync, randomBytes, randomUUID } from 'node:crypto';
import { errors, type Account } from './provider-module.js';
import { errorPage, PAGE_HEADERS } from './pages.js';
import { DEFAULT_ACCESS_TOKEN_CLAIMS, DEFAULT_RESOURCE_SCOPES, type IdentityProviderOptions, type IdentityProviderUser } from './options.js';

/** The path of the provider's interaction pages (served by interactions.ts). */
export const INTERACTION_PATH = '/interaction/';

function signingJwk(): Record<string, unknown> {
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  return { ...privateKey.export({ format: 'jwk' }), kid: randomUUID(), alg: 'ES256', use: 'sig' };
}

function userClaims(user: IdentityProviderUser): Record<string, unknown> {
  return { sub: user.sub, ...(user.email === undefined ? {} : { email: user.email, email_verified: true }) };
}

function account(user: IdentityProviderUser): Account {
  return { accountId: user.sub, claims: () => userClaims(user) };
}

/** The user's claims named in `names`, for an access token (RFC 9068 section 2.2.3.1 allows identity claims). */
function accessTokenExtras(users: Map<string, IdentityProviderUser>, names: readonly string[], accountId: string | undefined): Record<string, unknown> | undefined {
  const user = accountId === undefined ? undefined : users.get(accountId);
  if (user === undefined) return undefined;
  const claims = userClaims(user);
  return Object.fromEntries(names.filter((n) => n !== 'sub' && claims[n] !== undefined).map((n) => [n, claims[n]]));
}

export function providerConfiguration(options: IdentityProviderOptions): Record<string, unknown> {
  const users = new Map(options.users.map((u) => [u.sub, u]));
  const scope = (options.resourceScopes ?? DEFAULT_RESOURCE_SCOPES).join(' ');
  const accessTokenTTL = options.accessTokenTtl ?? 300;
  return {
    clients: options.clients.map((c) => ({
      client_id: c.client_id,
      redirect_uris: c.redirect_uris,
      application_type: 'native',
      token_endpoint_auth_method: 'none',
      grant_types: ['authorization_code'],
      response_types: ['code'],
      id_token_signed_response_alg: 'ES256',
    })),
    jwks: { keys: [signingJwk()] },
    cookies: { keys: [randomBytes(32).toString('base64url')] },
    findAccount: (_ctx: unknown, sub: string) => {
      const user = users.get(sub);
      return user === undefined ? undefined : account(user);
    },
    claims: { openid: ['sub'], email: ['email', 'email_verified'] },
    extraTokenClaims: (_ctx: unknown, token: { accountId?: string }) => accessTokenExtras(users, options.accessTokenClaims ?? DEFAULT_ACCESS_TOKEN_CLAIMS, token.accountId),
    responseTypes: ['code'],
    pkce: { required: () => true },
    issueRefreshToken: () => false,
    interactions: { url: (_ctx: unknown, interaction: { uid: string }) => `${INTERACTION_PATH}${interaction.uid}` },
    // The provider's own error page (the default one loads a web font from elsewhere); only the OAuth error code and description are shown.
    renderError: (ctx: { type: string; body: string; set(headers: Record<string, string>): void }, out: { error?: string; error_description?: string }) => {
      ctx.set(PAGE_HEADERS);
      ctx.type = 'html';
      ctx.body = errorPage(`${out.error ?? 'error'}: ${out.error_description ?? ''}`);
    },
    features: {
      devInteractions: { enabled: false },
      // Sign-in only: no logout pages, no PAR, no DPoP at this provider.
      rpInitiatedLogout: { enabled: false },
      pushedAuthorizationRequests: { enabled: false },
      dPoP: { enabled: false },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => options.resource,
        useGrantedResource: () => true,
        getResourceServerInfo: (_ctx: unknown, indicator: string) => {
          if (indicator !== options.resource) throw new errors.InvalidTarget();
          return { scope, audience: options.resource, accessTokenTTL, accessTokenFormat: 'jwt', jwt: { sign: { alg: 'ES256' } } };
        },
      },
    },
    ttl: {
      AccessToken: accessTokenTTL,
      AuthorizationCode: 60,
      IdToken: options.idTokenTtl ?? 300,
      Interaction: 600,
      Session: 3600,
      Grant: 3600,
    },
  };
}

