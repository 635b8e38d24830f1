import { X509Certificate, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK, type JSONWebKeySet, type JWTPayload } from 'jose';
import { sessionBoundConfirmation, certificateBoundConfirmation } from '@tether/core';

export const ISSUER = 'https://as.tether.test';
export const AUDIENCE = 'https://rs.tether.test';

/** A test authorization server's signing key and a way to mint RFC 9068 access tokens. */
export class TestIssuer {
  readonly privateKey: KeyObject;
  readonly kid: string;
  readonly jwks: JSONWebKeySet;

  private constructor(privateKey: KeyObject, kid: string, jwks: JSONWebKeySet) {
    this.privateKey = privateKey;
    this.kid = kid;
    this.jwks = jwks;
  }

  static async create(kid = 'k1'): Promise<TestIssuer> {
    const { privateKey, publicKey } = generateKeyPairSync('ec', { namedCurve: 'P-256' });
    const jwk = { ...(await exportJWK(publicKey)), kid, alg: 'ES256', use: 'sig' };
    return new TestIssuer(privateKey, kid, { keys: [jwk] });
  }

  async mint(claims: JWTPayload & { cnf?: unknown } = {}, options: { typ?: string; expiresIn?: number; kid?: string } = {}): Promise<string> {
    const now = Math.floor(Date.now() / 1000);
    return new SignJWT({ client_id: 'client', scope: 'read write', ...claims })
      .setProtectedHeader({ alg: 'ES256', typ: options.typ ?? 'at+jwt', kid: options.kid ?? this.kid })
      .setIssuer(ISSUER)
      .setAudience(AUDIENCE)
      .setSubject((claims.sub as string | undefined) ?? 'user-1')
      .setIssuedAt(now)
      .setExpirationTime(now + (options.expiresIn ?? 600))
      .setJti(crypto.randomUUID())
      .sign(this.privateKey);
  }

  /** A token session-bound to `certPem`. */
  sessionBound(certPem: string, claims: JWTPayload = {}): Promise<string> {
    return this.mint({ ...claims, cnf: sessionBoundConfirmation(new X509Certificate(certPem)) });
  }

  /** A token certificate-bound (RFC 8705) to `certPem`. */
  certificateBound(certPem: string, claims: JWTPayload = {}): Promise<string> {
    return this.mint({ ...claims, cnf: certificateBoundConfirmation(new X509Certificate(certPem)) });
  }
}
