/**
 * Two `tether as` processes on one PostgreSQL database behave as one server (issue 14 item 2):
 * one set of keys created once, revocation seen at the other instance at once, replays refused
 * across instances, one key rotation published by both, and no acknowledged revocation lost when
 * an instance is killed under load. PostgreSQL is a real server (test/helpers/postgres.ts).
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync, randomBytes, randomUUID, type KeyObject } from 'node:crypto';
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test, type TestContext } from 'node:test';
import { SignJWT, exportJWK } from 'jose';
import { createDpopProof } from '@tether/core/dpop';
import { JWT_BEARER_ASSERTION, TokenClient, type TokenRequestResult } from '@tether/as';
import { writeDevPki } from '@tether/pki';
import { freePort, startPostgres, type PostgresServer } from '../helpers/postgres.js';
import { waitFor } from '../helpers/wait.js';
import { spawnAs, type AsChild } from './helpers/as-child.js';
import { removeDir, spiffe, tempDir } from './helpers/setup.js';

const PUBLIC = 'https://as.test';
const RS = 'https://rs.test';
const KEK = randomBytes(32).toString('hex');

let postgres: PostgresServer;
let dir: string;
let assertionKey: KeyObject;
let databases = 0;

before(async () => {
  dir = tempDir('tether-multi-');
  await writeDevPki(join(dir, 'pki'), { clients: ['agent', 'tool'] });
  assertionKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  postgres = await startPostgres();
});
after(async () => {
  await postgres?.stop();
  if (dir !== undefined) removeDir(dir);
});

/** A configuration file for one instance: same issuer and public URL for all, its own port. */
async function configFile(name: string, storeUrl: string, port: number, extra: Record<string, unknown> = {}): Promise<string> {
  const pki = join(dir, 'pki');
  const client = (id: string) => ({
    client_id: id,
    token_endpoint_auth_method: 'tls_client_auth',
    tls_client_auth_san_uri: spiffe(id),
    grant_types: ['client_credentials'],
    scope: 'read',
    audiences: ['*'],
  });
  const config = {
    issuer: PUBLIC,
    listen: { host: '127.0.0.1', port, publicUrl: PUBLIC },
    tls: { certFile: join(pki, 'server.pem'), keyFile: join(pki, 'server.key') },
    clientAuthentication: { tls_client_auth: { caFiles: [join(pki, 'ca.pem')] } },
    store: storeUrl,
    keyEncryption: { env: 'TETHER_TEST_KEK' },
    logging: { level: 'warn' },
    resources: [{ identifier: RS }],
    clients: [
      client('agent'),
      client('tool'),
      { client_id: 'late', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...(await exportJWK(assertionKey)), d: undefined, alg: 'ES256' }] }, audiences: [RS] },
    ],
    ...extra,
  };
  const path = join(dir, `${name}.json`);
  writeFileSync(path, JSON.stringify(config, (_k, v: unknown) => v));
  return path;
}

interface Pair {
  a: AsChild;
  b: AsChild;
  urlA: string;
  urlB: string;
  agent: TokenClient;
  anonymous: TokenClient;
}

/** Two instances on a fresh database, started at the same time. */
async function startPair(t: TestContext, extra: Record<string, unknown> = {}): Promise<Pair> {
  const storeUrl = await postgres.createDatabase(`multi_${++databases}`);
  const [portA, portB] = [await freePort(), await freePort()];
  const [fileA, fileB] = [await configFile(`a${databases}`, storeUrl, portA, extra), await configFile(`b${databases}`, storeUrl, portB, extra)];
  const env = { TETHER_TEST_KEK: KEK };
  const [a, b] = await Promise.all([spawnAs(t, ['--config', fileA], env), spawnAs(t, ['--config', fileB], env)]);
  const pki = join(dir, 'pki');
  const read = (n: string) => readFileSync(join(pki, n), 'utf8');
  const agent = new TokenClient({ cert: read('agent.pem'), key: read('agent.key'), ca: read('ca.pem'), maxSockets: 8 });
  const anonymous = new TokenClient({ ca: read('ca.pem') });
  t.after(() => {
    agent.close();
    anonymous.close();
  });
  return { a, b, urlA: `https://127.0.0.1:${portA}`, urlB: `https://127.0.0.1:${portB}`, agent, anonymous };
}

async function jwks(client: TokenClient, base: string): Promise<string[]> {
  const r = await client.get(`${base}/jwks`);
  assert.equal(r.status, 200, r.text);
  return ((r.json as { keys: Array<{ kid: string }> }).keys).map((k) => k.kid);
}

async function issue(p: Pair, base: string): Promise<string> {
  const r = await p.agent.post(`${base}/token`, { grant_type: 'client_credentials', client_id: 'agent', audience: RS });
  assert.equal(r.status, 200, r.text);
  return r.json?.access_token as string;
}

const introspect = (p: Pair, base: string, token: string): Promise<TokenRequestResult> => p.agent.post(`${base}/introspect`, { client_id: 'agent', token });
const revoke = (p: Pair, base: string, token: string): Promise<TokenRequestResult> => p.agent.post(`${base}/revoke`, { client_id: 'agent', token });

function percentile(sorted: number[], q: number): number {
  return sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] as number;
}

describe('two tether as instances on one PostgreSQL database', () => {
  test('one key set, revocation visible at the other at once, replays refused and DPoP nonces accepted across instances', async (t) => {
    const p = await startPair(t, { tokens: { dpopNonce: { required: true } } });
    const [kidsA, kidsB] = [await jwks(p.agent, p.urlA), await jwks(p.agent, p.urlB)];
    assert.equal(kidsA.length, 2, 'one active and one next key, created once for both');
    assert.deepEqual(kidsB, kidsA, 'both publish the same keys');

    // Revocation at A is seen by B's introspection on the very next request.
    const latencies: number[] = [];
    for (let i = 0; i < 40; i++) {
      const token = await issue(p, i % 2 === 0 ? p.urlA : p.urlB);
      assert.equal((await introspect(p, p.urlB, token)).json?.active, true);
      const started = performance.now();
      assert.equal((await revoke(p, p.urlA, token)).status, 200);
      assert.equal((await introspect(p, p.urlB, token)).text, '{"active":false}');
      latencies.push(performance.now() - started);
    }
    latencies.sort((x, y) => x - y);
    t.diagnostic(`revoke at A + introspect at B: p50 ${percentile(latencies, 0.5).toFixed(1)} ms, p99 ${percentile(latencies, 0.99).toFixed(1)} ms (n=${latencies.length})`);

    // A client assertion used at A is refused at B.
    const assertion = await new SignJWT({ iss: 'late', sub: 'late', aud: PUBLIC, jti: randomUUID(), exp: Math.floor(Date.now() / 1000) + 60 })
      .setProtectedHeader({ alg: 'ES256' })
      .sign(assertionKey);
    const params = { grant_type: 'client_credentials', client_assertion_type: JWT_BEARER_ASSERTION, client_assertion: assertion, audience: RS };
    assert.equal((await p.anonymous.post(`${p.urlA}/token`, params)).status, 200);
    const replayed = await p.anonymous.post(`${p.urlB}/token`, params);
    assert.equal(replayed.status, 401, replayed.text);
    assert.equal(replayed.json?.error, 'invalid_client');

    // A DPoP nonce A issued is accepted at B; the proof used at B is refused at A (both serve the
    // same public token endpoint URL).
    const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
    const cc = { grant_type: 'client_credentials', client_id: 'agent', audience: RS };
    const withoutNonce = await p.agent.post(`${p.urlA}/token`, cc, { headers: { dpop: await createDpopProof({ privateKey: dpopKey, htm: 'POST', htu: `${PUBLIC}/token` }) } });
    assert.equal(withoutNonce.json?.error, 'use_dpop_nonce', withoutNonce.text);
    const nonce = withoutNonce.headers['dpop-nonce'] as string;
    const proof = await createDpopProof({ privateKey: dpopKey, htm: 'POST', htu: `${PUBLIC}/token`, nonce });
    const first = await p.agent.post(`${p.urlB}/token`, cc, { headers: { dpop: proof } });
    assert.equal(first.status, 200, first.text);
    assert.equal(first.json?.token_type, 'DPoP');
    const again = await p.agent.post(`${p.urlA}/token`, cc, { headers: { dpop: proof } });
    assert.equal(again.status, 400, again.text);
    assert.equal(again.json?.error, 'invalid_dpop_proof', 'the proof was used at the other instance');

    assert.equal(await p.a.stop(), 0);
    assert.equal(await p.b.stop(), 0);
  });

  test('one key rotation, published by both jwks_uris (advisory lock: never two rotations)', async (t) => {
    // 10 s: the first rotation must come after both instances are up and read (on a loaded machine the second
    // instance's start alone took more than 4 s, and a rotation before the first read was counted as a second one).
    const p = await startPair(t, { signingKeys: { algorithm: 'ES256', rotationInterval: 10, checkInterval: 1 } });
    const before = await jwks(p.agent, p.urlA);
    assert.deepEqual(await jwks(p.agent, p.urlB), before);
    const [active, next] = before as [string, string];
    let after: string[] = [];
    await waitFor(
      async () => {
        after = await jwks(p.agent, p.urlA);
        return after[0] !== active && (await jwks(p.agent, p.urlB)).join() === after.join();
      },
      { timeoutMs: 25_000, intervalMs: 100, message: () => `a rotation published by both (A: ${after.join()})` },
    );
    assert.equal(after[0], next, 'the pre-published next key signs after the rotation');
    assert.equal(after.length, 3, `active, a new next, the retired key: one rotation, not two (${after.join()})`);
    assert.ok(after.includes(active), 'the retired key stays published');
    const token = await issue(p, p.urlB);
    assert.equal(JSON.parse(Buffer.from(token.split('.')[0] as string, 'base64url').toString()).kid, next, 'B signs with the new key too');
    assert.equal((await introspect(p, p.urlA, token)).json?.active, true);
  });

  test('kill -9 of one instance under load loses no acknowledged revocation', async (t) => {
    const p = await startPair(t);
    const tokens = await Promise.all(Array.from({ length: 200 }, (_v, i) => issue(p, i % 2 === 0 ? p.urlA : p.urlB)));
    const acknowledged: string[] = [];
    let next = 0;
    let killed = false;
    const worker = async () => {
      while (next < tokens.length) {
        const token = tokens[next++] as string;
        try {
          const r = await revoke(p, p.urlA, token);
          if (r.status === 200) acknowledged.push(token);
        } catch {
          // the connection died with the process: not acknowledged
        }
        if (!killed && acknowledged.length >= 60) {
          killed = true;
          p.a.child.kill('SIGKILL');
        }
      }
    };
    await Promise.all(Array.from({ length: 8 }, worker));
    assert.ok(killed, 'the instance was killed while revocations were in flight');
    assert.equal((await p.a.exited) === null || p.a.child.signalCode === 'SIGKILL', true);
    assert.ok(acknowledged.length >= 60, `acknowledged ${acknowledged.length}`);
    assert.ok(acknowledged.length < tokens.length, 'some revocations were cut off by the kill');
    const still: string[] = [];
    for (const token of acknowledged) {
      const r = await introspect(p, p.urlB, token);
      if (r.json?.active !== false) still.push(token);
    }
    assert.deepEqual(still, [], `every acknowledged revocation (${acknowledged.length}) holds at the surviving instance`);
    t.diagnostic(`acknowledged before the kill: ${acknowledged.length} of ${tokens.length}`);
  });
});

test('tether as --dev --pki DIR --store postgres://...: two development instances share one database and one set of keys', async (t) => {
  const storeUrl = await postgres.createDatabase(`multi_${++databases}`);
  const pki = join(dir, 'pki');
  const args = (data: string) => ['--dev', '--pki', pki, '--listen', '127.0.0.1:0', '--data', join(dir, data), '--store', storeUrl, '--log-level', 'warn'];
  const [a, b] = await Promise.all([spawnAs(t, args('dev-a')), spawnAs(t, args('dev-b'))]);
  const client = new TokenClient({ ca: readFileSync(join(pki, 'ca.pem'), 'utf8') });
  t.after(() => client.close());
  const kidsA = await jwks(client, a.ready.listening);
  assert.equal(kidsA.length, 2);
  assert.deepEqual(await jwks(client, b.ready.listening), kidsA, 'one set of keys, created once');
  assert.equal(await a.stop(), 0);
  assert.equal(await b.stop(), 0);
});
