/**
 * Credentials per mode of the matrix load generator, signed with the library's public functions:
 * - `bearer`: `Authorization: Bearer` over mTLS, token without `cnf` (the reference).
 * - `certificate`: RFC 8705 certificate-bound token (`cnf.x5t#S256`), Bearer, no proof.
 * - `session`: session-bound token; one Session-Binding-Proof per (token, connection), cached on
 *   the connection exactly as `SessionBoundClient` caches it (createSessionBindingProof +
 *   deriveSessionExporter).
 * - `session-per-request`: session-bound token with `jti`/`htm`/`htu` in every proof
 *   (`perRequestClaims` of `SessionBoundClient`): one signature per request.
 * - `dpop`: `Authorization: DPoP` with a fresh createDpopProof per request (as `DpopClient`).
 * - `dpop-jose`: the same DPoP requests, to the RS's `/jose/` paths, where they are verified by the
 *   jose-only reference (bench/jose-dpop.ts) instead of the library.
 *
 * `signatures` counts proofs signed by this process; it is the client-side figure of the matrix.
 */
import { randomUUID } from 'node:crypto';
import { createSessionBindingProof, deriveSessionExporter, PROOF_HEADER } from '@tether/core';
import { createDpopProof } from '@tether/core/dpop';
import type { ConnState, LoadCredentials } from './connection.js';

export const MODES = ['bearer', 'certificate', 'session', 'session-per-request', 'dpop', 'dpop-jose'] as const;
export type Mode = (typeof MODES)[number];

const PROOF = PROOF_HEADER.toLowerCase();

/** Builds the credential headers of one request and counts signatures. */
export class Signer {
  signatures = 0;
  constructor(
    private readonly creds: LoadCredentials,
    private readonly mode: Mode,
    private readonly htu: string,
  ) {}

  /**
   * Sign the session proofs of `tokens` on `conn` now, before a timed window: the RS then receives
   * the same bytes as in a signed-as-you-go cell, at the pace of a client that does not sign.
   */
  async presign(conn: ConnState, tokens: readonly string[]): Promise<void> {
    if (this.mode === 'session') for (const token of tokens) await this.headers(conn, token, 'GET');
  }

  async headers(conn: ConnState, token: string, method: string): Promise<Record<string, string>> {
    switch (this.mode) {
      case 'bearer':
      case 'certificate':
        return { authorization: `Bearer ${token}` };
      case 'session': {
        let proof = conn.proofs.get(token);
        if (proof === undefined) {
          this.signatures++;
          conn.ekm ??= deriveSessionExporter(conn.socket);
          proof = createSessionBindingProof({ privateKey: this.creds.privateKey, certificate: this.creds.certificate, accessToken: token, ekm: conn.ekm });
          conn.proofs.set(token, proof);
        }
        return { authorization: `Bearer ${token}`, [PROOF]: await proof };
      }
      case 'session-per-request': {
        this.signatures++;
        conn.ekm ??= deriveSessionExporter(conn.socket);
        const proof = await createSessionBindingProof({
          privateKey: this.creds.privateKey,
          certificate: this.creds.certificate,
          accessToken: token,
          ekm: conn.ekm,
          jti: randomUUID(),
          htm: method,
          htu: this.htu,
        });
        return { authorization: `Bearer ${token}`, [PROOF]: proof };
      }
      case 'dpop':
      case 'dpop-jose': {
        this.signatures++;
        const proof = await createDpopProof({ privateKey: this.creds.dpopKey, publicJwk: this.creds.dpopJwk, htm: method, htu: this.htu, accessToken: token });
        return { authorization: `DPoP ${token}`, dpop: proof };
      }
    }
  }
}
