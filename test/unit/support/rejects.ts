import assert from 'node:assert/strict';
import { InvalidTokenError } from '@tether/core';

/** Await `promise`, require an `InvalidTokenError` (401 `invalid_token`) with `reason`, and return it. */
export async function rejectsToken(promise: Promise<unknown>, reason: string, message?: string): Promise<InvalidTokenError> {
  const error = await promise.then(
    () => assert.fail(`${message ?? 'token'}: expected InvalidTokenError(${reason}) but it was accepted`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof InvalidTokenError, `${message ?? 'token'}: got ${String(error)}`);
  assert.equal(error.reason, reason, message);
  assert.equal(error.statusCode, 401);
  assert.equal(error.error, 'invalid_token');
  assert.match(error.challenge, /^Bearer error="invalid_token", error_description="[^"]+"$/);
  return error;
}
