/**
 * NOTES decision 4 (a): the holder of a session-bound subject token proves possession on its own
 * connection to this server with a Session-Binding-Proof over the subject token, verified against
 * the connection's certificate and exporter. Per-request claims (`htm`, `htu`, `jti`) go through
 * core's verifyPerRequestClaims, the same function as step i at a resource server, so the two
 * cannot disagree (test/as/per-request-claims.property.test.ts).
 */
import { InvalidProofError, TlsExporterError, verifySessionBindingProof } from '@tether/core';
import { verifyPerRequestClaims, type PerRequestClaims, type ProofWindow, type ReplayStore } from '@tether/core/verifier';
import type { Peer } from './connection.js';
import type { AuthorizationEngine } from './engine.js';
import { invalidGrant, invalidRequest } from './errors.js';
import type { RequestInfo } from './request.js';

/** The token endpoint request as a proof's per-request claims see it: `POST` to the URL the client called. */
export function tokenEndpointRequest(endpointUrl: string): { method: string; scheme: string; authority: string; path: string } {
  const url = new URL(endpointUrl);
  return { method: 'POST', scheme: url.protocol.slice(0, -1), authority: url.host, path: url.pathname };
}

/** Per-request claims of a holder proof, refusals as `invalid_grant` (`proof_<reason>`). */
export async function checkHolderPerRequestClaims(claims: PerRequestClaims, endpointUrl: string, window: ProofWindow, replay: ReplayStore): Promise<void> {
  try {
    await verifyPerRequestClaims(claims, tokenEndpointRequest(endpointUrl), window, replay);
  } catch (error) {
    if (error instanceof InvalidProofError) throw invalidGrant('The Session-Binding-Proof is not valid', `proof_${error.reason}`);
    throw error;
  }
}

export async function verifyHolderProof(engine: AuthorizationEngine, req: RequestInfo, peer: Peer, subjectToken: string, subjectExp: number): Promise<void> {
  if (req.proofs.length > 1) throw invalidRequest('Only one Session-Binding-Proof may be sent', 'duplicate_proof');
  const proof = req.proofs[0];
  if (proof === undefined) throw invalidGrant('The holder of a session-bound subject_token must send a Session-Binding-Proof', 'holder_without_proof');
  let ekm: Buffer;
  try {
    ekm = peer.exporter();
  } catch (error) {
    if (error instanceof TlsExporterError) throw invalidGrant('The Session-Binding-Proof cannot be verified on this connection', 'exporter_unavailable');
    throw error;
  }
  const { tokens } = engine.config;
  let verified: Awaited<ReturnType<typeof verifySessionBindingProof>>;
  try {
    verified = await verifySessionBindingProof(proof, {
      certificate: peer.certificate as NonNullable<Peer['certificate']>,
      ekm,
      accessToken: subjectToken,
      now: engine.clock() / 1000,
      maxAge: tokens.proofMaxAge,
      clockSkew: tokens.clockSkew,
    });
  } catch (error) {
    if (error instanceof InvalidProofError) throw invalidGrant('The Session-Binding-Proof is not valid', `proof_${error.reason}`);
    throw error;
  }
  const { htm, htu, jti, iat } = verified.claims;
  const window = { now: engine.clock() / 1000, proofMaxAge: tokens.proofMaxAge, clockSkew: tokens.clockSkew, tokenExp: subjectExp };
  await checkHolderPerRequestClaims({ htm, htu, jti, iat }, req.endpointUrl, window, { use: (key, until) => engine.store.rememberOnce('proof', key, until) });
}
