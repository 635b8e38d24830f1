/**
 * Sealing of secrets at rest (private signing keys, shared secrets) under a key-encryption key
 * (KEK): AES-256-GCM from node:crypto, a fresh 96-bit IV per value, and the value's name (the
 * `kid`) as additional authenticated data, so a sealed value cannot be moved to another row.
 * Sealed text: `kek1.<iv>.<ciphertext>.<tag>` (base64url). A wrong KEK fails GCM authentication:
 * it is reported, never turned into garbage keys.
 */
import { createCipheriv, createDecipheriv, createHash, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { StoreError } from './contract.js';

const PREFIX = 'kek1.';

export class KeyEncryptionKey {
  readonly #key: Buffer;
  /** First 8 hex digits of SHA-256 of the key: names the KEK in errors without revealing it. */
  readonly fingerprint: string;

  constructor(key: Buffer) {
    if (key.length !== 32) throw new StoreError('kek_invalid', 'the key-encryption key must be 32 bytes (base64, base64url or 64 hex digits)');
    this.#key = Buffer.from(key);
    this.fingerprint = createHash('sha256').update(key).digest('hex').slice(0, 8);
  }

  /** Parse the text form: 64 hex digits, or base64/base64url of 32 bytes (surrounding whitespace ignored). */
  static parse(text: string, source: string): KeyEncryptionKey {
    const t = text.trim();
    const bytes = /^[0-9a-fA-F]{64}$/.test(t) ? Buffer.from(t, 'hex') : /^[A-Za-z0-9+/_-]{43}=?$/.test(t) ? Buffer.from(t.replace(/=$/, ''), 'base64url') : undefined;
    if (bytes?.length !== 32) throw new StoreError('kek_invalid', `${source}: the key-encryption key must be 32 bytes written as 64 hex digits or base64`);
    return new KeyEncryptionKey(bytes);
  }

  /** Load from a file (`{file}`) or an environment variable (`{env}`). */
  static load(from: { file?: string; env?: string }, environment: NodeJS.ProcessEnv = process.env): KeyEncryptionKey {
    if (from.file !== undefined) {
      let text: string;
      try {
        text = readFileSync(from.file, 'utf8');
      } catch (error) {
        throw new StoreError('kek_unreadable', `cannot read the key-encryption key file ${from.file}: ${(error as { code?: string }).code ?? String(error)}`, { cause: error });
      }
      return KeyEncryptionKey.parse(text, from.file);
    }
    const name = from.env as string;
    const value = environment[name];
    if (value === undefined || value === '') throw new StoreError('kek_unreadable', `the environment variable ${name} (key-encryption key) is not set`);
    return KeyEncryptionKey.parse(value, `$${name}`);
  }

  seal(plaintext: string, name: string): string {
    const iv = randomBytes(12);
    const cipher = createCipheriv('aes-256-gcm', this.#key, iv);
    cipher.setAAD(Buffer.from(name, 'utf8'));
    const ciphertext = Buffer.concat([cipher.update(plaintext, 'utf8'), cipher.final()]);
    return `${PREFIX}${iv.toString('base64url')}.${ciphertext.toString('base64url')}.${cipher.getAuthTag().toString('base64url')}`;
  }

  open(sealed: string, name: string): string {
    const parts = sealed.slice(PREFIX.length).split('.');
    if (!isSealed(sealed) || parts.length !== 3) throw new StoreError('kek_corrupt', `sealed value ${name} is malformed`);
    const [iv, ciphertext, tag] = parts.map((p) => Buffer.from(p, 'base64url')) as [Buffer, Buffer, Buffer];
    try {
      const decipher = createDecipheriv('aes-256-gcm', this.#key, iv);
      decipher.setAAD(Buffer.from(name, 'utf8'));
      decipher.setAuthTag(tag);
      return Buffer.concat([decipher.update(ciphertext), decipher.final()]).toString('utf8');
    } catch (cause) {
      throw new StoreError('kek_mismatch', `cannot unseal ${name}: the key-encryption key (fingerprint ${this.fingerprint}) is not the one it was sealed with`, { cause });
    }
  }
}

export function isSealed(value: string): boolean {
  return value.startsWith(PREFIX);
}
