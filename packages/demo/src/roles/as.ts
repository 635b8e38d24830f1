/** The authorization server role. */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuthorizationServer, AuthorizationServerConfig } from '@tether/as';
import type { AsStartParams } from '../protocol.js';
import type { RoleHandlers } from './shared.js';

type ClientConfig = NonNullable<AuthorizationServerConfig['clients']>[number];

/**
 * One client of the `--dev` configuration, adjusted: the `tmb` holder's certificate registered,
 * the users allowed to bind to it, extra identifiers (resource URLs), which every client that may
 * ask for this client as an audience may ask for too.
 */
function adjustClient(c: ClientConfig, p: AsStartParams, holderThumbprint: string): ClientConfig {
  const out: ClientConfig = { ...c };
  if (c.client_id === p.tmbHolder) out.certificate_thumbprints = [holderThumbprint];
  if (p.tmbUsers.includes(c.client_id)) out.tmb = { thumbprints: [], clients: [p.tmbHolder] };
  const own = p.identifiers[c.client_id];
  if (own !== undefined) out.identifiers = [...(c.identifiers ?? []), ...own];
  if (out.audiences !== undefined) out.audiences = out.audiences.filter((a) => !p.unregistered.some((u) => a === u || a.endsWith(`/${u}`)));
  const reachable = Object.entries(p.identifiers).filter(([id]) => (c.audiences ?? []).includes(id));
  if (reachable.length > 0) out.audiences = [...(out.audiences ?? []), ...reachable.flatMap(([, ids]) => ids)];
  return out;
}

/**
 * The `tether as --dev` configuration, plus: the users may bind tokens to agent A's sidecar key
 * (`tmb`), resource URLs for the agents, and the company's identity provider as a trusted issuer
 * whose access tokens agent A may exchange (issue 16).
 */
export function asRole(): RoleHandlers {
  let server: AuthorizationServer | undefined;
  return {
    methods: {
      async start(params) {
        const p = params as AsStartParams;
        const { devConfig, startAuthorizationServer } = await import('@tether/as');
        const { certificateThumbprint, TOKEN_TYPE_ACCESS_TOKEN } = await import('@tether/core');
        const config = devConfig({ pkiDir: p.pkiDir, host: '127.0.0.1', port: 0, dataDir: p.dataDir, logLevel: 'silent' });
        const holderThumbprint = certificateThumbprint(new X509Certificate(readFileSync(join(p.pkiDir, `${p.tmbHolder}.pem`))));
        config.clients = (config.clients ?? []).filter((c) => !p.unregistered.includes(c.client_id)).map((c) => adjustClient(c, p, holderThumbprint));
        config.trustedIssuers = [
          {
            issuer: p.idp.issuer,
            discovery: true,
            caFiles: [p.idp.caFile],
            audiences: [p.idp.audience],
            subjectTokenTypes: [TOKEN_TYPE_ACCESS_TOKEN],
            clients: p.idp.clients,
            claims: p.idp.claims,
          },
        ];
        server = await startAuthorizationServer(config, { defaultMetrics: false });
        return { issuer: server.issuer, url: server.url, tokenEndpoint: server.tokenEndpoint, jwksUri: server.jwksUri };
      },
    },
    async close() {
      await server?.close();
    },
  };
}
