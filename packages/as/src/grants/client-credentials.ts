/**
 * The client_credentials grant (RFC 6749 section 4.4): a token for the client itself, for the
 * audiences it asks for (or its default), with the scopes it asks for within what it may request
 * (or its default scope), bound as policy says (binding.ts), to `tmb` or to a DPoP key if asked.
 */
import { bindingLevel, confirmation, parseTmb } from '../binding.js';
import { issueToken } from '../issuance.js';
import { grantedScopes, requestedAudiences, restrictToResources, splitScope } from '../targets.js';
import type { Grant } from './grant.js';

export const clientCredentials: Grant = {
  parameters: ['scope', 'audience', 'resource', 'tmb'],
  enabled: () => true,
  async handle(engine, { req, auth, dpop }) {
    const client = auth.client;
    const tmb = parseTmb(req.params.get('tmb'));
    const audiences = requestedAudiences(engine, req.params, client);
    const requested = req.params.get('scope');
    const fallback = client.default_scope === undefined ? [...client.scopes] : splitScope(client.default_scope);
    let scopes = grantedScopes(requested, client.scopes, fallback, { description: 'The requested scope exceeds what the client may request', reason: 'scope_not_allowed' });
    scopes = restrictToResources(engine, scopes, audiences, requested !== undefined);
    const level = bindingLevel(engine, client, audiences, 'none', 0);
    const cnf = await confirmation(engine, level, tmb, req.peer, client, dpop);
    return issueToken(engine, {
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
  },
};
