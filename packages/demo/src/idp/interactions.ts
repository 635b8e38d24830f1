/**
 * The interaction routes of the identity provider (the oidc-provider way: interactionDetails, then
 * interactionFinished with a login result or a Grant): GET the current prompt's page, POST the
 * login form, POST consent or refusal.
 */
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { InteractionDetails, Provider } from './provider-module.js';
import { INTERACTION_PATH } from './configuration.js';
import type { IdentityProviderUser } from './options.js';
import { checkPassword } from './passwords.js';
import { PAGE_HEADERS, consentPage, errorPage, loginPage } from './pages.js';
import { readForm } from './form-body.js';

const ROUTE = /^\/interaction\/([A-Za-z0-9_-]{1,64})(?:\/(login|confirm|abort))?$/;

export function isInteractionRequest(path: string): boolean {
  return path.startsWith(INTERACTION_PATH);
}

function send(res: ServerResponse, status: number, html: string): void {
  res.writeHead(status, { ...PAGE_HEADERS, 'content-length': String(Buffer.byteLength(html)) }).end(html);
}

/** Handles one request under /interaction/; never throws (a bad or expired interaction gets an error page). */
export async function handleInteraction(provider: Provider, users: readonly IdentityProviderUser[], req: IncomingMessage, res: ServerResponse): Promise<void> {
  const match = ROUTE.exec(new URL(req.url ?? '/', 'https://idp.invalid').pathname);
  const action = match?.[2];
  if (match === null || (action === undefined ? req.method !== 'GET' : req.method !== 'POST')) {
    send(res, 404, errorPage('Not found.'));
    return;
  }
  try {
    const details = await provider.interactionDetails(req, res);
    if (details.uid !== match[1]) {
      send(res, 400, errorPage('This sign-in page belongs to another sign-in; start again from the application.'));
      return;
    }
    if (action === undefined) showPrompt(details, res);
    else if (action === 'login' && details.prompt.name === 'login') await login(provider, users, details, req, res);
    else if (action === 'confirm' && details.prompt.name === 'consent') await confirm(provider, details, req, res);
    else if (action === 'abort') await provider.interactionFinished(req, res, { error: 'access_denied', error_description: 'the user refused' }, { mergeWithLastSubmission: false });
    else send(res, 400, errorPage('This step does not match the sign-in; start again from the application.'));
  } catch {
    // No interaction cookie, an expired interaction or a malformed form: nothing internal is shown.
    if (!res.headersSent) send(res, 400, errorPage('This sign-in has expired or is not valid; start again from the application.'));
    else res.destroy();
  }
}

function showPrompt(details: InteractionDetails, res: ServerResponse): void {
  const clientId = details.params.client_id;
  if (details.prompt.name === 'login') {
    send(res, 200, loginPage(details.uid, clientId));
    return;
  }
  const { missingOIDCScope = [], missingResourceScopes = {} } = details.prompt.details;
  const scopes = [...missingOIDCScope, ...Object.values(missingResourceScopes).flat()];
  send(res, 200, consentPage(details.uid, clientId, details.session?.accountId ?? '', scopes, Object.keys(missingResourceScopes)));
}

async function login(provider: Provider, users: readonly IdentityProviderUser[], details: InteractionDetails, req: IncomingMessage, res: ServerResponse): Promise<void> {
  const form = await readForm(req);
  const username = form.get('username') ?? '';
  const user = checkPassword(users, username, form.get('password') ?? '');
  if (user === undefined) {
    send(res, 401, loginPage(details.uid, details.params.client_id, 'Wrong username or password.', username));
    return;
  }
  await provider.interactionFinished(req, res, { login: { accountId: user.sub } }, { mergeWithLastSubmission: false });
}

/** Consent: a Grant with what the prompt says is missing (OIDC scopes and claims, resource scopes). */
async function confirm(provider: Provider, details: InteractionDetails, req: IncomingMessage, res: ServerResponse): Promise<void> {
  await readForm(req);
  const accountId = details.session?.accountId;
  if (accountId === undefined) throw new Error('consent without a login');
  const existing = details.grantId === undefined ? undefined : await provider.Grant.find(details.grantId);
  const grant = existing ?? new provider.Grant({ accountId, clientId: details.params.client_id });
  const { missingOIDCScope, missingOIDCClaims, missingResourceScopes } = details.prompt.details;
  if (missingOIDCScope !== undefined) grant.addOIDCScope(missingOIDCScope.join(' '));
  if (missingOIDCClaims !== undefined) grant.addOIDCClaims(missingOIDCClaims);
  for (const [resource, scopes] of Object.entries(missingResourceScopes ?? {})) grant.addResourceScope(resource, scopes.join(' '));
  const grantId = await grant.save();
  await provider.interactionFinished(req, res, { consent: existing === undefined ? { grantId } : {} }, { mergeWithLastSubmission: true });
}
