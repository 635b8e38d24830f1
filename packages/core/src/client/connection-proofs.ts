import { createPrivateKey, X509Certificate, type KeyObject } from 'node:crypto';
import type { TLSSocket } from 'node:tls';
import { ConfigurationError } from '../errors.js';
import { deriveSessionExporter, type TlsVersion } from '../exporter.js';
import { signingAlgorithmForKey, type ProofAlgorithm } from '../proof/algorithms.js';
import { assertKeyMatchesCertificate, createSessionBindingProof } from '../proof/sign.js';
import { isExternalClientKey, type ExternalClientKey } from './client-key.js';

/** A TLS connection as the signer tracks it. */
export interface ProofConnectionState {
  /** Process-unique number of the connection, for reports. */
  readonly id: number;
  ekm: Buffer | undefined;
  /** token -> proof; a promise, so concurrent requests share one signature. */
  readonly proofs: Map<string, { proof: Promise<string>; iat: number }>;
}

export interface ConnectionProofSignerOptions {
  /** The mTLS client certificate (PEM) and its private key: PEM, or a key held in a token. */
  cert: string | Buffer;
  key: string | Buffer | ExternalClientKey;
  /** Use RS256 rather than PS256 for RSA keys. */
  preferRs256?: boolean;
  /** TLS versions whose exporter may be used (default TLS 1.3 only). */
  tlsVersions?: readonly TlsVersion[];
  /** Re-sign a cached proof older than this many seconds (default 3000). */
  refreshAfter?: number;
  /** Most proofs kept per connection; the oldest goes first (default 10000). */
  maxProofsPerConnection?: number;
  /** Called for every signature, and for every cache hit (counters). */
  onSign?: () => void;
  onHit?: () => void;
}

let nextConnectionId = 1;

/**
 * Signs Session-Binding Proofs once per (token, TLS connection) and caches them on the connection
 * (draft section 3.3.1, Appendix B.6.1): the exporter is derived once per connection, concurrent
 * requests for the same token share one signature, a proof the server refused is never reused, and
 * everything is dropped when the connection closes, so a reconnect signs fresh proofs. Used by
 * `SessionBoundClient` and by the egress sidecar.
 */
export class ConnectionProofSigner {
  readonly #states = new WeakMap<TLSSocket, ProofConnectionState>();
  /** States of connections still open. */
  readonly live = new Set<ProofConnectionState>();
  /** The key that signs the proofs: in memory, or held in a token. */
  readonly privateKey: KeyObject | ExternalClientKey;
  readonly certificate: X509Certificate;
  readonly alg: ProofAlgorithm;
  readonly #tlsVersions: readonly TlsVersion[];
  readonly #refreshAfter: number;
  readonly #maxProofs: number;
  readonly #onSign: () => void;
  readonly #onHit: () => void;

  /** @throws {ConfigurationError} when the certificate or key cannot be loaded, do not match, or cannot sign proofs. */
  constructor(options: ConnectionProofSignerOptions) {
    const { key } = options;
    try {
      this.privateKey = isExternalClientKey(key) ? key : createPrivateKey(key);
      this.certificate = new X509Certificate(options.cert);
    } catch (cause) {
      throw new ConfigurationError('cannot load the client certificate or key', { cause });
    }
    if (isExternalClientKey(this.privateKey)) {
      // The token key was checked against a certificate when it was opened; this one must carry the same public key.
      if (!this.privateKey.publicKey.equals(this.certificate.publicKey)) throw new ConfigurationError('the private key does not belong to the certificate');
    } else assertKeyMatchesCertificate(this.privateKey, this.certificate);
    this.alg = signingAlgorithmForKey(this.certificate.publicKey, options.preferRs256 === true);
    this.#tlsVersions = options.tlsVersions ?? ['TLSv1.3'];
    this.#refreshAfter = options.refreshAfter ?? 3000;
    this.#maxProofs = options.maxProofsPerConnection ?? 10_000;
    this.#onSign = options.onSign ?? (() => undefined);
    this.#onHit = options.onHit ?? (() => undefined);
  }

  /** Whether `socket` is already tracked. */
  known(socket: TLSSocket): boolean {
    return this.#states.has(socket);
  }

  /** Track `socket` (idempotent); its proofs are purged when it closes, then `onClose` runs. */
  attach(socket: TLSSocket, onClose?: () => void): ProofConnectionState {
    let state = this.#states.get(socket);
    if (state === undefined) {
      const created: ProofConnectionState = { id: nextConnectionId++, ekm: undefined, proofs: new Map() };
      state = created;
      this.#states.set(socket, created);
      this.live.add(created);
      socket.once('close', () => {
        created.proofs.clear();
        created.ekm = undefined;
        this.live.delete(created);
        onClose?.();
      });
    }
    return state;
  }

  /** The connection's exporter value, derived once. */
  exporter(socket: TLSSocket): Buffer {
    const state = this.attach(socket);
    state.ekm ??= deriveSessionExporter(socket, this.#tlsVersions);
    return state.ekm;
  }

  /** The proof for (token, connection); `rejected` names a proof the server refused, which is never reused. */
  async proofFor(socket: TLSSocket, token: string, rejected?: string): Promise<string> {
    const ekm = this.exporter(socket);
    const state = this.attach(socket);
    const now = Math.floor(Date.now() / 1000);
    const cached = state.proofs.get(token);
    if (cached !== undefined && now - cached.iat < this.#refreshAfter) {
      // A concurrent retry may already have replaced the rejected proof: share that one.
      const proof = await cached.proof.catch(() => undefined);
      if (proof !== undefined && proof !== rejected) {
        this.#onHit();
        return proof;
      }
    }
    this.#onSign();
    const proof = createSessionBindingProof({ privateKey: this.privateKey, certificate: this.certificate, accessToken: token, ekm, iat: now, alg: this.alg });
    const entry = { proof, iat: now };
    state.proofs.delete(token);
    if (state.proofs.size >= this.#maxProofs) state.proofs.delete(state.proofs.keys().next().value as string);
    state.proofs.set(token, entry);
    proof.catch(() => {
      if (state.proofs.get(token) === entry) state.proofs.delete(token);
    });
    return proof;
  }

  /** A single-use proof with per-request claims (draft section 2.3.2.2); never cached. */
  perRequestProof(socket: TLSSocket, token: string, claims: { jti: string; htm: string; htu: string }): Promise<string> {
    const ekm = this.exporter(socket);
    this.#onSign();
    return createSessionBindingProof({ privateKey: this.privateKey, certificate: this.certificate, accessToken: token, ekm, alg: this.alg, ...claims });
  }
}
