/**
 * Server-provided DPoP nonces at the token endpoint (RFC 9449 section 8), without per-nonce state:
 * a nonce is `<window><salt>.<mac>` where the window is `floor(now / lifetime)`, the salt 8 random
 * bytes, and the mac HMAC-SHA256 under a secret every instance reads from the store (so a nonce
 * one instance issued is accepted by all). A nonce is accepted in its window and the next one, so
 * it lives between `lifetime` and `2 * lifetime` seconds. Replay of a whole proof is stopped by its
 * `jti`, not by the nonce.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import type { DpopNonceSource } from '@tether/core/dpop';

const MAC_BYTES = 16;

export class DpopNonces implements DpopNonceSource {
  readonly #secret: Buffer;
  readonly #lifetime: number;
  readonly #now: () => number;

  /** `secret`: 32 bytes shared by every instance; `lifetime` seconds; `now` epoch seconds. */
  constructor(secret: Buffer, lifetime: number, now: () => number) {
    this.#secret = secret;
    this.#lifetime = lifetime;
    this.#now = now;
  }

  #mac(body: Buffer): Buffer {
    return createHmac('sha256', this.#secret).update('tether dpop nonce\0').update(body).digest().subarray(0, MAC_BYTES);
  }

  #window(): number {
    return Math.floor(this.#now() / this.#lifetime);
  }

  issue(): string {
    const body = Buffer.alloc(14);
    body.writeUIntBE(this.#window(), 0, 6);
    randomBytes(8).copy(body, 6);
    return `${body.toString('base64url')}.${this.#mac(body).toString('base64url')}`;
  }

  check(nonce: string): boolean {
    const [bodyText, macText, extra] = nonce.split('.');
    if (bodyText === undefined || macText === undefined || extra !== undefined) return false;
    const body = Buffer.from(bodyText, 'base64url');
    const mac = Buffer.from(macText, 'base64url');
    if (body.length !== 14 || mac.length !== MAC_BYTES || body.toString('base64url') !== bodyText) return false;
    if (!timingSafeEqual(mac, this.#mac(body))) return false;
    const age = this.#window() - body.readUIntBE(0, 6);
    return age === 0 || age === 1;
  }
}
