/**
 * The user PIN: the URI's `pin-value`, else its `pin-source` (a `file:` URI or a path), else the
 * `pinFile` option (`--pkcs11-pin-file`). A file's trailing newline is not part of the PIN. The PIN
 * is never put in an error message; errors name only the file.
 */
import { readFileSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Pkcs11KeyError } from './errors.js';
import type { Pkcs11Uri } from './uri.js';

function pathOf(source: string): string {
  if (!/^file:/i.test(source)) {
    if (source.startsWith('|')) throw new Pkcs11KeyError('ERR_PKCS11_URI', 'invalid pkcs11: URI: pin-source programs ("|...") are not supported; use a file');
    return source;
  }
  try {
    return fileURLToPath(source);
  } catch {
    throw new Pkcs11KeyError('ERR_PKCS11_URI', 'invalid pkcs11: URI: pin-source must be a file: URI with an absolute path, or a path');
  }
}

function readPin(path: string, what: string): string {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new Pkcs11KeyError('ERR_PKCS11_PIN', `cannot read the PIN file ${what} ${path}: ${(error as NodeJS.ErrnoException).code ?? 'error'}`);
  }
  const pin = text.replace(/\r?\n$/, '');
  if (pin === '') throw new Pkcs11KeyError('ERR_PKCS11_PIN', `the PIN file ${what} ${path} is empty`);
  return pin;
}

export function resolvePin(uri: Pkcs11Uri, pinFile: string | undefined): string {
  if (uri.pinValue !== undefined) return uri.pinValue;
  if (uri.pinSource !== undefined) return readPin(pathOf(uri.pinSource), '(pin-source)');
  if (pinFile !== undefined) return readPin(pinFile, '(--pkcs11-pin-file)');
  throw new Pkcs11KeyError('ERR_PKCS11_PIN', 'no PIN: add pin-source=file:... to the pkcs11: URI, or give --pkcs11-pin-file');
}
