/**
 * Signing in at the identity provider without a browser, doing what a browser does: open the
 * authorization URL, follow redirects with the cookies, fill and post the login form, post the
 * consent form, and land on the app's loopback redirect listener; then redeem the code with PKCE.
 */
import { CookieJar, httpsCall, type HttpsAnswer } from './https-client.js';
import { startLoopbackRedirect } from './loopback.js';
import { authorizationRequest, codeFrom, discover, redeemCode, type LoginTokens } from './oauth-client.js';

export interface LoginWithFormsOptions {
  issuer: string;
  /** The CA (PEM) the identity provider's certificate chains to. */
  ca: string | Buffer;
  clientId: string;
  /** A loopback redirect URI registered for the client (default `http://127.0.0.1/callback`; the port is chosen here). */
  redirectUri?: string;
  user: string;
  password: string;
  /** The resource indicator (RFC 8707): the tether AS's identifier, the `aud` of the access token. */
  resource: string;
  /** Default `openid`. */
  scope?: string;
  /** Deadline of each request, and of the whole login (x4). Default 10 s. */
  timeoutMs?: number;
}

const MAX_STEPS = 12;

export async function loginWithForms(options: LoginWithFormsOptions): Promise<LoginTokens> {
  const timeoutMs = options.timeoutMs ?? 10_000;
  const loopback = await startLoopbackRedirect({ ...(options.redirectUri === undefined ? {} : { redirectUri: options.redirectUri }), timeoutMs: 4 * timeoutMs });
  try {
    const metadata = await discover(options.issuer, options.ca, timeoutMs);
    const p = { clientId: options.clientId, redirectUri: loopback.redirectUri, scope: options.scope ?? 'openid', resource: options.resource };
    const request = authorizationRequest(metadata, p);
    const browser = new FormBrowser(new URL(options.issuer).origin, options.ca, timeoutMs, loopback.redirectUri);
    const loginPage = await browser.go(request.url);
    const consentPage = await browser.submit(loginPage, 'login', { username: options.user, password: options.password });
    if (consentPage !== 'redirected') await browser.submit(consentPage, 'consent', {});
    const { params } = await loopback.response;
    const code = codeFrom(params, request, metadata);
    return await redeemCode(metadata, { ca: options.ca, timeoutMs, clientId: options.clientId, redirectUri: loopback.redirectUri, resource: options.resource, code, request });
  } finally {
    await loopback.close();
  }
}

/** Follows redirects within the identity provider's origin; a redirect to the app's redirect URI is delivered to it. */
class FormBrowser {
  readonly #jar = new CookieJar();

  constructor(
    readonly origin: string,
    readonly ca: string | Buffer,
    readonly timeoutMs: number,
    readonly redirectUri: string,
  ) {}

  /** GET, following redirects; an HTML page of the provider, or 'redirected' once the app's redirect URI was reached. */
  async go(start: URL, first?: { method: string; body: string }): Promise<HttpsAnswer | 'redirected'> {
    let url = start;
    let step: { method: string; body: string } | undefined = first;
    for (let i = 0; i < MAX_STEPS; i++) {
      if (url.href.startsWith(this.redirectUri)) {
        const res = await fetch(url, { redirect: 'manual', signal: AbortSignal.timeout(this.timeoutMs) });
        await res.arrayBuffer();
        return 'redirected';
      }
      if (url.origin !== this.origin) throw new Error(`the identity provider redirected to ${url.origin}`);
      const headers: Record<string, string> = { accept: 'text/html', cookie: this.#jar.header(url.pathname) };
      if (step !== undefined) headers['content-type'] = 'application/x-www-form-urlencoded';
      const answer = await httpsCall(url, { ca: this.ca, timeoutMs: this.timeoutMs, method: step?.method ?? 'GET', headers, ...(step === undefined ? {} : { body: step.body }) });
      this.#jar.store(answer.headers['set-cookie']);
      const location = answer.headers.location;
      if (answer.status < 300 || answer.status >= 400 || location === undefined) return answer;
      url = new URL(location, url);
      step = undefined;
    }
    throw new Error('too many redirects at the identity provider');
  }

  /** Posts the page's form `id` with its hidden fields and `fields`, as a browser would. */
  async submit(page: HttpsAnswer | 'redirected', id: string, fields: Record<string, string>): Promise<HttpsAnswer | 'redirected'> {
    if (page === 'redirected' || page.status !== 200) throw new Error(`expected the ${id} page, got ${page === 'redirected' ? 'the redirect' : `status ${page.status}`}`);
    const form = parseForm(page.body, id);
    const body = new URLSearchParams({ ...form.hidden, ...fields }).toString();
    const next = await this.go(new URL(form.action, this.origin), { method: 'POST', body });
    if (next !== 'redirected' && next.status !== 200) throw new Error(`the ${id} form was refused: ${next.status} ${errorText(next.body)}`);
    return next;
  }
}

function attribute(tag: string, name: string): string | undefined {
  const m = new RegExp(`\\s${name}="([^"]*)"`).exec(tag);
  return m?.[1]?.replace(/&quot;/g, '"').replace(/&#39;/g, "'").replace(/&lt;/g, '<').replace(/&gt;/g, '>').replace(/&amp;/g, '&');
}

/** The action and hidden inputs of the provider's own form (its pages are ours: one form per id, attributes in double quotes). */
function parseForm(html: string, id: string): { action: string; hidden: Record<string, string> } {
  const m = new RegExp(`<form[^>]*\\sid="${id}"[^>]*>([\\s\\S]*?)</form>`).exec(html);
  const tag = m?.[0].slice(0, m[0].indexOf('>') + 1);
  const action = tag === undefined ? undefined : attribute(tag, 'action');
  if (m === null || action === undefined) throw new Error(`no ${id} form on the page`);
  const hidden: Record<string, string> = {};
  for (const input of (m[1] ?? '').match(/<input[^>]*>/g) ?? []) {
    const name = attribute(input, 'name');
    if (name !== undefined && attribute(input, 'type') === 'hidden') hidden[name] = attribute(input, 'value') ?? '';
  }
  return { action, hidden };
}

function errorText(html: string): string {
  return /id="error"[^>]*>([^<]*)</.exec(html)?.[1] ?? '';
}
