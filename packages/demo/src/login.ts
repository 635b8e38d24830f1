/**
 * How each user logs in at the identity provider before agent A acts for them: the authorization
 * code flow with PKCE (S256) of a native app with a loopback redirect (RFC 8252). Scripted, the
 * demo posts the provider's own login and consent forms (what a browser would send); interactive,
 * it prints the authorization URL and waits for a person to log in with their own browser.
 */
import { authorizationRequest, codeFrom, discover, loginWithForms, redeemCode, startLoopbackRedirect } from './idp/index.js';

export interface LoginContext {
  user: string;
  password: string;
  issuer: string;
  /** CA (PEM) of the identity provider's certificate. */
  ca: string | Buffer;
  /** The same CA as a file (for a person to trust, `--interactive`). */
  caFile: string;
  /** Agent A's client_id at the identity provider. */
  clientId: string;
  /** The tether AS's resource identifier at the identity provider (RFC 8707). */
  resource: string;
}

export interface LoginResult {
  /** The identity provider's access token (RFC 9068 JWT, `aud` = the resource). */
  accessToken: string;
  /** How the user logged in, for the report. */
  method: string;
}

export type UserLogin = (context: LoginContext) => Promise<LoginResult>;

const REQUEST_TIMEOUT_MS = 10_000;
const SCOPE = 'openid email';

/** The default: the provider's own login and consent forms posted by the demo, no browser needed. */
export const scriptedLogin: UserLogin = async (c) => {
  const tokens = await loginWithForms({ issuer: c.issuer, ca: c.ca, clientId: c.clientId, user: c.user, password: c.password, resource: c.resource, scope: SCOPE, timeoutMs: REQUEST_TIMEOUT_MS });
  return { accessToken: tokens.accessToken, method: 'authorization code + PKCE S256, scripted (the login and consent forms posted by the demo)' };
};

/**
 * `tether demo --interactive`: `show` prints the authorization URL with the user's name and
 * password; a person logs in with their own browser; the code arrives at the loopback redirect.
 * Gives up after `waitMs`.
 */
export function interactiveLogin(show: (text: string) => void, waitMs: number): UserLogin {
  return async (c) => {
    const loopback = await startLoopbackRedirect({ timeoutMs: waitMs });
    try {
      const metadata = await discover(c.issuer, c.ca, REQUEST_TIMEOUT_MS);
      const request = authorizationRequest(metadata, { clientId: c.clientId, redirectUri: loopback.redirectUri, scope: SCOPE, resource: c.resource });
      show(
        [
          '',
          `Log in as ${c.user} (password ${c.password}) at the identity provider, within ${Math.round(waitMs / 1000)} s:`,
          `  ${request.url.href}`,
          `  (its certificate is from the demo CA, ${c.caFile}; your browser will warn about it)`,
          '',
        ].join('\n'),
      );
      const { params } = await loopback.response;
      const code = codeFrom(params, request, metadata);
      const tokens = await redeemCode(metadata, { ca: c.ca, timeoutMs: REQUEST_TIMEOUT_MS, clientId: c.clientId, redirectUri: loopback.redirectUri, resource: c.resource, code, request });
      return { accessToken: tokens.accessToken, method: 'authorization code + PKCE S256, in the browser of the person at the terminal' };
    } finally {
      await loopback.close();
    }
  };
}
