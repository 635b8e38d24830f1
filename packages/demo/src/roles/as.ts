/** The authorization server role. */
import { X509Certificate } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { AuthorizationServer } from '@tether/as';
import type { RoleHandlers } from './shared.js';


/** The `tether as --dev` configuration, plus: the users may bind tokens to agent A's sidecar key (`tmb`). */
export function asRole(): RoleHandlers {
  let server: AuthorizationServer | undefined;
  return {
    methods: {
      async start(params) {
        const { pkiDir, dataDir, tmbUsers, tmbHolder } = params as { pkiDir: string; dataDir: string; tmbUsers: string[]; tmbHolder: string };
        const { devConfig, startAuthorizationServer } = await import('@tether/as');
        const { certificateThumbprint } = await import('@tether/core');
        const config = devConfig({ pkiDir, host: '127.0.0.1', port: 0, dataDir, logLevel: 'silent' });
        const holderThumbprint = certificateThumbprint(new X509Certificate(readFileSync(join(pkiDir, `${tmbHolder}.pem`))));
        config.clients = (config.clients ?? []).map((c) => {
          if (c.client_id === tmbHolder) return { ...c, certificate_thumbprints: [holderThumbprint] };
          if (tmbUsers.includes(c.client_id)) return { ...c, tmb: { thumbprints: [], clients: [tmbHolder] } };
          return c;
        });
        server = await startAuthorizationServer(config, { defaultMetrics: false });
        return { issuer: server.issuer, url: server.url, tokenEndpoint: server.tokenEndpoint, jwksUri: server.jwksUri };
      },
    },
    async close() {
      await server?.close();
    },
  };
}
