/** Counters a verifier keeps; read them for metrics and tests. Counted, never inferred. */
export interface VerifierStats {
  requests: number;
  accepted: number;
  /** Full Session-Binding Proof verifications (signature checked). */
  proofVerifications: number;
  /** Requests served from the binding cache. */
  cacheHits: number;
  /** DPoP proofs whose signature was checked (RFC 9449; one per DPoP request that got that far). */
  dpopProofVerifications: number;
  /** Refusals by `reason`. */
  failures: Record<string, number>;
}

export function createStats(): VerifierStats {
  return { requests: 0, accepted: 0, proofVerifications: 0, cacheHits: 0, dpopProofVerifications: 0, failures: {} };
}
