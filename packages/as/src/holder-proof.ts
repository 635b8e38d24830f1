/**
 * NOTES decision 4 (a): the holder of a session-bound subject token proves possession on its own
 * connection to this server with a Session-Binding-Proof over the subject token, verified against
 * the connection's certificate and exporter. Per-request claims (`htm`, `htu`, `jti`) are checked
 * like at a resource server, and a `jti` is used once.
 */
import { InvalidProofError, TlsExporterError, verifySessionBindingProof } from '@tether/core';
import type { Peer } from './connection.js';
import type { AuthorizationEngine } from './engine.js';
import { invalidGrant, invalidRequest } from './errors.js';
import type { RequestInfo } from './request.js';

export async function verifyHolderProof(engine: AuthorizationEngine, req: RequestInfo, peer: Peer, subjectToken: string): Promise<void> {
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
  if (htm !== undefined && htm !== 'POST') throw invalidGrant('The Session-Binding-Proof is not valid', 'proof_htm');
  if (htu !== undefined && htu !== req.endpointUrl) throw invalidGrant('The Session-Binding-Proof is not valid', 'proof_htu');
  if (jti !== undefined) {
    const until = iat + tokens.proofMaxAge + 2 * tokens.clockSkew;
    if (!(await engine.store.rememberOnce('proof', `${verified.header['x5t#S256']} ${jti}`, until))) {
      throw invalidGrant('The Session-Binding-Proof is not valid', 'proof_replayed');
    }
  }
}
