import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createPublicKey, generateKeyPairSync, randomUUID } from 'node:crypto';
import { existsSync, readFileSync, statSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { SignJWT, calculateJwkThumbprint, exportJWK } from 'jose';
import { jwtAccessTokenValidator, remoteJwks } from '@tether/core';
import { JWT_BEARER_ASSERTION, StoreError, startAuthorizationServer } from '@tether/as';
import { baseConfig, clientWith, headerOf, removeDir, silentLogger, spiffe, startTestAs, tempDir } from './helpers/setup.js';

test('key rotation while tokens are in flight: old tokens verify through the JWKS until they expire', async () => {
  const as = await startTestAs();
  try {
    const validator = jwtAccessTokenValidator({
      keys: remoteJwks(as.server.jwksUri, { ca: as.pki.ca.cert, cooldownMs: 60_000 }),
      issuer: as.server.issuer,
      audience: 'https://rs.example',
      cacheMaxEntries: 0,
    });
    const jwksKids = () => as.server.jwks().keys.map((k) => k.kid as string);
    const t1 = await as.token('a', { audience: 'https://rs.example' });
    const k1 = headerOf(t1).kid as string;
    assert.equal((await validator.validate(t1)).sub, 'a'); // the resource server fetches the JWKS once
    const [active, next] = jwksKids();
    assert.equal(active, k1);

    await as.server.rotateSigningKey();
    const t2 = await as.token('a', { audience: 'https://rs.example' });
    const k2 = headerOf(t2).kid as string;
    assert.equal(k2, next, 'the pre-published key signs after rotation');
    assert.notEqual(k2, k1);
    // Both verify without a JWKS refetch: the new key was published before it signed.
    assert.equal((await validator.validate(t2)).sub, 'a');
    assert.equal((await validator.validate(t1)).sub, 'a');
    assert.deepEqual(new Set(jwksKids()).has(k1), true, 'the retired key stays published');
    const retired = (await as.server.store.listKeys()).find((k) => k.kid === k1);
    assert.equal(retired?.state, 'retired');
    assert.ok((retired?.publishUntil as number) >= (JSON.parse(Buffer.from(t1.split('.')[1] as string, 'base64url').toString()) as { exp: number }).exp);

    // Before every token of k1 has expired, maintenance keeps it; after, it goes.
    as.skew.ms = 200_000;
    await as.server.runMaintenance();
    assert.ok(jwksKids().includes(k1));
    as.skew.ms = 400_000;
    await as.server.runMaintenance();
    assert.ok(!jwksKids().includes(k1), 'removed once its tokens expired');
    assert.ok(jwksKids().includes(k2));
  } finally {
    await as.close();
  }
});

test('scheduled rotation: the maintenance timer rotates when the interval has passed', async () => {
  const as = await startTestAs({ signingKeys: { rotationInterval: 1, checkInterval: 1 } });
  try {
    const first = headerOf(await as.token('a', { audience: 'https://rs.example' })).kid;
    await new Promise((r) => setTimeout(r, 2300));
    const second = headerOf(await as.token('a', { audience: 'https://rs.example' })).kid;
    assert.notEqual(first, second);
    assert.match(await as.server.metrics.registry.getSingleMetricAsString('tether_as_key_rotations_total'), /tether_as_key_rotations_total [1-9]/);
  } finally {
    await as.close();
  }
});

test('restart on the same data directory keeps keys, revocations, registered clients and seen assertion ids', async () => {
  const dataDir = tempDir();
  const pkjKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  try {
    const first = await startTestAs({}, { dataDir });
    const kids = first.server.jwks().keys.map((k) => k.kid);
    const kept = await first.token('a', { audience: spiffe('b') });
    const revoked = await first.token('a', { audience: spiffe('b') });
    assert.equal((await first.post('a', '/revoke', { client_id: 'a', token: revoked })).status, 200);
    await first.server.registerClient({ client_id: 'late', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(createPublicKey(pkjKey))), alg: 'ES256' }] }, audiences: ['https://open.example'] });
    const assertion = await new SignJWT({ iss: 'late', sub: 'late', aud: first.server.issuer, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 120 }).setProtectedHeader({ alg: 'ES256' }).sign(pkjKey);
    const anonymous = clientWith(undefined, first.pki);
    const used = await anonymous.post(`${first.server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: assertion, audience: 'https://open.example' });
    assert.equal(used.status, 200, used.text);
    anonymous.close();

    // A second server on the same embedded store is refused while the first runs.
    await assert.rejects(
      startAuthorizationServer(baseConfig(first.pki, dataDir), { logger: silentLogger, defaultMetrics: false }),
      (e: unknown) => e instanceof StoreError && e.code === 'store_locked',
    );
    await first.close({ keepData: true });
    const mode = statSync(join(dataDir, 'tether.db')).mode & 0o777;
    assert.equal(mode, 0o600);

    // The new server listens on another port, hence another issuer: configure the old one explicitly.
    const second = await startTestAs({ issuer: first.server.issuer }, { dataDir });
    try {
      assert.deepEqual(second.server.jwks().keys.map((k) => k.kid), kids, 'same signing keys');
      const intro = (token: string) => second.post('b', '/introspect', { client_id: 'b', token });
      assert.equal((await intro(kept)).json?.active, true);
      assert.equal((await intro(revoked)).text, '{"active":false}', 'revocation survived the restart');
      const again = clientWith(undefined, second.pki);
      const replay = await again.post(`${second.server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: assertion, audience: 'https://open.example' });
      assert.equal(replay.status, 401, 'the assertion jti is still remembered');
      const fresh = await new SignJWT({ iss: 'late', sub: 'late', aud: second.server.issuer, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 120 }).setProtectedHeader({ alg: 'ES256' }).sign(pkjKey);
      const ok = await again.post(`${second.server.url}/token`, { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: fresh, audience: 'https://open.example' });
      assert.equal(ok.status, 200, `the registered client survived: ${ok.text}`);
      again.close();
      assert.equal(await second.server.unregisterClient('late'), true);
      assert.equal(await second.server.unregisterClient('a'), false, 'configured clients cannot be unregistered');
    } finally {
      await second.close({ keepData: true });
    }
  } finally {
    removeDir(dataDir);
  }
});

test('an algorithm change rotates at start; the old key stays published for its tokens', async () => {
  const dataDir = tempDir();
  try {
    const es = await startTestAs({}, { dataDir });
    const token = await es.token('a', { audience: spiffe('b') });
    const oldKid = headerOf(token).kid;
    await es.close({ keepData: true });
    const ed = await startTestAs({ issuer: es.server.issuer, signingKeys: { algorithm: 'EdDSA' } }, { dataDir });
    try {
      const fresh = await ed.token('a', { audience: spiffe('b') });
      assert.equal(headerOf(fresh).alg, 'EdDSA');
      assert.ok(ed.server.jwks().keys.some((k) => k.kid === oldKid && k.alg === 'ES256'));
      assert.equal((await ed.post('b', '/introspect', { client_id: 'b', token })).json?.active, true);
    } finally {
      await ed.close({ keepData: true });
    }
  } finally {
    removeDir(dataDir);
  }
});

test('a corrupt database stops the start instead of starting over with new keys', async () => {
  const dataDir = tempDir();
  try {
    const as = await startTestAs({}, { dataDir });
    const pki = as.pki;
    await as.close({ keepData: true });
    const path = join(dataDir, 'tether.db');
    const good = readFileSync(path);
    writeFileSync(path, Buffer.concat([Buffer.from('not a database at all'), good.subarray(21, 4096)]));
    await assert.rejects(startAuthorizationServer(baseConfig(pki, dataDir), { logger: silentLogger, defaultMetrics: false }), StoreError);
    // Nothing was held on to: the repaired database starts again, with its keys.
    writeFileSync(path, good);
    const again = await startAuthorizationServer(baseConfig(pki, dataDir), { logger: silentLogger, defaultMetrics: false });
    await again.close();
  } finally {
    removeDir(dataDir);
  }
});

/** The JSON state file an earlier version kept in its data directory (version 1). */
async function legacyState(): Promise<{ state: Record<string, unknown>; kid: string }> {
  const privateKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const jwk = privateKey.export({ format: 'jwk' });
  const { d: _d, ...publicMembers } = jwk;
  const kid = await calculateJwkThumbprint(publicMembers as never, 'sha256');
  const now = Math.floor(Date.now() / 1000);
  const key = { kid, alg: 'ES256', privateJwk: { ...jwk, kid, alg: 'ES256' }, publicJwk: { ...publicMembers, kid, alg: 'ES256', use: 'sig' }, createdAt: now - 10, state: 'active', activatedAt: now - 10, maxTokenLifetime: 300 };
  return {
    kid,
    state: {
      version: 1,
      keys: [key],
      revocations: { 'revoked-before-upgrade': now + 3600 },
      clients: [],
      seen: { 'client_assertion late seen-jti': now + 3600 },
      certificates: { a: { T: now + 3600 } },
    },
  };
}

test('upgrade: a data directory of an earlier version keeps its keys, revocations and seen ids', async () => {
  const dataDir = tempDir();
  try {
    const { state, kid } = await legacyState();
    writeFileSync(join(dataDir, 'state.json'), JSON.stringify(state), { mode: 0o600 });
    const as = await startTestAs({}, { dataDir });
    try {
      assert.ok(as.server.jwks().keys.some((k) => k.kid === kid), 'the old signing key is still published');
      assert.equal(headerOf(await as.token('a', { audience: spiffe('b') })).kid, kid, 'and still signs');
      assert.equal(await as.server.store.isRevoked('revoked-before-upgrade'), true);
      assert.equal(await as.server.store.rememberOnce('client_assertion', 'late seen-jti', 0), false, 'a seen assertion id stays seen');
      assert.ok((await as.server.store.observedCertificates('a')).includes('T'), 'an observed certificate stays observed');
    } finally {
      await as.close({ keepData: true });
    }
    assert.equal(existsSync(join(dataDir, 'state.json')), false);
    assert.ok(existsSync(join(dataDir, 'state.json.imported')), 'the old file is kept, renamed');
    const again = await startTestAs({}, { dataDir });
    try {
      assert.ok(again.server.jwks().keys.some((k) => k.kid === kid), 'imported once, kept');
    } finally {
      await again.close({ keepData: true });
    }
  } finally {
    removeDir(dataDir);
  }
});

test('upgrade: a corrupt state file of an earlier version stops the start (its keys are not replaced)', async () => {
  const dataDir = tempDir();
  try {
    writeFileSync(join(dataDir, 'state.json'), '{"version":1,"keys":[');
    await assert.rejects(startTestAs({}, { dataDir }), (e: unknown) => e instanceof StoreError && e.code === 'import_failed' && /not valid JSON/.test(e.message));
    assert.ok(existsSync(join(dataDir, 'state.json')), 'left where it was');
  } finally {
    removeDir(dataDir);
  }
});
