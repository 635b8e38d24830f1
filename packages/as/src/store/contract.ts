/**
 * The store contract: everything the authorization server keeps, behind async methods that every
 * engine implements the same way (the conformance suite in test/as/store-conformance.test.ts runs
 * against each). A write a response depends on (a revocation, a `jti`, a key set) has reached
 * durable storage when its promise resolves. Times are epoch seconds.
 */
import type { JWK } from 'jose';
import type { ClientMetadata, SigningAlgorithm } from '../config.js';

/** A signing key as the key manager sees it (the store seals `privateJwk` at rest when a KEK is set). */
export interface StoredKey {
  kid: string;
  alg: SigningAlgorithm;
  privateJwk: JWK;
  publicJwk: JWK;
  createdAt: number;
  /** `next`: published, not yet signing. `active`: signing. `retired`: published until `publishUntil`. */
  state: 'next' | 'active' | 'retired';
  activatedAt?: number;
  retiredAt?: number;
  publishUntil?: number;
  /** Longest lifetime of any token this key signed (or may sign), seconds. */
  maxTokenLifetime: number;
}

/**
 * Computes a new key set from the stored one; `undefined` keeps it unchanged. Runs while the store
 * holds its key lock, so two instances never rotate at once.
 */
export type KeySetChange = (stored: StoredKey[]) => Promise<StoredKey[] | undefined>;

export interface Store {
  /** Connect, run pending schema migrations; refuses a schema newer than this version knows. */
  open(): Promise<void>;
  close(): Promise<void>;
  /** Human-readable engine and location, without credentials (for logs). */
  readonly description: string;

  listKeys(): Promise<StoredKey[]>;
  /** Read, change and write the key set under the store-wide key lock; resolves the set now stored. */
  updateKeys(change: KeySetChange): Promise<StoredKey[]>;

  /** Revoke `jti` until `expiresAt` (its `exp` plus skew); every token exchanged from it with it. */
  revoke(jti: string, expiresAt: number): Promise<void>;
  /** Whether `jti`, or any token it was exchanged from (up the chain), is revoked. */
  isRevoked(jti: string): Promise<boolean>;
  /**
   * Record that `childJti` was exchanged from `parentJti`, kept until `expiresAt` (the child's
   * expiry). Called before the child is issued, so revoking an ancestor always reaches it.
   */
  recordExchange(parentJti: string, childJti: string, expiresAt: number): Promise<void>;

  listClients(): Promise<ClientMetadata[]>;
  putClient(metadata: ClientMetadata): Promise<void>;
  deleteClient(clientId: string): Promise<boolean>;

  /** Remember `id` in `namespace` until `expiresAt`; resolves false when it was already there (replay). */
  rememberOnce(namespace: string, id: string, expiresAt: number): Promise<boolean>;
  /** Record that `clientId` authenticated with a certificate of this thumbprint (valid until `expiresAt`). */
  observeCertificate(clientId: string, thumbprint: string, expiresAt: number): Promise<void>;
  observedCertificates(clientId: string): Promise<string[]>;

  /** A secret shared by every instance on this store: the stored one, or `create()`'s, stored first. */
  sharedSecret(name: string, create: () => Buffer): Promise<Buffer>;

  /** Forget entries that expired before `now`. */
  prune(now: number): Promise<void>;
}

/** The store cannot be used: unreachable, locked, unreadable, a newer schema, a wrong KEK. */
export class StoreError extends Error {
  readonly code: string;
  constructor(code: string, message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'StoreError';
    this.code = code;
  }
}
