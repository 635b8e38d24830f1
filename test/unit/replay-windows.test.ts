/**
 * How long a used `jti` is remembered, at each side of every tolerance: a proof with a `jti` must
 * be refused as a replay for as long as anything else about it would still be accepted.
 * Regressions for two defects: Session-Binding Proof ids were kept only until the token's `exp`
 * (while the token validator still accepts the token for its clock tolerance after `exp`), and
 * DPoP ids were dropped at exactly `iat + maxAge + skew`, the last second the proof is accepted.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import {
  InvalidProofError,
  InvalidTokenError,
  MemoryReplayStore,
  createSessionBindingProof,
  createSessionBoundVerifier,
  jwtAccessTokenValidator,
  localJwks,
  sessionBoundConfirmation,
  type ReplayStore,
  type SessionBoundVerifier,
} from '@tether/core';
import { verifyDpopProof } from '@tether/core/dpop';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { EKM, identities } from './support/jws.js';
import { FakeConnection } from './support/connection.js';
import { NOW, forge, rejectsDpop, verifyOptions } from '../dpop/support.js';

const issuer = await TestIssuer.create();
const { client } = await identities('p256');

/** A verifier whose every clock (token validator, verifier, replay store) is `clock`. */
function verifierAt(clock: () => number, replayStore?: ReplayStore, clockTolerance?: number): SessionBoundVerifier {
  return createSessionBoundVerifier({
    tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE, now: clock, ...(clockTolerance === undefined ? {} : { clockTolerance }) }),
    now: clock,
    ...(replayStore === undefined ? {} : { replayStore }),
  });
}

function request(token: string, proof: string, connection: FakeConnection) {
  return {
    method: 'GET',
    scheme: 'https',
    authority: 'rs.tether.test',
    path: '/api/resource',
    authorization: [`Bearer ${token}`],
    sessionBindingProof: [proof],
    connection,
  };
}

/** Assert that `input` is refused with exactly `Kind` and `reason`. */
async function refused(
  verifier: SessionBoundVerifier,
  input: ReturnType<typeof request>,
  Kind: typeof InvalidProofError | typeof InvalidTokenError,
  reason: string,
  what: string,
): Promise<void> {
  const error = await verifier.verify(input).then(
    () => assert.fail(`${what}: accepted`),
    (e: unknown) => e,
  );
  assert.ok(error instanceof Kind, what);
  assert.equal(error.reason, reason, what);
}

const refusedAsReplay = (verifier: SessionBoundVerifier, input: ReturnType<typeof request>, what: string) => refused(verifier, input, InvalidProofError, 'jti_replay', what);

for (const store of ['default store', 'explicit MemoryReplayStore'] as const) {
  test(`${store}: a Session-Binding Proof jti stays used while the token is still accepted after exp (validator tolerance)`, async () => {
    const start = Math.floor(Date.now() / 1000);
    let now = start;
    const clock = () => now;
    const verifier = verifierAt(clock, store === 'default store' ? undefined : new MemoryReplayStore({ now: clock }));
    const token = await issuer.mint({ cnf: sessionBoundConfirmation(new X509Certificate(client.pem.cert)) }, { expiresIn: 60 });
    const connection = new FakeConnection(EKM, { certificate: client.cert });
    const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: token, ekm: EKM, iat: start + 50, jti: 'once' });

    now = start + 55;
    await verifier.verify(request(token, proof, connection));
    // Past exp (start + 60) but inside the validator's 30 s tolerance: the token and the proof's
    // iat would both pass, so only the replay store stands between the attacker and a replay.
    for (const at of [start + 60, start + 61, start + 89]) {
      now = at;
      await refusedAsReplay(verifier, request(token, proof, connection), `at exp + ${at - start - 60}`);
    }
    assert.deepEqual(verifier.stats.failures, { jti_replay: 3 });
    assert.equal(verifier.stats.accepted, 1);
  });
}

test('a Session-Binding Proof jti stays used through the last second its iat is accepted (iat + maxAge + skew)', async () => {
  const start = Math.floor(Date.now() / 1000);
  let now = start;
  const clock = () => now;
  const store = new MemoryReplayStore({ now: clock });
  const verifier = verifierAt(clock, store);
  const token = await issuer.mint({ cnf: sessionBoundConfirmation(new X509Certificate(client.pem.cert)) }, { expiresIn: 3600 });
  const connection = new FakeConnection(EKM, { certificate: client.cert });
  const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: token, ekm: EKM, iat: start, jti: 'window' });
  await verifier.verify(request(token, proof, connection));
  // Defaults: proofMaxAge 300, clockSkew 30.
  now = start + 330;
  await refusedAsReplay(verifier, request(token, proof, connection), 'at iat + maxAge + skew');
  now = start + 331;
  await refused(verifier, request(token, proof, connection), InvalidProofError, 'iat_stale', 'one second later the iat check refuses it on its own');
  // Retention ends with the proof's window, not with the token (which lives on for an hour).
  now = start + 332;
  assert.equal(store.use('probe', now + 1), true);
  assert.equal(store.use('sbp:window', now + 1), true, 'the id was released once the proof can no longer be accepted');
});

test('a validator more tolerant than the verifier does not reopen the gap: the token ends at exp + clockSkew, and so does the jti', async () => {
  const start = Math.floor(Date.now() / 1000);
  let now = start;
  const clock = () => now;
  const store = new MemoryReplayStore({ now: clock });
  // The validator tolerates 120 s past exp; the verifier's clockSkew is 30 s.
  const verifier = verifierAt(clock, store, 120);
  const token = await issuer.mint({ cnf: sessionBoundConfirmation(new X509Certificate(client.pem.cert)) }, { expiresIn: 60 });
  const exp = start + 60;
  const connection = new FakeConnection(EKM, { certificate: client.cert });
  const proof = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: token, ekm: EKM, iat: start, jti: 'short' });
  await verifier.verify(request(token, proof, connection));
  now = exp + 29;
  await refusedAsReplay(verifier, request(token, proof, connection), 'at exp + 29');
  now = exp + 30;
  const fresh = await createSessionBindingProof({ privateKey: client.key, certificate: client.cert, accessToken: token, ekm: EKM, iat: now, jti: 'late' });
  await refused(verifier, request(token, fresh, connection), InvalidTokenError, 'expired', 'a token at exp + clockSkew');
  // The id was kept exactly as long as the token could be used: through exp + 30, not the proof's 330 s.
  now = exp + 31;
  assert.equal(store.use('sbp:short', now + 1), true);
  assert.deepEqual(verifier.stats.failures, { jti_replay: 1, expired: 1 });
});

test('a DPoP proof jti stays used through the last second its iat is accepted (iat + maxAge + skew)', async () => {
  // forge(): iat = NOW; verifyOptions: maxAge 60, clockSkew 5.
  let now = NOW;
  const replayStore = new MemoryReplayStore({ now: () => now });
  const proof = forge(undefined, { claims: { jti: 'dpop-once' } });
  await verifyDpopProof(proof, verifyOptions({ now, replayStore }));
  for (const at of [NOW + 1, NOW + 64, NOW + 65]) {
    now = at;
    await rejectsDpop(verifyDpopProof(proof, verifyOptions({ now, replayStore })), 'jti_replay', `replay at iat + ${at - NOW}`);
  }
  now = NOW + 66;
  await rejectsDpop(verifyDpopProof(proof, verifyOptions({ now, replayStore })), 'iat_stale', 'one second later the iat check refuses it');
});
