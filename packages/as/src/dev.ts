/**
 * `--dev` configuration from a `tether pki init` directory: the server certificate, the CA as the
 * tls_client_auth trust anchor, and one client per client certificate (`<name>.pem`):
 * client_id `<name>`, tls_client_auth by its SPIFFE URI SAN, session-bound tokens, both grants,
 * scopes `read write`, and every other client as an allowed audience (so any client may obtain
 * and exchange tokens for any other). For development only.
 */
import { X509Certificate } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE, type AuthorizationServerConfig } from './config.js';
import { ConfigError } from './errors.js';
import { uriSans } from './san.js';

export interface DevConfigOptions {
  pkiDir: string;
  host: string;
  port: number;
  /** Default: `<pkiDir>/as-data`. */
  dataDir?: string;
  logLevel?: 'fatal' | 'error' | 'warn' | 'info' | 'debug' | 'trace' | 'silent';
}

const RESERVED = new Set(['ca', 'server']);

export function devConfig(options: DevConfigOptions): AuthorizationServerConfig {
  const issues: string[] = [];
  const read = (name: string): string | undefined => {
    try {
      return readFileSync(join(options.pkiDir, name), 'utf8');
    } catch (error) {
      issues.push(`--pki: cannot read ${join(options.pkiDir, name)}: ${(error as { code?: string }).code ?? String(error)}`);
      return undefined;
    }
  };
  const ca = read('ca.pem');
  const cert = read('server.pem');
  const key = read('server.key');
  let entries: string[] = [];
  try {
    entries = readdirSync(options.pkiDir).filter((f) => f.endsWith('.pem')).sort();
  } catch (error) {
    issues.push(`--pki: cannot list ${options.pkiDir}: ${(error as { code?: string }).code ?? String(error)}`);
  }
  const clients: Array<{ id: string; spiffe: string }> = [];
  for (const file of entries) {
    const id = basename(file, '.pem');
    if (RESERVED.has(id)) continue;
    const pem = read(file);
    if (pem === undefined) continue;
    let certificate: X509Certificate;
    try {
      certificate = new X509Certificate(pem);
    } catch {
      issues.push(`--pki: ${file} is not a PEM certificate`);
      continue;
    }
    if (certificate.ca) continue;
    const spiffe = uriSans(certificate).find((u) => u.startsWith('spiffe://')) ?? `spiffe://tether.local/${id}`;
    clients.push({ id, spiffe });
  }
  if (issues.length > 0) throw new ConfigError(issues);
  if (clients.length === 0) throw new ConfigError([`--pki: no client certificates (<name>.pem) in ${options.pkiDir}`]);
  return {
    listen: { host: options.host, port: options.port },
    tls: { cert, key },
    clientAuthentication: { tls_client_auth: { ca: [ca as string] } },
    dataDir: options.dataDir ?? join(options.pkiDir, 'as-data'),
    logging: { level: options.logLevel ?? 'info' },
    clients: clients.map((c) => ({
      client_id: c.id,
      token_endpoint_auth_method: 'tls_client_auth' as const,
      tls_client_auth_san_uri: c.spiffe,
      identifiers: [c.spiffe],
      grant_types: [GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE],
      scope: 'read write',
      tls_session_bound_access_tokens: true,
      audiences: clients.filter((o) => o.id !== c.id).flatMap((o) => [o.id, o.spiffe]),
    })),
  };
}
