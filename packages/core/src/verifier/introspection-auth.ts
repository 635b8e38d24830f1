/**
 * Client authentication of the introspection validator at the RFC 7662 endpoint:
 *
 * - `tls_client_auth` (RFC 8705 section 2.1): the request goes over mutual TLS with the given
 *   certificate and key, and names the client in `client_id`.
 * - `private_key_jwt` (RFC 7523 section 2.2, OpenID Connect Core section 9): a fresh JWT assertion
 *   per request (`iss` = `sub` = client_id, `aud`, `iat`, `exp` 60 s later, a random `jti`), signed
 *   with the client's private key.
 * - `client_secret_basic` (RFC 6749 section 2.3.1): HTTP Basic with the form-urlencoded id and secret.
 */
import { createPrivateKey, randomUUID, X509Certificate, type KeyObject } from 'node:crypto';
import { SignJWT } from 'jose';
import { ConfigurationError } from '../errors.js';

export const JWT_BEARER_CLIENT_ASSERTION = 'urn:ietf:params:oauth:client-assertion-type:jwt-bearer';

export type IntrospectionClientAuth =
  | {
      method: 'tls_client_auth';
      clientId: string;
      /** Client certificate (PEM, may carry its chain) and private key (PEM) for the mutual-TLS connection. */
      cert: string | Buffer;
      key: string | Buffer;
    }
  | {
      method: 'private_key_jwt';
      clientId: string;
      /** Private key (PEM or KeyObject) whose public half the authorization server has registered for the client. */
      key: string | Buffer | KeyObject;
      /** JWS algorithm (default from the key: ES256/ES384/ES512 by curve, EdDSA, RS256, PS256 for RSA-PSS). */
      alg?: string;
      /** `kid` header, when the registered JWK Set needs it to pick the key. */
      kid?: string;
      /** `aud` of the assertion (default: the validator's `issuer`, else the endpoint URL). */
      audience?: string;
      /** Assertion lifetime, seconds (default 60). */
      lifetime?: number;
    }
  | { method: 'client_secret_basic'; clientId: string; secret: string };

export type IntrospectionAuthMethod = IntrospectionClientAuth['method'];

/** The credentials of one introspection request. */
export interface RequestCredentials {
  headers: Record<string, string>;
  params: Record<string, string>;
}

export interface PreparedClientAuth {
  /** Certificate and key for the TLS connection (tls_client_auth). */
  tls: { cert?: string | Buffer; key?: string | Buffer };
  /** Headers and form parameters for a request at `now` (epoch seconds); a new assertion each time. */
  credentials(now: number): Promise<RequestCredentials>;
}

const ALGS_BY_KEY: Record<string, readonly string[]> = {
  prime256v1: ['ES256'],
  secp384r1: ['ES384'],
  secp521r1: ['ES512'],
  ed25519: ['EdDSA', 'Ed25519'],
  rsa: ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512'],
  'rsa-pss': ['PS256', 'PS384', 'PS512'],
};

function keyKind(key: KeyObject): string {
  const type = key.asymmetricKeyType ?? '';
  return type === 'ec' ? (key.asymmetricKeyDetails?.namedCurve ?? 'ec') : type;
}

function privateKeyOf(key: string | Buffer | KeyObject): KeyObject {
  if (typeof key === 'object' && !Buffer.isBuffer(key)) {
    if (key.type !== 'private') throw new ConfigurationError('private_key_jwt needs a private key');
    return key;
  }
  try {
    return createPrivateKey(key);
  } catch (cause) {
    throw new ConfigurationError('private_key_jwt: the key is not a PEM private key', { cause });
  }
}

function nonEmpty(value: unknown, what: string): string {
  if (typeof value !== 'string' || value === '') throw new ConfigurationError(`${what} is required`);
  return value;
}

function basicHeader(clientId: string, secret: string): string {
  // RFC 6749 section 2.3.1 and Appendix B: application/x-www-form-urlencoded (space is "+").
  const enc = (s: string) => new URLSearchParams([['', s]]).toString().slice(1);
  return `Basic ${Buffer.from(`${enc(clientId)}:${enc(secret)}`).toString('base64')}`;
}

function prepareTlsClientAuth(auth: Extract<IntrospectionClientAuth, { method: 'tls_client_auth' }>, clientId: string, endpoint: URL): PreparedClientAuth {
  if (endpoint.protocol !== 'https:') throw new ConfigurationError('tls_client_auth needs an https introspection endpoint');
  let certificate: X509Certificate;
  try {
    certificate = new X509Certificate(auth.cert);
  } catch (cause) {
    throw new ConfigurationError('tls_client_auth: the certificate is not PEM', { cause });
  }
  let key: KeyObject;
  try {
    key = createPrivateKey(auth.key);
  } catch (cause) {
    throw new ConfigurationError('tls_client_auth: the key is not a PEM private key', { cause });
  }
  if (!certificate.checkPrivateKey(key)) throw new ConfigurationError('tls_client_auth: the key does not belong to the certificate');
  return { tls: { cert: auth.cert, key: auth.key }, credentials: async () => ({ headers: {}, params: { client_id: clientId } }) };
}

function preparePrivateKeyJwt(
  auth: Extract<IntrospectionClientAuth, { method: 'private_key_jwt' }>,
  clientId: string,
  audience: string,
): PreparedClientAuth {
  const key = privateKeyOf(auth.key);
  const allowed = ALGS_BY_KEY[keyKind(key)];
  if (allowed === undefined) throw new ConfigurationError(`private_key_jwt: unsupported key type ${keyKind(key)}`);
  const alg = auth.alg ?? (allowed[0] as string);
  if (!allowed.includes(alg)) throw new ConfigurationError(`private_key_jwt: alg ${alg} does not fit a ${keyKind(key)} key (use ${allowed.join(', ')})`);
  const lifetime = auth.lifetime ?? 60;
  if (!Number.isInteger(lifetime) || lifetime < 1 || lifetime > 3600) throw new ConfigurationError('private_key_jwt: lifetime must be 1 to 3600 seconds');
  return {
    tls: {},
    async credentials(now) {
      const iat = Math.floor(now);
      const assertion = await new SignJWT({})
        .setProtectedHeader({ alg, ...(auth.kid === undefined ? {} : { kid: auth.kid }) })
        .setIssuer(clientId)
        .setSubject(clientId)
        .setAudience(audience)
        .setIssuedAt(iat)
        .setExpirationTime(iat + lifetime)
        .setJti(randomUUID())
        .sign(key);
      return { headers: {}, params: { client_id: clientId, client_assertion_type: JWT_BEARER_CLIENT_ASSERTION, client_assertion: assertion } };
    },
  };
}

/** Check a client authentication option once, at construction (every problem is a ConfigurationError). */
export function prepareClientAuth(auth: IntrospectionClientAuth, endpoint: URL, issuer: string | undefined): PreparedClientAuth {
  const clientId = nonEmpty(auth.clientId, `${String(auth.method)}: clientId`);
  switch (auth.method) {
    case 'tls_client_auth':
      return prepareTlsClientAuth(auth, clientId, endpoint);
    case 'private_key_jwt':
      return preparePrivateKeyJwt(auth, clientId, auth.audience ?? issuer ?? endpoint.href);
    case 'client_secret_basic': {
      const header = basicHeader(clientId, nonEmpty(auth.secret, 'client_secret_basic: secret'));
      return { tls: {}, credentials: async () => ({ headers: { authorization: header }, params: {} }) };
    }
    default:
      throw new ConfigurationError(`unknown introspection client authentication method ${JSON.stringify((auth as { method: unknown }).method)}`);
  }
}
