/**
 * Revocation cascades down the exchange chain (issue 14 item 3): revoking a token makes every token
 * exchanged from it, at any depth, inactive at introspection; its ancestors and siblings stay active.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { spiffe, startTestAs, type TestAs } from './helpers/setup.js';

let as: TestAs;
before(async () => {
  as = await startTestAs({ clients: ['a', 'b', 'c', 'd'].map((n) => ({ client_id: n, token_endpoint_auth_method: 'tls_client_auth' as const, tls_client_auth_san_uri: spiffe(n), identifiers: [spiffe(n)], grant_types: ['client_credentials', 'urn:ietf:params:oauth:grant-type:token-exchange'], scope: 'read', tls_session_bound_access_tokens: true, audiences: ['*'], introspection: 'any' as const })) });
});
after(() => as.close());

async function exchanged(name: string, subject: string, audience: string): Promise<string> {
  const r = await as.exchange(name, subject, { audience: spiffe(audience) });
  assert.equal(r.status, 200, `${name}: ${r.text}`);
  return r.json?.access_token as string;
}

const active = async (token: string): Promise<boolean> => (await as.post('d', '/introspect', { client_id: 'd', token })).json?.active === true;
const revoke = async (name: string, token: string) => assert.equal((await as.post(name, '/revoke', { client_id: name, token })).status, 200);

describe('revocation cascades through token exchange', () => {
  test('revoking the first token of a chain A -> B -> C -> D makes every successor inactive', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    const t2 = await exchanged('b', t1, 'c');
    const t3 = await exchanged('c', t2, 'd');
    const branch = await exchanged('b', t1, 'd');
    for (const t of [t1, t2, t3, branch]) assert.equal(await active(t), true);
    await revoke('a', t1);
    for (const [name, t] of Object.entries({ t1, t2, t3, branch })) assert.equal(await active(t), false, `${name} is inactive`);
    const refused = await as.exchange('c', t2, { audience: spiffe('d') });
    assert.equal(refused.json?.error, 'invalid_grant', 'a successor of a revoked token cannot be exchanged again');
  });

  test('revoking a middle token reaches its successors, not its ancestor or siblings', async () => {
    const t1 = await as.token('a', { audience: spiffe('b') });
    const t2 = await exchanged('b', t1, 'c');
    const sibling = await exchanged('b', t1, 'd');
    const t3 = await exchanged('c', t2, 'd');
    await revoke('b', t2);
    assert.equal(await active(t2), false);
    assert.equal(await active(t3), false, 'successor of the revoked token');
    assert.equal(await active(t1), true, 'the subject token it came from stays active');
    assert.equal(await active(sibling), true, 'another exchange of the same subject stays active');
  });
});
