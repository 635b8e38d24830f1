import type { TetherError } from '../errors.js';

/**
 * The same refusal addressed to the DPoP scheme (RFC 9449 section 7.1): scheme `DPoP` and an
 * `algs` parameter listing `algorithms`. Status, code, reason, description and response headers are
 * unchanged. Returns `error` itself when it already uses the DPoP scheme. The original is not
 * modified: a copy with the same prototype (so `instanceof` and `challenge` keep working) is returned.
 */
export function asDpopRefusal(error: TetherError, algorithms: readonly string[]): TetherError {
  if (error.scheme === 'DPoP') return error;
  const copy = Object.create(Object.getPrototypeOf(error) as object, Object.getOwnPropertyDescriptors(error)) as TetherError;
  const authParams = [...error.authParams.filter(([k]) => k !== 'algs'), ...(algorithms.length === 0 ? [] : [['algs', algorithms.join(' ')] as const])];
  Object.defineProperty(copy, 'scheme', { value: 'DPoP' });
  Object.defineProperty(copy, 'authParams', { value: authParams });
  return copy;
}
