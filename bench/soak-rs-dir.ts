/** The working directory bench/soak-rs.ts reads: TLS material, the issuer's JWKS and its cache limits. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export function writeSoakRsDir(dir: string, pki: { ca: { cert: string }; server: { cert: string; key: string } }, jwks: unknown, limits: { cachePerConnection: number; cacheMax: number }): void {
  writeFileSync(join(dir, 'ca.pem'), pki.ca.cert);
  writeFileSync(join(dir, 'server.pem'), pki.server.cert);
  writeFileSync(join(dir, 'server.key'), pki.server.key);
  writeFileSync(join(dir, 'jwks.json'), JSON.stringify(jwks));
  writeFileSync(join(dir, 'config.json'), JSON.stringify(limits));
}
