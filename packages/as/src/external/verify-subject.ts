/**
 * Verification of a subject token issued by a trusted external issuer (an IdP): the declared
 * token type accepted for that issuer, the `typ` that type implies, the signature with the
 * issuer's published keys and configured algorithms (jose), `iss` exact, `aud` among the
 * configured audiences, `exp`/`nbf`/`iat` within the clock skew, and no `cnf` or `act` (a binding
 * or a delegation tether cannot check is refused, not dropped). Each refusal has a stable reason.
 */
import { errors, jwtVerify, type JWTPayload } from 'jose';
import { carriesKey, decodeCompactJws, hasPayloadExtension, jwsTyp } from '@tether/core/proof';
import type { ExternalTokenType } from '../config.js';
import type { AuthorizationEngine } from '../engine.js';
import { OAuthError, invalidGrant, invalidRequest } from '../errors.js';
import { splitScope } from '../targets.js';
import { IssuerUnavailable, type TrustedIssuer } from './issuers.js';

export const TOKEN_TYPE_ID_TOKEN = 'urn:ietf:params:oauth:token-type:id_token';
const MAX_TOKEN_LENGTH = 16_384;

/** What the successor takes from a verified external token. */
export interface ExternalSubject {
  iss: string;
  sub: string;
  exp: number;
  /** The token's `scope`, when it has one. */
  scopes: string[] | undefined;
  /** The allow-listed claims the token carries. */
  claims: Record<string, unknown>;
}

const refuse = (reason: string, detail?: string): OAuthError => invalidGrant('The subject_token is not valid', reason, detail);

/**
 * `typ` by declared type: an RFC 9068 access token says `at+jwt` (section 4 makes checking it a
 * MUST, and it keeps ID tokens out); an ID token says `JWT` or nothing, never `at+jwt`.
 */
function typMatches(header: Record<string, unknown>, type: ExternalTokenType): boolean {
  const typ = jwsTyp(header);
  return type === TOKEN_TYPE_ID_TOKEN ? typ === undefined || typ === 'jwt' : typ === 'at+jwt';
}

/** jose's verification errors to stable reasons; an unreadable IdP is 503, never the token's fault. */
function classify(error: unknown): OAuthError {
  if (error instanceof IssuerUnavailable) {
    return new OAuthError('temporarily_unavailable', 'The subject_token issuer cannot be reached; try again later', { reason: 'external_issuer_unavailable', detail: error.detail });
  }
  if (error instanceof errors.JWTExpired) return refuse('external_expired');
  if (error instanceof errors.JWTClaimValidationFailed) {
    if (error.claim === 'nbf') return refuse('external_nbf');
    if (error.claim === 'aud') return refuse('external_audience');
    if (error.claim === 'iss') return refuse('external_issuer');
    return refuse('external_claims', error.message);
  }
  if (error instanceof errors.JOSEAlgNotAllowed) return refuse('external_alg');
  if (error instanceof errors.JWSSignatureVerificationFailed || error instanceof errors.JWKSNoMatchingKey || error instanceof errors.JWKSMultipleMatchingKeys) {
    return refuse('external_signature');
  }
  return refuse('external_malformed', error instanceof Error ? error.message : String(error));
}

export async function verifyExternalSubject(engine: AuthorizationEngine, trusted: TrustedIssuer, token: string, type: string): Promise<ExternalSubject> {
  const config = trusted.config;
  if (!config.subjectTokenTypes.has(type as ExternalTokenType)) {
    // RFC 8693 section 2.2.2: an unacceptable request or token is invalid_request (the own-token path answers the same).
    throw invalidRequest('The subject_token_type is not accepted for this issuer', 'external_token_type');
  }
  if (token.length > MAX_TOKEN_LENGTH) throw refuse('external_malformed');
  const jws = decodeCompactJws(token);
  if (!jws.ok) throw refuse('external_malformed');
  if (hasPayloadExtension(jws.header) || carriesKey(jws.header, ['x5t', 'x5t#S256'])) throw refuse('external_header');
  if (!typMatches(jws.header, type as ExternalTokenType)) throw refuse('external_typ');

  let payload: JWTPayload;
  try {
    ({ payload } = await jwtVerify(token, trusted.getKey, {
      issuer: config.issuer,
      audience: config.audiences,
      algorithms: config.algorithms,
      clockTolerance: engine.config.tokens.clockSkew,
      currentDate: new Date(engine.clock()),
      requiredClaims: ['exp', 'iat', 'sub'],
    }));
  } catch (error) {
    throw classify(error);
  }
  const now = engine.now();
  // jose checks iat only against a maximum age; a token from the future is refused here.
  if ((payload.iat as number) > now + engine.config.tokens.clockSkew) throw refuse('external_iat_future');
  if (typeof payload.sub !== 'string' || payload.sub === '') throw refuse('external_claims', 'sub');
  // A binding or a delegation tether cannot check would be silently dropped: refused instead.
  if (payload.cnf !== undefined) throw refuse('external_cnf');
  if (payload.act !== undefined) throw refuse('external_act');
  if (payload.scope !== undefined && typeof payload.scope !== 'string') throw refuse('external_claims', 'scope');

  const claims: Record<string, unknown> = {};
  for (const name of config.claims) if (payload[name] !== undefined) claims[name] = payload[name];
  return {
    iss: config.issuer,
    sub: payload.sub,
    exp: payload.exp as number,
    scopes: typeof payload.scope === 'string' ? splitScope(payload.scope) : undefined,
    claims,
  };
}
