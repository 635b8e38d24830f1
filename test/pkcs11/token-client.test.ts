/**
 * The authorization server's TokenClient with a key held in SoftHSM2: tls_client_auth through
 * OpenSSL's pkcs11 engine, and a token exchange whose subject token is proven (Session-Binding
 * Proof signed by C_Sign) on the connection that carries the request.
 */
import { after, before, test } from 'node:test';
import assert from 'node:assert/strict';
import { TokenClient } from '@tether/as';
import { certifyTokenKey, removeSoftHsm, softHsm, type SoftHsm } from '../helpers/softhsm.js';
import { NAMES, spiffe, standardClient, startTestAs, claimsOf, type TestAs } from '../as/helpers/setup.js';

let hsm: SoftHsm;
let as: TestAs;

before(async () => {
  hsm = await softHsm();
  as = await startTestAs({ clients: [...NAMES.map((n) => standardClient(n)), standardClient('hsm-agent')] });
});

after(async () => {
  await as?.close();
  await removeSoftHsm();
});

test('client_credentials over mTLS with the token-held key, then an exchange proving the subject token', async () => {
  const cert = await certifyTokenKey(hsm.keys.p256, as.pki.ca, 'hsm-agent');
  const client = await TokenClient.create({ cert, key: hsm.keys.p256.uri, pkcs11: { modulePath: hsm.modulePath }, ca: as.pki.ca.cert });
  try {
    const issued = await client.post(`${as.server.url}/token`, { grant_type: 'client_credentials', client_id: 'hsm-agent', scope: 'read', audience: spiffe('b') });
    assert.equal(issued.status, 200, issued.text);
    const token = issued.json?.access_token as string;
    assert.equal(claimsOf(token).client_id, 'hsm-agent');
    const exchange = (proveSubjectToken: boolean) =>
      client.post(
        `${as.server.url}/token`,
        {
          grant_type: 'urn:ietf:params:oauth:grant-type:token-exchange',
          client_id: 'hsm-agent',
          subject_token: token,
          subject_token_type: 'urn:ietf:params:oauth:token-type:access_token',
          audience: spiffe('c'),
          scope: 'read',
        },
        { proveSubjectToken },
      );
    const proven = await exchange(true);
    assert.equal(proven.status, 200, proven.text);
    assert.equal(claimsOf(proven.json?.access_token as string).aud, spiffe('c'));
    // Without the proof the AS does not take the holder's word for it (draft / NOTES decision 4 (a)).
    const unproven = await exchange(false);
    assert.notEqual(unproven.status, 200, unproven.text);
  } finally {
    await client.close();
  }
  assert.throws(() => new TokenClient({ cert, key: hsm.keys.p256.uri }), /TokenClient.create/);
});
