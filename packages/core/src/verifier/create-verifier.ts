import { DPOP_ALGORITHMS } from '../dpop/algorithms.js';
import { asDpopRefusal } from '../dpop/challenge.js';
import { DEFAULT_DPOP_KEY_CACHE_SIZE, DpopKeyCache } from '../dpop/key-cache.js';
import { ConfigurationError, InvalidTokenError, isTetherError, type TetherError } from '../errors.js';
import { BindingCache } from './binding-cache.js';
import type { VerificationContext } from './context.js';
import type { ResolvedVerifierOptions, SessionBoundVerifierOptions } from './options.js';
import type { VerifiedPrincipal } from './principal.js';
import { MemoryReplayStore } from './replay-store.js';
import type { RequestInput } from './request.js';
import { createStats, type VerifierStats } from './stats.js';
import { VERIFICATION_STEPS } from './steps.js';

export interface SessionBoundVerifier {
  /**
   * Run steps a to i on one request. Resolves the verified principal or rejects with a
   * `TetherError` (its `statusCode` and `headers` are the response to send). Any other failure is
   * wrapped as `invalid_token`, so nothing unexpected passes or becomes a 500.
   */
  verify(input: RequestInput): Promise<VerifiedPrincipal>;
  /** Live counters. */
  readonly stats: VerifierStats;
  /** The per-connection binding cache (its `size` shows bindings currently held). */
  readonly cache: BindingCache;
  readonly options: Readonly<ResolvedVerifierOptions>;
}

function positive(name: string, value: number): number {
  if (!Number.isFinite(value) || value <= 0) throw new ConfigurationError(`${name} must be a positive number of seconds`);
  return value;
}

function resolve(options: SessionBoundVerifierOptions): ResolvedVerifierOptions {
  if (typeof options?.tokens?.validate !== 'function') throw new ConfigurationError('tokens (an access-token validator) is required');
  const minimumBinding = options.minimumBinding ?? 'session';
  if (!['session', 'certificate', 'none'].includes(minimumBinding)) throw new ConfigurationError('minimumBinding must be session, certificate or none');
  const tlsVersions = options.tlsVersions ?? ['TLSv1.3'];
  if (tlsVersions.length === 0 || tlsVersions.some((v) => v !== 'TLSv1.3' && v !== 'TLSv1.2')) {
    throw new ConfigurationError('tlsVersions must list TLSv1.3 and/or TLSv1.2');
  }
  const clockSkew = options.clockSkew === undefined ? 30 : positive('clockSkew', options.clockSkew);
  const dpop = options.dpop ?? {};
  const dpopAlgorithms = dpop.algorithms ?? DPOP_ALGORITHMS;
  if (dpopAlgorithms.length === 0 || dpopAlgorithms.some((a) => !DPOP_ALGORITHMS.includes(a))) {
    throw new ConfigurationError(`dpop.algorithms must be a non-empty subset of ${DPOP_ALGORITHMS.join(', ')}`);
  }
  if (dpop.nonce !== undefined && (typeof dpop.nonce.issue !== 'function' || typeof dpop.nonce.check !== 'function')) {
    throw new ConfigurationError('dpop.nonce must have issue() and check(nonce)');
  }
  if (dpop.keyCacheSize !== undefined && (!Number.isInteger(dpop.keyCacheSize) || dpop.keyCacheSize < 0)) {
    throw new ConfigurationError('dpop.keyCacheSize must be a non-negative integer');
  }
  return {
    tokens: options.tokens,
    minimumBinding,
    tlsVersions,
    proofMaxAge: positive('proofMaxAge', options.proofMaxAge ?? 300),
    clockSkew,
    maxBindingAge: positive('maxBindingAge', options.maxBindingAge ?? 3600),
    proofAlgorithms: options.proofAlgorithms,
    // The default store expires ids on the verifier's clock, the one their retention is computed on.
    replayStore: options.replayStore ?? new MemoryReplayStore(options.now === undefined ? {} : { now: options.now }),
    requiredScopes: options.requiredScopes ?? [],
    requireTrustedCertificate: options.requireTrustedCertificate ?? true,
    now: options.now ?? (() => Date.now() / 1000),
    dpop: {
      enabled: dpop.enabled ?? true,
      nonce: dpop.nonce,
      maxAge: positive('dpop.maxAge', dpop.maxAge ?? 60),
      clockSkew: dpop.clockSkew === undefined ? clockSkew : positive('dpop.clockSkew', dpop.clockSkew),
      algorithms: dpopAlgorithms,
      meetsSessionMinimum: dpop.meetsSessionMinimum === true,
      keyCache: new DpopKeyCache(dpop.keyCacheSize ?? DEFAULT_DPOP_KEY_CACHE_SIZE),
    },
  };
}

function principalOf(ctx: VerificationContext): VerifiedPrincipal {
  const c = ctx.claims;
  return {
    sub: typeof c.sub === 'string' ? c.sub : undefined,
    client_id: typeof c.client_id === 'string' ? c.client_id : undefined,
    scope: typeof c.scope === 'string' ? c.scope : undefined,
    act: typeof c.act === 'object' && c.act !== null ? c.act : undefined,
    cnf: c.cnf,
    binding: ctx.binding.kind === 'session' || ctx.binding.kind === 'certificate' || ctx.binding.kind === 'dpop' ? ctx.binding.kind : 'none',
    claims: c,
  };
}

/**
 * Build a resource-server verifier for TLS-session-bound access tokens (draft section 3.3). It is
 * transport-neutral: adapters (`@tether/core/node`, `/express`, `/fastify`) turn a request into a
 * {@link RequestInput} and the rejection into a response.
 */
export function createSessionBoundVerifier(options: SessionBoundVerifierOptions): SessionBoundVerifier {
  const resolved = resolve(options);
  const stats = createStats();
  const cache = new BindingCache(options.cache);
  return {
    stats,
    cache,
    options: resolved,
    async verify(input: RequestInput): Promise<VerifiedPrincipal> {
      stats.requests++;
      const ctx = {
        input,
        options: resolved,
        cache,
        stats,
        now: resolved.now(),
        proof: undefined,
        scheme: 'bearer',
        dpopProof: undefined,
        perRequest: undefined,
      } as VerificationContext;
      try {
        // Steps that finish synchronously (most of them, on a cached binding) cost no await.
        for (const step of VERIFICATION_STEPS) {
          const pending = step.run(ctx);
          if (pending !== undefined) await pending;
        }
      } catch (error) {
        let refusal: TetherError = isTetherError(error)
          ? error
          : new InvalidTokenError({ reason: 'internal', description: 'The access token could not be verified', cause: error });
        // RFC 9449 7.1/7.2: a request that used the DPoP scheme is answered with a DPoP challenge.
        if (ctx.scheme === 'dpop') refusal = asDpopRefusal(refusal, resolved.dpop.algorithms);
        stats.failures[refusal.reason] = (stats.failures[refusal.reason] ?? 0) + 1;
        throw refusal;
      }
      stats.accepted++;
      return principalOf(ctx);
    },
  };
}
