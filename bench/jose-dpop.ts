/**
 * The `dpop-jose` reference of the benchmark matrix: RFC 9449 resource-server checks written the
 * way a user would write them with jose's standard API, without this library's DPoP code
 * (issue 13 item 3: "what a user would otherwise write"). Token validation is the same cached
 * `jwtAccessTokenValidator` as the library path, so the two rows differ only in the DPoP proof.
 *
 * Per request: `Authorization: DPoP <token>` and one `DPoP` header; `jwtVerify(proof, EmbeddedJWK,
 * {typ: 'dpop+jwt', algorithms, maxTokenAge})`; `htm`, `htu` (scheme, authority and path), `ath`
 * (SHA-256 of the token); `jti` unused (a Map swept by time); `calculateJwkThumbprint` of the
 * header's `jwk` equal to the token's `cnf.jkt`. Refusals are a bare 401 (a reference, not a product).
 */
import { createHash } from 'node:crypto';
import { EmbeddedJWK, calculateJwkThumbprint, jwtVerify, type JWK } from 'jose';
import type { NodeRequest, NodeResponse } from '@tether/core/node';
import type { AccessTokenValidator, VerifierStats } from '@tether/core/verifier';

const MAX_AGE_SECONDS = 60;

export function joseDpopHandler(tokens: AccessTokenValidator, stats: VerifierStats, body: Buffer) {
  const seen = new Map<string, number>();
  let sweepAt = Date.now() + 10_000;
  const refuse = (res: NodeResponse) => {
    res.writeHead(401, { 'www-authenticate': 'DPoP error="invalid_dpop_proof"', 'content-length': 0 });
    res.end();
  };
  return async (req: NodeRequest, res: NodeResponse): Promise<void> => {
    stats.requests++;
    try {
      const authorization = req.headers.authorization;
      const proof = req.headers.dpop;
      if (typeof authorization !== 'string' || !authorization.startsWith('DPoP ') || typeof proof !== 'string') return refuse(res);
      const token = authorization.slice(5);
      const claims = await tokens.validate(token);
      stats.dpopProofVerifications++;
      const { payload, protectedHeader } = await jwtVerify(proof, EmbeddedJWK, { typ: 'dpop+jwt', algorithms: ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'], maxTokenAge: MAX_AGE_SECONDS });
      const htu = `https://${(req.headers[':authority'] as string | undefined) ?? req.headers.host ?? ''}${(req.url ?? '/').split('?')[0]}`;
      const ath = createHash('sha256').update(token).digest('base64url');
      if (payload.htm !== req.method || payload.htu !== htu || payload.ath !== ath || typeof payload.jti !== 'string') return refuse(res);
      const now = Date.now();
      if ((seen.get(payload.jti) ?? 0) > now) return refuse(res);
      seen.set(payload.jti, now + MAX_AGE_SECONDS * 1000);
      if (now > sweepAt) {
        for (const [jti, until] of seen) if (until <= now) seen.delete(jti);
        sweepAt = now + 10_000;
      }
      const jkt = await calculateJwkThumbprint(protectedHeader.jwk as JWK);
      if ((claims.cnf as { jkt?: string } | undefined)?.jkt !== jkt) return refuse(res);
      stats.accepted++;
      res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
      res.end(body);
    } catch {
      refuse(res);
    }
  };
}
