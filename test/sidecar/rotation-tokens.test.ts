/**
 * The egress's own tokens per certificate generation (TokenSource) against our authorization
 * server in process (`tether as --dev` configuration), over real mTLS: a token is bound to the
 * certificate it was fetched with; `bind` gives a connection of another generation a token fetched
 * with that generation's certificate; `prefetch` + `switched` move the cache to a new generation; a
 * token whose `cnf` names another certificate than the one it was fetched with is refused.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { certificateThumbprint } from '@tether/core';
import { devConfig, resolveConfig, startAuthorizationServer, type AuthorizationServer } from '@tether/as';
import { issueClientCertificate, writeDevPki, type IssuedCertificate } from '@tether/pki';
import { TokenFetchError, TokenSource, type TokenCredentials } from '@tether/sidecar';

let dir: string;
let ca: IssuedCertificate;
let as: AuthorizationServer;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-rotation-tokens-'));
  const pkiDir = join(dir, 'pki');
  await writeDevPki(pkiDir, { clients: ['egress', 'api'] });
  ca = { cert: readFileSync(join(pkiDir, 'ca.pem'), 'utf8'), key: readFileSync(join(pkiDir, 'ca.key'), 'utf8') };
  as = await startAuthorizationServer(resolveConfig(devConfig({ pkiDir, host: '127.0.0.1', port: 0, dataDir: join(dir, 'as-data'), logLevel: 'silent' })), {
    logger: pino({ level: 'silent' }),
    defaultMetrics: false,
  });
});

after(async () => {
  await as?.close();
  rmSync(dir, { recursive: true, force: true });
});

const x5t = (pem: string) => certificateThumbprint(new X509Certificate(pem));
const boundTo = (token: string) => (JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as { cnf?: Record<string, string> }).cnf?.['x5t#S256'];

async function generation(number: number, pair?: IssuedCertificate): Promise<TokenCredentials & { cert: string }> {
  const p = pair ?? (await issueClientCertificate(ca, 'egress'));
  return { number, tls: { cert: p.cert, key: p.key, ca: ca.cert }, thumbprint: x5t(p.cert), cert: p.cert };
}

describe('egress tokens per certificate generation', () => {
  it('a token travels only with the certificate it was fetched with', { timeout: 30_000 }, async () => {
    const [g1, g2, g3] = await Promise.all([generation(1), generation(2), generation(3)]);
    let current: TokenCredentials = g1;
    let background = 0;
    const source = new TokenSource({ endpoint: `${as.url}/token`, clientId: 'egress' }, () => current, { onBackgroundFetch: () => background++ });

    const t1 = await source.get('api', 'read');
    assert.equal(boundTo(t1), x5t(g1.cert), 'the authorization server bound it to the certificate on the connection');
    assert.equal(await source.get('api', 'read'), t1, 'cached');
    assert.equal(await source.bind(t1, g1), t1, 'same generation: unchanged');
    assert.equal(await source.bind('an-agent-token', g2), 'an-agent-token', 'not ours: unchanged');

    // A connection of another generation gets a token fetched with its certificate.
    const t2 = await source.bind(t1, g2);
    assert.notEqual(t2, t1);
    assert.equal(boundTo(t2), x5t(g2.cert));
    assert.equal(await source.bind(t1, g2), t2, 'fetched once');
    assert.deepEqual([source.fetches, background], [1, 1]);

    // Rotation: prefetch with the next certificate, then switch.
    assert.deepEqual(await source.prefetch(g3), { fetched: 1, failed: 0 });
    current = g3;
    source.switched(g3);
    const t3 = await source.get('api', 'read');
    assert.equal(boundTo(t3), x5t(g3.cert));
    assert.deepEqual([source.fetches, background], [1, 2], 'the prefetched token is used: no fetch on the request path');
    assert.equal(await source.bind(t1, g3), t3, 'an old token is rebound to the current generation');

    source.invalidate('api', 'read', t3);
    const t4 = await source.get('api', 'read');
    assert.notEqual(t4, t3, 'a refused token is fetched again');
    assert.equal(boundTo(t4), x5t(g3.cert));
  });

  it('a token bound to another certificate than the one it was fetched with is refused', { timeout: 30_000 }, async () => {
    const fetchedWith = await generation(1);
    const claimed = await issueClientCertificate(ca, 'egress');
    const source = new TokenSource({ endpoint: `${as.url}/token`, clientId: 'egress' }, () => ({ ...fetchedWith, thumbprint: x5t(claimed.cert) }));
    await assert.rejects(source.get('api', 'read'), (error: unknown) => error instanceof TokenFetchError && /another certificate/.test(error.message));
  });
});
