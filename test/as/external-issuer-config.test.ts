/** `trustedIssuers` configuration: what resolves, with which defaults, and each refusal with its path. */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { ConfigError, loadConfigFile, resolveConfig, type AuthorizationServerConfig } from '@tether/as';
import type { DevPki } from '@tether/pki';
import { JWT_TYPE, asPki, baseConfig, removeDir, standardClient, tempDir } from './helpers/setup.js';

const ISS = 'https://idp.example/realms/acme';

describe('trustedIssuers configuration', () => {
  let pki: DevPki;
  let dir: string;
  let caFile: string;

  before(async () => {
    pki = await asPki();
    dir = tempDir('tether-idp-config-');
    caFile = join(dir, 'idp-ca.pem');
    writeFileSync(caFile, pki.ca.cert);
    writeFileSync(join(dir, 'not-pem.txt'), 'hello');
  });
  after(() => removeDir(dir));

  const entry = (over: Record<string, unknown> = {}) => ({ issuer: ISS, discovery: true, audiences: ['mcp'], clients: ['a'], caFiles: [caFile], ...over });
  const config = (entries: unknown[], over: Partial<AuthorizationServerConfig> = {}) =>
    baseConfig(pki, dir, {
      clients: [standardClient('a'), { client_id: 'pkj', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ kty: 'EC', crv: 'P-256', x: 'MKBCTNIcKUSDii11ySs3526iDZ8AiTo7Tu6KPAqv7D4', y: '4Etl6SRW2YiLUrN5vfvVHuhp7x8PxltmWWlbbM4IFyM' }] } }],
      trustedIssuers: entries as AuthorizationServerConfig['trustedIssuers'],
      ...over,
    });

  function issues(input: unknown): string[] {
    try {
      resolveConfig(input, dir);
    } catch (error) {
      assert.ok(error instanceof ConfigError, String(error));
      return [...error.issues];
    }
    assert.fail('the configuration was accepted');
  }

  const expectIssue = (input: unknown, pattern: RegExp) => {
    const found = issues(input);
    assert.ok(found.some((i) => pattern.test(i)), `${pattern} not in:\n${found.join('\n')}`);
  };

  test('a minimal entry resolves with its defaults', () => {
    const c = resolveConfig(config([entry()]), dir);
    const t = c.trustedIssuers[0]!;
    assert.equal(t.issuer, ISS);
    assert.deepEqual(t.keys, { discovery: `${ISS}/.well-known/openid-configuration` });
    assert.deepEqual(t.algorithms, ['RS256', 'ES256', 'PS256', 'EdDSA']);
    assert.deepEqual([...t.subjectTokenTypes], ['urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:id_token']);
    assert.equal(t.ca.length, 1);
    assert.deepEqual(t.claims, []);
    const j = resolveConfig(config([entry({ discovery: false, jwksUri: `${ISS}/certs`, caFiles: [] })]), dir).trustedIssuers[0]!;
    assert.deepEqual(j.keys, { jwksUri: `${ISS}/certs` });
    assert.deepEqual(j.ca, []);
  });

  test('a config file resolves caFiles relative to its directory', () => {
    const file = join(dir, 'as.json');
    writeFileSync(file, JSON.stringify(config([entry({ caFiles: ['idp-ca.pem'] })], { dataDir: dir })));
    assert.equal(loadConfigFile(file).trustedIssuers[0]!.ca[0], pki.ca.cert);
  });

  test('refusals found in resolution, each with its path', () => {
    expectIssue(config([entry({ issuer: 'http://idp.example' })]), /^trustedIssuers\[0\]\.issuer: must be an https URL/);
    expectIssue(config([entry({ jwksUri: `${ISS}/certs` })]), /^trustedIssuers\[0\]: exactly one of jwksUri and discovery: true/);
    expectIssue(config([entry({ discovery: false })]), /^trustedIssuers\[0\]: exactly one of jwksUri and discovery: true/);
    expectIssue(config([entry({ discovery: false, jwksUri: 'http://idp.example/certs' })]), /^trustedIssuers\[0\]\.jwksUri: must be an https URL/);
    expectIssue(config([entry({ caFiles: ['missing.pem'] })]), /^trustedIssuers\[0\]\.caFiles\[0\]: cannot read .*missing\.pem: ENOENT/);
    expectIssue(config([entry({ caFiles: ['not-pem.txt'] })]), /^trustedIssuers\[0\]\.caFiles\[0\]: no PEM certificate found/);
    expectIssue(config([entry({ claims: ['email', 'cnf'] })]), /^trustedIssuers\[0\]\.claims\[1\]: 'cnf' is reserved/);
    for (const reserved of ['iss', 'aud', 'exp', 'act', 'client_id', 'scope', 'sub_id', 'acr']) expectIssue(config([entry({ claims: [reserved] })]), new RegExp(`'${reserved}' is reserved`));
    expectIssue(config([entry({ algorithms: ['none'] })]), /^trustedIssuers\[0\]\.algorithms\[0\]: none is never accepted/);
    expectIssue(config([entry({ algorithms: ['ES256', 'HS256'] })]), /^trustedIssuers\[0\]\.algorithms\[1\]: HS256 is never accepted/);
    expectIssue(config([entry({ algorithms: ['XS1'] })]), /^trustedIssuers\[0\]\.algorithms\[0\]: unsupported algorithm XS1/);
    expectIssue(config([entry({ clients: ['a', 'pkj'] })]), /^trustedIssuers\[0\]\.clients\[1\]: client 'pkj' authenticates with private_key_jwt/);
    expectIssue(config([entry(), entry()]), /^trustedIssuers\[1\]\.issuer: duplicate issuer/);
    expectIssue(config([entry({ clients: ['cc'] })], { clients: [standardClient('cc', { grant_types: ['client_credentials'] })] }), /^trustedIssuers\[0\]\.clients\[0\]: client 'cc' does not have the token-exchange grant type/);
    expectIssue(config([entry()], { tokenExchange: { enabled: false } }), /^trustedIssuers: needs tokenExchange\.enabled/);
    expectIssue(config([entry({ issuer: 'https://as.example' })], { issuer: 'https://as.example' }), /^trustedIssuers\[0\]\.issuer: is this server’s own issuer/);
  });

  test('refusals found by the schema', () => {
    expectIssue(config([entry({ audiences: [] })]), /^trustedIssuers\[0\]\.audiences: /);
    expectIssue(config([entry({ clients: [] })]), /^trustedIssuers\[0\]\.clients: /);
    expectIssue(config([entry({ subjectTokenTypes: [JWT_TYPE] })]), /^trustedIssuers\[0\]\.subjectTokenTypes\[0\]: /);
    expectIssue(config([entry({ issuer: 'not a url' })]), /^trustedIssuers\[0\]\.issuer: /);
    expectIssue(config([entry({ extra: true })]), /^trustedIssuers\[0\]: .*extra/);
    expectIssue(config([{ issuer: ISS, discovery: true, clients: ['a'] }]), /^trustedIssuers\[0\]\.audiences: /);
  });
});
