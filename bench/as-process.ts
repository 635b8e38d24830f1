/**
 * Benchmark authorization server, one per child process (IPC):
 *
 *   tether  @tether/as from its published entry point: tls_client_auth by SPIFFE URI SAN,
 *           client_credentials and token exchange, ES256 JWT access tokens. Its store is the
 *           embedded SQLite default in DIR, or the PostgreSQL database given as third argument
 *           (several instances on one database share keys; all use one issuer).
 *   oidc    oidc-provider behind a node https server with requestCert, configured for
 *           client_credentials with tls_client_auth (features.mTLS.tlsClientAuth) and
 *           certificate-bound access tokens (features.mTLS.certificateBoundAccessTokens), ES256
 *           JWT access tokens through resource indicators, the client certificate handed over
 *           by features.mTLS.getCertificate.
 *
 * The parent sends {cmd:'reset'|'report'|'exit'}; the child answers with its CPU time.
 */
import { createServer } from 'node:https';
import { generateKeyPairSync } from 'node:crypto';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { pino } from 'pino';
import { GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, startAuthorizationServer, sanUriMatches, type ClientMetadata } from '@tether/as';

const [kind, dir, storeUrl] = process.argv.slice(2);
if ((kind !== 'tether' && kind !== 'oidc') || dir === undefined || process.send === undefined) {
  throw new Error('usage: as-process.ts tether|oidc DIR [STORE_URL] (forked with IPC)');
}
const read = (name: string) => readFileSync(`${dir}/${name}`, 'utf8');
const spiffe = (name: string) => `spiffe://tether.local/${name}`;

let close: () => Promise<void>;

if (kind === 'tether') {
  const client = (name: string, extra: Partial<ClientMetadata> = {}): ClientMetadata => ({
    client_id: name,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_san_uri: spiffe(name),
    identifiers: [spiffe(name)],
    grant_types: [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE],
    scope: 'read',
    audiences: ['*'],
    ...extra,
  });
  const server = await startAuthorizationServer(
    {
      issuer: 'https://as-bench.example',
      listen: { host: '127.0.0.1', port: 0 },
      tls: { cert: read('server.pem'), key: read('server.key') },
      clientAuthentication: { tls_client_auth: { ca: [read('ca.pem')] } },
      ...(storeUrl === undefined ? { dataDir: `${dir}/tether-data` } : { store: storeUrl }),
      logging: { level: 'silent' },
      resources: [{ identifier: 'https://rs.example', binding: 'none' }],
      clients: [
        client('a', { tls_session_bound_access_tokens: true }),
        client('b', { tls_session_bound_access_tokens: true }),
        client('cert', { tls_client_certificate_bound_access_tokens: true }),
      ],
    },
    { logger: pino({ level: 'silent' }), defaultMetrics: false },
  );
  process.send({ url: server.url, issuer: server.issuer });
  close = () => server.close();
} else {
  const { default: Provider } = await import('oidc-provider');
  const { privateKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
  const signing = { ...(privateKey.export({ format: 'jwk' }) as Record<string, unknown>), kid: 'oidc-1', alg: 'ES256', use: 'sig' };
  const https = createServer({
    cert: read('server.pem'),
    key: read('server.key'),
    ca: read('ca.pem'),
    requestCert: true,
    rejectUnauthorized: false,
    minVersion: 'TLSv1.3',
  });
  https.keepAliveTimeout = 60_000;
  await new Promise<void>((resolve) => https.listen(0, '127.0.0.1', resolve));
  const port = (https.address() as AddressInfo).port;
  const issuer = `https://127.0.0.1:${port}`;
  type Ctx = { socket: TLSSocket };
  const provider = new Provider(issuer, {
    clients: [
      {
        client_id: 'cert',
        token_endpoint_auth_method: 'tls_client_auth',
        tls_client_auth_san_uri: spiffe('cert'),
        tls_client_certificate_bound_access_tokens: true,
        grant_types: ['client_credentials'],
        response_types: [],
        redirect_uris: [],
        id_token_signed_response_alg: 'ES256',
        scope: 'read',
      },
    ],
    jwks: { keys: [signing as never] },
    scopes: ['read'],
    clientAuthMethods: ['tls_client_auth'],
    features: {
      devInteractions: { enabled: false },
      clientCredentials: { enabled: true },
      introspection: { enabled: false },
      revocation: { enabled: false },
      mTLS: {
        enabled: true,
        certificateBoundAccessTokens: true,
        tlsClientAuth: true,
        getCertificate: (ctx: Ctx) => ctx.socket.getPeerX509Certificate() ?? undefined,
        certificateAuthorized: (ctx: Ctx) => ctx.socket.authorized === true,
        certificateSubjectMatches: (ctx: Ctx, property: string, expected: string) => {
          const cert = ctx.socket.getPeerX509Certificate();
          return cert !== undefined && property === 'tls_client_auth_san_uri' && sanUriMatches(cert, expected);
        },
      },
      resourceIndicators: {
        enabled: true,
        defaultResource: () => 'https://rs.example',
        useGrantedResource: () => true,
        getResourceServerInfo: () => ({
          scope: 'read',
          audience: 'https://rs.example',
          accessTokenTTL: 300,
          accessTokenFormat: 'jwt',
          jwt: { sign: { alg: 'ES256' } },
        }),
      },
    },
  } as never);
  https.on('request', provider.callback());
  process.send({ url: issuer, issuer });
  close = () => new Promise<void>((resolve) => {
    https.close(() => resolve());
    https.closeAllConnections();
  });
}

// Never outlive the load generator.
process.on('disconnect', () => {
  void close().finally(() => process.exit(0));
});

let cpu = process.cpuUsage();
process.on('message', (msg: { cmd: string }) => {
  if (msg.cmd === 'reset') {
    cpu = process.cpuUsage();
    process.send?.({ ok: true });
  } else if (msg.cmd === 'report') {
    const used = process.cpuUsage(cpu);
    process.send?.({ cpuMicros: used.user + used.system });
  } else if (msg.cmd === 'exit') {
    void close().finally(() => process.exit(0));
  }
});
