/**
 * RFC 9449 section 5: the DPoP proof of a token request, when one is sent. Exactly one DPoP
 * header; the proof is verified for `POST` to the token endpoint URL the client addressed (the
 * mTLS alias or the plain listener), without `ath`, within `tokens.dpopProofMaxAge` (plus
 * `tokens.clockSkew`), with a current server nonce when `tokens.dpopNonce.required` (section 8),
 * and its `jti` is recorded in the store (a replay, or a store that cannot answer, refuses the
 * request). A client registered with `dpop_bound_access_tokens` must send one (section 5.2).
 */
import { DPOP_ALGORITHMS, InvalidDpopProofError, UseDpopNonceError, verifyDpopProof, type DpopNonceSource } from '@tether/core/dpop';
import type { ReplayStore } from '@tether/core/verifier';
import type { ResolvedClient, ResolvedConfig } from './config.js';
import { invalidDpopProof, invalidRequest, useDpopNonce } from './errors.js';
import type { RequestInfo } from './request.js';

/** The key a verified DPoP proof at the token endpoint was made with. */
export interface DpopKey {
  /** RFC 7638 thumbprint of the proof's `jwk`. */
  jkt: string;
}

export interface TokenRequestDpopContext {
  config: ResolvedConfig;
  /** Epoch milliseconds. */
  clock: () => number;
  replay: ReplayStore;
  nonces: DpopNonceSource | undefined;
}

export async function verifyTokenRequestDpop(ctx: TokenRequestDpopContext, req: RequestInfo, client: ResolvedClient): Promise<DpopKey | undefined> {
  const values = req.dpop ?? [];
  if (values.length === 0) {
    if (client.dpop_bound_access_tokens) throw invalidRequest('This client must send a DPoP proof (dpop_bound_access_tokens)', 'dpop_required');
    return undefined;
  }
  if (values.length > 1) throw invalidDpopProof('dpop_duplicate', 'more than one DPoP header');
  try {
    const verified = await verifyDpopProof(values[0] as string, {
      htm: 'POST',
      htu: req.endpointUrl,
      now: ctx.clock() / 1000,
      maxAge: ctx.config.tokens.dpopProofMaxAge,
      clockSkew: ctx.config.tokens.clockSkew,
      algorithms: DPOP_ALGORITHMS,
      replayStore: ctx.replay,
      ...(ctx.nonces === undefined ? {} : { nonce: ctx.nonces }),
    });
    return { jkt: verified.jkt };
  } catch (error) {
    if (error instanceof UseDpopNonceError) throw useDpopNonce(`dpop_${error.reason}`, error.nonce);
    if (error instanceof InvalidDpopProofError) throw invalidDpopProof(`dpop_${error.reason}`, error.description);
    throw error;
  }
}
