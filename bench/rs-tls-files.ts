/** The TLS files every benchmark resource-server child reads from its working directory. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface RsTlsMaterial {
  ca: { cert: string };
  server: { cert: string; key: string };
}

/** `ca.pem`, `server.pem` and `server.key` in `dir`. */
export function writeRsTlsFiles(dir: string, pki: RsTlsMaterial): void {
  writeFileSync(join(dir, 'ca.pem'), pki.ca.cert);
  writeFileSync(join(dir, 'server.pem'), pki.server.cert);
  writeFileSync(join(dir, 'server.key'), pki.server.key);
}
