/** The identity provider role: the company's existing OpenID Provider, where people log in. */
import { readFileSync } from 'node:fs';
import type { IdentityProvider } from '../idp/index.js';
import type { IdpStartParams } from '../protocol.js';
import type { RoleHandlers } from './shared.js';

export function idpRole(): RoleHandlers {
  let idp: IdentityProvider | undefined;
  return {
    methods: {
      async start(params) {
        const p = params as IdpStartParams;
        const { startIdentityProvider } = await import('../idp/index.js');
        idp = await startIdentityProvider({ tls: { cert: readFileSync(p.certFile), key: readFileSync(p.keyFile) }, users: p.users, clients: p.clients, resource: p.resource });
        return { issuer: idp.issuer };
      },
    },
    async close() {
      await idp?.close();
    },
  };
}
