/**
 * Signing keys: persisted in the {@link Store}, rotated on a schedule, published in the JWKS.
 *
 * Three states. `next` is published but does not sign yet, so resource servers have it cached
 * before the first token it signs arrives. `active` signs. `retired` no longer signs and stays
 * published until every token it signed has expired: `publishUntil = retiredAt +
 * maxTokenLifetime + clockSkew`, where `maxTokenLifetime` is the longest lifetime of any token the
 * key signed (raised, and persisted, before a longer-lived token is signed).
 */
import { createPrivateKey, createPublicKey, generateKeyPairSync, type KeyObject } from 'node:crypto';
import { calculateJwkThumbprint, type JSONWebKeySet, type JWK } from 'jose';
import type { SigningAlgorithm } from './config.js';
import type { VerificationKey } from './jwt.js';
import type { Store, StoredKey } from './store/contract.js';

export interface KeyManagerOptions {
  algorithm: SigningAlgorithm;
  /** Seconds a key signs before the next one takes over. */
  rotationInterval: number;
  /** Longest token lifetime the configuration allows, seconds. */
  maxTokenLifetime: number;
  clockSkew: number;
  /** Clock in epoch seconds. */
  now: () => number;
}

export interface SigningKey {
  kid: string;
  alg: SigningAlgorithm;
  key: KeyObject;
  maxTokenLifetime: number;
}

function generate(alg: SigningAlgorithm): KeyObject {
  switch (alg) {
    case 'ES256':
      return generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    case 'EdDSA':
      return generateKeyPairSync('ed25519').privateKey;
    case 'RS256':
      return generateKeyPairSync('rsa', { modulusLength: 2048 }).privateKey;
  }
}

async function newKey(alg: SigningAlgorithm, state: StoredKey['state'], now: number, maxTokenLifetime: number): Promise<StoredKey> {
  const privateKey = generate(alg);
  const privateJwk = privateKey.export({ format: 'jwk' }) as JWK;
  const { d: _d, p: _p, q: _q, dp: _dp, dq: _dq, qi: _qi, ...publicMembers } = privateJwk;
  const kid = await calculateJwkThumbprint(publicMembers, 'sha256');
  const publicJwk: JWK = { ...publicMembers, kid, alg, use: 'sig' };
  return { kid, alg, privateJwk: { ...privateJwk, kid, alg }, publicJwk, createdAt: now, state, maxTokenLifetime };
}

export class KeyManager {
  readonly #store: Store;
  readonly #options: KeyManagerOptions;
  #keys: StoredKey[] = [];
  #installed = '';
  #active: SigningKey | undefined;
  #jwks: JSONWebKeySet = { keys: [] };
  #verification = new Map<string, VerificationKey>();
  #lastRefresh = 0;
  /** Called after every change of the published set. */
  onChange: (() => void) | undefined;

  constructor(store: Store, options: KeyManagerOptions) {
    this.#store = store;
    this.#options = options;
  }

  /** Load keys; create, rotate or prune as the configuration requires. */
  async init(): Promise<void> {
    await this.maintain();
  }

  /** The key that signs now. */
  get active(): SigningKey {
    if (this.#active === undefined) throw new Error('no active signing key');
    return this.#active;
  }

  /** Published public keys (next, active, retired until their tokens expired). */
  get jwks(): JSONWebKeySet {
    return this.#jwks;
  }

  /** Published public keys by `kid`, for the fast verification path (jwt.ts). */
  get verificationKeys(): ReadonlyMap<string, VerificationKey> {
    return this.#verification;
  }

  get keys(): readonly StoredKey[] {
    return this.#keys;
  }

  /**
   * Rotate if due (or if the configured algorithm changed), prune expired keys, ensure a `next`
   * key; and pick up what another instance on the same store changed. The decision is made on the
   * stored set under the store's key lock, so of several instances exactly one rotates.
   */
  async maintain(): Promise<void> {
    const keys = await this.#store.updateKeys(async (stored) => {
      const now = this.#options.now();
      let keys = stored.map((k) => ({ ...k }));
      const before = JSON.stringify(keys);
      // Drop retired keys whose tokens have all expired, and `next` keys of another algorithm.
      keys = keys.filter((k) => !(k.state === 'retired' && (k.publishUntil ?? 0) < now));
      keys = keys.filter((k) => !(k.state === 'next' && k.alg !== this.#options.algorithm));
      const active = keys.find((k) => k.state === 'active');
      const due =
        active === undefined || active.alg !== this.#options.algorithm || now - (active.activatedAt ?? active.createdAt) >= this.#options.rotationInterval;
      if (active !== undefined) active.maxTokenLifetime = Math.max(active.maxTokenLifetime, this.#options.maxTokenLifetime);
      if (due) keys = await this.#rotated(keys, now);
      if (!keys.some((k) => k.state === 'next')) keys.push(await newKey(this.#options.algorithm, 'next', now, this.#options.maxTokenLifetime));
      return JSON.stringify(keys) === before ? undefined : keys;
    });
    this.#install(keys);
  }

  /** Rotate now: `next` starts signing, `active` retires, a new `next` is created. */
  async rotate(): Promise<void> {
    const keys = await this.#store.updateKeys(async (stored) => {
      const now = this.#options.now();
      let keys = await this.#rotated(stored, now);
      if (!keys.some((k) => k.state === 'next')) keys.push(await newKey(this.#options.algorithm, 'next', now, this.#options.maxTokenLifetime));
      keys = keys.filter((k) => !(k.state === 'retired' && (k.publishUntil ?? 0) < now));
      return keys;
    });
    this.#install(keys);
  }

  /**
   * Re-read the stored key set (another instance may have rotated), at most once a second:
   * called when a token names a `kid` this instance does not know.
   */
  async refresh(): Promise<boolean> {
    const now = Date.now();
    if (now - this.#lastRefresh < 1000) return false;
    this.#lastRefresh = now;
    const before = this.#installed;
    this.#install(await this.#store.listKeys());
    return this.#installed !== before;
  }

  /**
   * Make sure the active key's recorded lifetime covers a token of `lifetime` seconds, persisting
   * the raise before the token is signed (so the key stays published long enough after retirement).
   */
  async coverLifetime(lifetime: number): Promise<void> {
    if (this.active.maxTokenLifetime >= lifetime) return;
    const kid = this.active.kid;
    const keys = await this.#store.updateKeys(async (stored) =>
      stored.map((k) => (k.kid === kid ? { ...k, maxTokenLifetime: Math.max(k.maxTokenLifetime, lifetime) } : k)),
    );
    this.#install(keys);
  }

  async #rotated(keys: StoredKey[], now: number): Promise<StoredKey[]> {
    for (const k of keys) {
      if (k.state === 'active') {
        k.state = 'retired';
        k.retiredAt = now;
        k.publishUntil = now + k.maxTokenLifetime + this.#options.clockSkew;
      }
    }
    let next = keys.find((k) => k.state === 'next' && k.alg === this.#options.algorithm);
    if (next === undefined) {
      next = await newKey(this.#options.algorithm, 'next', now, this.#options.maxTokenLifetime);
      keys.push(next);
    }
    next.state = 'active';
    next.activatedAt = now;
    next.maxTokenLifetime = Math.max(next.maxTokenLifetime, this.#options.maxTokenLifetime);
    return keys;
  }

  #install(keys: StoredKey[]): void {
    const fingerprint = JSON.stringify(keys.map((k) => [k.kid, k.state, k.maxTokenLifetime, k.publishUntil]));
    if (fingerprint === this.#installed) return;
    const active = keys.find((k) => k.state === 'active');
    if (active === undefined) throw new Error('key set has no active key');
    this.#keys = keys;
    this.#installed = fingerprint;
    this.#active = { kid: active.kid, alg: active.alg, key: createPrivateKey({ key: active.privateJwk as never, format: 'jwk' }), maxTokenLifetime: active.maxTokenLifetime };
    // Order: active first, then next, then retired (newest first).
    const order = { active: 0, next: 1, retired: 2 } as const;
    const published = [...keys].sort((a, b) => order[a.state] - order[b.state] || b.createdAt - a.createdAt);
    this.#jwks = { keys: published.map((k) => ({ ...k.publicJwk })) };
    this.#verification = new Map(keys.map((k) => [k.kid, { alg: k.alg, key: createPublicKey({ key: k.publicJwk as never, format: 'jwk' }) }]));
    this.onChange?.();
  }
}
