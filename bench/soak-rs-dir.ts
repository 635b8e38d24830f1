/** The working directory bench/soak-rs.ts reads: TLS material, the issuer's JWKS and its cache limits. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { writeServerTlsFiles, type ServerTlsMaterial } from './server-tls-files.js';

export function writeSoakRsDir(dir: string, pki: ServerTlsMaterial, jwks: unknown, limits: { cachePerConnection: number; cacheMax: number }): void {
  writeServerTlsFiles(dir, pki);
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(limits));
}
