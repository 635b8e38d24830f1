import { requestHtu } from '../../dpop/htu.js';
import { verifyDpopProof } from '../../dpop/verify.js';
import { InvalidDpopProofError, InvalidTokenError } from '../../errors.js';
import type { VerificationContext } from '../context.js';

/**
 * RFC 9449 sections 4.3 and 7.1, for the DPoP scheme: the `DPoP` proof is present and valid for
 * this request (method, target URI, `ath` of the presented token, nonce when configured, `iat`
 * window, `jti` unused in the shared replay store), and its key is the one the token names: JWK
 * thumbprint equal to `cnf.jkt`, else `invalid_token` (RFC 9449 Figure 16).
 */
export async function checkDpopProof(ctx: VerificationContext): Promise<void> {
  if (ctx.scheme !== 'dpop' || ctx.binding.kind !== 'dpop') return;
  const { dpop } = ctx.options;
  const proof = ctx.dpopProof;
  if (proof === undefined) {
    throw new InvalidDpopProofError({ reason: 'dpop_missing', description: 'DPoP proof verification failed: a DPoP proof is required', algs: dpop.algorithms });
  }
  const { input } = ctx;
  const htu = requestHtu(input.scheme, input.authority, input.path);
  if (htu === undefined) {
    throw new InvalidDpopProofError({ reason: 'htu_mismatch', description: 'DPoP proof verification failed: htu mismatch', algs: dpop.algorithms });
  }
  ctx.stats.dpopProofVerifications++;
  const verified = await verifyDpopProof(proof, {
    htm: input.method,
    htu,
    accessToken: ctx.token,
    ath: ctx.ath,
    now: ctx.now,
    maxAge: dpop.maxAge,
    clockSkew: dpop.clockSkew,
    algorithms: dpop.algorithms,
    replayStore: ctx.options.replayStore,
    keyCache: dpop.keyCache,
    ...(dpop.nonce === undefined ? {} : { nonce: dpop.nonce }),
  });
  if (verified.jkt !== ctx.binding.jkt) {
    throw new InvalidTokenError({ reason: 'jkt_mismatch', description: 'Invalid DPoP key binding' });
  }
}
