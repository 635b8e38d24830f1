import { InvalidProofError } from '../../errors.js';
import { verifySessionBindingProof, type SessionBindingProofClaims, type VerifiedSessionBindingProof } from '../../proof/verify.js';
import type { PerRequestClaims, VerificationContext } from '../context.js';

function perRequestClaims(source: { jti?: string; htm?: string; htu?: string; iat?: number }): PerRequestClaims | undefined {
  const { jti, htm, htu, iat } = source;
  if (jti === undefined && htm === undefined && htu === undefined) return undefined;
  return {
    ...(jti === undefined ? {} : { jti, ...(iat === undefined ? {} : { iat }) }),
    ...(htm === undefined ? {} : { htm }),
    ...(htu === undefined ? {} : { htu }),
  };
}

/**
 * Steps e to h: proof signature against *this* connection's certificate, exporter match, token
 * hash, `iat` window. A verified proof without `jti` is cached on (connection, ath) with its exact
 * string; a request repeating that proof on that connection is a cache hit. A proof with `jti` is
 * single-use by definition and never cached. Concurrent requests with the same new proof on the
 * same connection share one verification (then step i still sees each request, so a `jti` proof
 * shared this way is used once).
 */
export function checkSessionBindingProof(ctx: VerificationContext): void | Promise<void> {
  const proof = ctx.proof;
  if (proof === undefined) return;
  const hit = ctx.cache.get(ctx.input.connection.id, ctx.ath, proof, ctx.now);
  if (hit !== undefined) {
    // A cache hit finishes synchronously (no await in the verifier's step loop).
    ctx.stats.cacheHits++;
    ctx.perRequest = perRequestClaims(hit);
    return;
  }
  return verifyProof(ctx, proof);
}

/** The proof is not cached for this connection: verify it (or join a verification of it already running). */
async function verifyProof(ctx: VerificationContext, proof: string): Promise<void> {
  const { connection } = ctx.input;
  const certificate = connection.certificate;
  if (certificate === undefined) {
    throw new InvalidProofError({ reason: 'no_client_certificate', description: 'Session-Binding Proof verification failed: no client certificate' });
  }
  let ekm: Buffer;
  try {
    ekm = connection.exporter();
  } catch (cause) {
    throw new InvalidProofError({ reason: 'exporter_unavailable', description: 'Session-Binding Proof verification failed: exporter unavailable', cause });
  }
  const running = ctx.cache.inflight<VerifiedSessionBindingProof>(connection.id, ctx.ath, proof);
  let claims: SessionBindingProofClaims;
  if (running !== undefined) {
    claims = (await running).claims;
    ctx.stats.cacheHits++;
  } else {
    ctx.stats.proofVerifications++;
    const verification = verifySessionBindingProof(proof, {
      certificate,
      ...(connection.publicKey === undefined ? {} : { publicKey: connection.publicKey }),
      ...(connection.thumbprint === undefined ? {} : { thumbprint: connection.thumbprint }),
      ekm,
      ath: ctx.ath,
      now: ctx.now,
      maxAge: ctx.options.proofMaxAge,
      clockSkew: ctx.options.clockSkew,
      ...(ctx.options.proofAlgorithms === undefined ? {} : { algorithms: ctx.options.proofAlgorithms }),
    });
    ctx.cache.trackVerification(connection.id, ctx.ath, proof, verification);
    claims = (await verification).claims;
  }
  const { jti, htm, htu, iat } = claims;
  ctx.perRequest = perRequestClaims(claims);
  if (jti === undefined) {
    const exp = typeof ctx.claims.exp === 'number' ? ctx.claims.exp : Infinity;
    ctx.cache.set(connection, ctx.ath, {
      proof,
      expiresAt: Math.min(exp, iat + ctx.options.maxBindingAge),
      ...(htm === undefined ? {} : { htm }),
      ...(htu === undefined ? {} : { htu }),
    });
  }
}
