import { test } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import fc from 'fast-check';
import { ConfigError, loadConfigFile } from '@tether/as';
import { baseConfig, asPki, removeDir, startTestAs, tempDir, TOKEN_EXCHANGE } from './helpers/setup.js';

const OAUTH_ERRORS = new Set([
  'invalid_request',
  'invalid_client',
  'invalid_grant',
  'unauthorized_client',
  'unsupported_grant_type',
  'invalid_scope',
  'invalid_target',
  'invalid_dpop_proof',
]);

const NAMES = ['grant_type', 'client_id', 'scope', 'audience', 'resource', 'subject_token', 'subject_token_type', 'actor_token', 'actor_token_type', 'requested_token_type', 'tmb', 'client_assertion', 'client_assertion_type'];
const VALUES = ['client_credentials', TOKEN_EXCHANGE, 'urn:ietf:params:oauth:token-type:access_token', 'a', 'b', 'read', '{"x5t#S256":"AAAA"}', 'eyJhbGciOiJub25lIn0.e30.', ''];

test('token endpoint: random form bodies get an RFC 6749 error or a token, never a 5xx', async (t) => {
  const as = await startTestAs();
  t.after(() => as.close());
  const params = fc.dictionary(
    fc.oneof(fc.constantFrom(...NAMES), fc.string({ maxLength: 12 })),
    fc.oneof(fc.constantFrom(...VALUES), fc.string({ maxLength: 64 }), fc.array(fc.constantFrom(...VALUES), { minLength: 2, maxLength: 3 })),
    { maxKeys: 8 },
  );
  await fc.assert(
    fc.asyncProperty(params, async (form) => {
      const r = await as.post('a', '/token', form);
      assert.ok([200, 400, 401, 413].includes(r.status), `status ${r.status} for ${JSON.stringify(form)}: ${r.text}`);
      if (r.status !== 200) {
        const error = (r.json as { error?: unknown } | undefined)?.error;
        assert.ok(typeof error === 'string' && OAUTH_ERRORS.has(error), `error ${String(error)} for ${JSON.stringify(form)}`);
      }
    }),
    { numRuns: 150, seed: 20261122 },
  );
});

test('configuration files: random JSON is either accepted or refused with a ConfigError, never another exception', async (t) => {
  const pki = await asPki();
  const dir = tempDir('tether-as-fuzz-');
  t.after(() => removeDir(dir));
  const valid = baseConfig(pki, join(dir, 'data')) as unknown as Record<string, unknown>;
  const file = join(dir, 'config.json');
  // Mutations of a valid configuration reach deeper than random documents would.
  const mutated = fc
    .tuple(fc.constantFrom(...Object.keys(valid)), fc.jsonValue({ maxDepth: 3 }))
    .map(([key, value]) => ({ ...valid, [key]: value }));
  await fc.assert(
    fc.property(fc.oneof(fc.jsonValue({ maxDepth: 4 }), mutated, fc.string({ maxLength: 64 })), (doc) => {
      writeFileSync(file, typeof doc === 'string' ? doc : JSON.stringify(doc));
      try {
        loadConfigFile(file);
      } catch (error) {
        assert.ok(error instanceof ConfigError, `unexpected ${String(error)}`);
        assert.ok(error.message.length > 0);
      }
    }),
    { numRuns: 300, seed: 20261122 },
  );
});
