/** The TLS files every benchmark server child (resource servers, the AS) reads from its working directory. */
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface ServerTlsMaterial {
  ca: { cert: string };
  server: { cert: string; key: string };
}

/** `ca.pem`, `server.pem` and `server.key` in `dir`. */
export function writeServerTlsFiles(dir: string, pki: ServerTlsMaterial): void {
  writeFileSync(join(dir, 'ca.pem'), pki.ca.cert);
  writeFileSync(join(dir, 'server.pem'), pki.server.cert);
  writeFileSync(join(dir, 'server.key'), pki.server.key);
}
