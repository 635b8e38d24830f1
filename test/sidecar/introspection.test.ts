/**
 * `tether ingress --introspection-url` against our own authorization server (`tether as --dev`
 * configuration, in process): the ingress authenticates to the introspection endpoint with
 * tls_client_auth, private_key_jwt or client_secret_basic; a session-bound token from the AS is
 * accepted through the ingress with a SessionBoundClient; a wrong credential is refused and logged
 * at warn with its reason (never the token). Real sockets and TLS on 127.0.0.1 throughout.
 */
import assert from 'node:assert/strict';
import { createPrivateKey, createPublicKey } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer as createHttpsServer, type Server as HttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { pino } from 'pino';
import { SessionBoundClient, type AccessTokenValidator, type IntrospectionFailure } from '@tether/core';
import { devConfig, resolveConfig, startAuthorizationServer, TokenClient, type AuthorizationServer } from '@tether/as';
import { writeDevPki } from '@tether/pki';
import { runIngressCommand } from '@tether/sidecar';
import { startEchoApp, type EchoApp } from './helpers/stack.js';

class Capture {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
  lines(): Array<Record<string, unknown>> {
    return this.text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
  warnings(): Array<Record<string, unknown>> {
    return this.lines().filter((l) => l.msg === 'token introspection failed');
  }
}

async function until(what: string, predicate: () => boolean, ms = 5000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!predicate()) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}

interface RunningIngress {
  url: string;
  log: Capture;
  stop(): Promise<number>;
}

/** `tether ingress ARGS` in process (the commands.ts code path), until `stop()`. */
async function startIngressCommand(args: string[], env: Record<string, string> = {}): Promise<RunningIngress> {
  const log = new Capture();
  const abort = new AbortController();
  let exit!: Promise<number>;
  const ready = new Promise<string>((resolve, reject) => {
    exit = runIngressCommand(args, { stderr: log, stdout: log, env, signal: abort.signal, onReady: (info) => resolve(info.url) });
    exit.then((code) => reject(new Error(`ingress exited early with ${code}: ${log.text}`)), reject);
  });
  const url = await ready;
  return {
    url,
    log,
    stop() {
      abort.abort();
      return exit;
    },
  };
}

describe('ingress introspection against tether as', () => {
  let dir: string;
  let pkiDir: string;
  const file = (name: string) => join(pkiDir, name);
  const read = (name: string) => readFileSync(file(name), 'utf8');
  let as: AuthorizationServer;
  let app: EchoApp;
  let agentAs: TokenClient;
  let client: SessionBoundClient;
  let token: string;

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tether-introspection-'));
    pkiDir = join(dir, 'pki');
    await writeDevPki(pkiDir, { clients: ['agent', 'api'] });
    // Exactly what `tether as --dev --pki DIR --listen 127.0.0.1:0` runs (packages/as/src/cli.ts).
    as = await startAuthorizationServer(resolveConfig(devConfig({ pkiDir, host: '127.0.0.1', port: 0, dataDir: join(dir, 'as-data'), logLevel: 'silent' })), {
      logger: pino({ level: 'silent' }),
      defaultMetrics: false,
    });
    // A resource server that authenticates with private_key_jwt: the ingress's own key (server.key).
    const jwk = createPublicKey(createPrivateKey(read('server.key'))).export({ format: 'jwk' });
    await as.registerClient({ client_id: 'api-jwt', token_endpoint_auth_method: 'private_key_jwt', jwks: { keys: [{ ...jwk }] }, introspection: 'any' });
    app = await startEchoApp();
    agentAs = new TokenClient({ cert: read('agent.pem'), key: read('agent.key'), ca: read('ca.pem') });
    const issued = await agentAs.post(`${as.url}/token`, { grant_type: 'client_credentials', client_id: 'agent', audience: 'api' });
    assert.equal(issued.status, 200, issued.text);
    token = issued.json?.access_token as string;
    client = new SessionBoundClient({ cert: read('agent.pem'), key: read('agent.key'), ca: read('ca.pem'), timeoutMs: 10_000 });
  });

  after(async () => {
    await client?.close();
    agentAs?.close();
    await app?.close();
    await as?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  const ingressArgs = (extra: string[], introspectionUrl = `${as.url}/introspect`) => [
    '--listen', '127.0.0.1:0',
    '--cert', file('server.pem'),
    '--key', file('server.key'),
    '--ca', file('ca.pem'),
    '--upstream', app.url,
    '--jwks-ca', file('ca.pem'),
    '--issuer', as.issuer,
    '--audience', 'api',
    '--log-level', 'info',
    '--introspection-url', introspectionUrl,
    ...extra,
  ];

  /** One request through the ingress with the agent's session-bound token. */
  async function call(url: string, bearer = token): Promise<{ status: number; body: string; wwwAuthenticate: string | undefined }> {
    const r = await client.request(`${url}/hello`, { token: bearer });
    const challenge = r.headers['www-authenticate'];
    return { status: r.status, body: r.body.toString('utf8'), wwwAuthenticate: Array.isArray(challenge) ? challenge.join(', ') : challenge };
  }

  function principalSub(body: string): string {
    const echo = JSON.parse(body) as { headers: Record<string, string> };
    return (JSON.parse(Buffer.from(echo.headers['x-tether-principal'] as string, 'base64url').toString('utf8')) as { sub: string }).sub;
  }

  /** A refusal: 401 invalid_token, and one warn line with the reason, without the token. */
  async function assertRefusedAndLogged(ingress: RunningIngress, expect: Record<string, unknown>, endpoint = `${as.url}/introspect`): Promise<Record<string, unknown>> {
    const r = await call(ingress.url);
    assert.equal(r.status, 401, r.body);
    assert.match(r.wwwAuthenticate ?? '', /error="invalid_token"/);
    assert.ok(!r.body.includes('introspect'), 'nothing about the introspection call reaches the client');
    await until('the warn line', () => ingress.log.warnings().length > 0);
    const line = ingress.log.warnings()[0] as Record<string, unknown>;
    assert.equal(line.level, 40, 'warn');
    assert.equal(line.sidecar, 'ingress');
    assert.equal(line.endpoint, endpoint);
    for (const [k, v] of Object.entries(expect)) assert.equal(line[k], v, `${k} in ${JSON.stringify(line)}`);
    assert.ok(!ingress.log.text.includes(token), 'the token never reaches the logs');
    return line;
  }

  it('tls_client_auth (the default) with the dev PKI: 200 through the ingress, no warning', { timeout: 60_000 }, async () => {
    const ingress = await startIngressCommand(ingressArgs(['--introspection-client-id', 'api', '--introspection-cert', file('api.pem'), '--introspection-key', file('api.key')]));
    try {
      const first = await call(ingress.url);
      assert.equal(first.status, 200, first.body);
      assert.equal(principalSub(first.body), 'agent');
      const garbage = await call(ingress.url, 'not-a-token');
      assert.equal(garbage.status, 401, 'an inactive token is refused');
      assert.deepEqual(ingress.log.warnings(), [], 'an inactive token is not an introspection failure');
    } finally {
      assert.equal(await ingress.stop(), 0);
    }
  });

  it('private_key_jwt signed with the ingress key (--key): 200; the assertion is fresh per call', { timeout: 60_000 }, async () => {
    const ingress = await startIngressCommand(ingressArgs(['--introspection-auth', 'private_key_jwt', '--introspection-client-id', 'api-jwt']));
    try {
      const first = await call(ingress.url);
      assert.equal(first.status, 200, first.body);
      assert.equal(principalSub(first.body), 'agent');
      // A different token needs a second introspection call: a replayed jti would be refused by the AS.
      const other = await agentAs.post(`${as.url}/token`, { grant_type: 'client_credentials', client_id: 'agent', audience: 'api' });
      assert.equal(other.status, 200, other.text);
      const second = await call(ingress.url, other.json?.access_token as string);
      assert.equal(second.status, 200, second.body);
      assert.deepEqual(ingress.log.warnings(), []);
    } finally {
      assert.equal(await ingress.stop(), 0);
    }
  });

  it('client_secret_basic against a local HTTPS introspection endpoint that accepts it: 200; a wrong secret: 401 and a warn line', { timeout: 60_000 }, async () => {
    // The endpoint checks Basic credentials, then asks the real AS (as client `api`, mTLS).
    const upstreamAs = new TokenClient({ cert: read('api.pem'), key: read('api.key'), ca: read('ca.pem') });
    const expected = `Basic ${Buffer.from('rs+1:s3cr%25t').toString('base64')}`;
    const seen: string[] = [];
    const server: HttpsServer = createHttpsServer({ cert: read('server.pem'), key: read('server.key') }, (req, res) => {
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        seen.push(String(req.headers.authorization));
        if (req.headers.authorization !== expected) {
          res.writeHead(401, { 'content-type': 'application/json', 'www-authenticate': 'Basic realm="test"' }).end('{"error":"invalid_client"}');
          return;
        }
        const params = Object.fromEntries(new URLSearchParams(body));
        upstreamAs.post(`${as.url}/introspect`, { token: params.token, client_id: 'api' }).then(
          (r) => res.writeHead(r.status, { 'content-type': 'application/json' }).end(r.text),
          () => res.writeHead(502).end(),
        );
      });
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const endpoint = `https://127.0.0.1:${(server.address() as AddressInfo).port}/introspect`;
    const args = (...extra: string[]) => ingressArgs(extra, endpoint);
    try {
      // "rs 1" and "s3cr%t" are form-urlencoded ("rs+1", "s3cr%25t") before Basic (RFC 6749 section 2.3.1).
      const good = await startIngressCommand(args('--introspection-auth', 'client_secret_basic', '--introspection-client-id', 'rs 1'), { TETHER_INTROSPECTION_SECRET: 's3cr%t' });
      try {
        const r = await call(good.url);
        assert.equal(r.status, 200, r.body);
        assert.equal(principalSub(r.body), 'agent');
        assert.deepEqual(good.log.warnings(), []);
      } finally {
        assert.equal(await good.stop(), 0);
      }
      const bad = await startIngressCommand(args('--introspection-auth', 'client_secret_basic', '--introspection-client-id', 'rs 1'), { TETHER_INTROSPECTION_SECRET: 'wrong' });
      try {
        const line = await assertRefusedAndLogged(bad, { reason: 'http_status', status: 401, error: 'invalid_client', method: 'client_secret_basic' }, endpoint);
        assert.ok(!JSON.stringify(line).includes('wrong'), 'the secret never reaches the logs');
      } finally {
        assert.equal(await bad.stop(), 0);
      }
      assert.ok(seen.includes(expected) && seen.some((s) => s !== expected), `both credentials reached the endpoint: ${seen.join(' | ')}`);
    } finally {
      upstreamAs.close();
      server.closeAllConnections();
      server.close();
    }
  });

  const wrong: Array<[string, () => string[], Record<string, string>, Record<string, unknown>]> = [
    // The reported bug: our AS accepts no HTTP authentication scheme at all.
    ['client_secret_basic at tether as', () => ['--introspection-auth', 'client_secret_basic', '--introspection-client-id', 'api'], { TETHER_INTROSPECTION_SECRET: 'anything' }, { method: 'client_secret_basic' }],
    // The ingress's server certificate (serverAuth only, no client identity): the dev-setup mistake.
    ['tls_client_auth with the ingress server certificate', () => ['--introspection-client-id', 'api'], {}, { method: 'tls_client_auth' }],
    ["tls_client_auth with another client's certificate", () => ['--introspection-client-id', 'api', '--introspection-cert', file('agent.pem'), '--introspection-key', file('agent.key')], {}, { method: 'tls_client_auth' }],
    ['private_key_jwt signed with an unregistered key', () => ['--introspection-auth', 'private_key_jwt', '--introspection-client-id', 'api-jwt', '--introspection-key', file('agent.key')], {}, { method: 'private_key_jwt' }],
    ['private_key_jwt for a tls_client_auth client', () => ['--introspection-auth', 'private_key_jwt', '--introspection-client-id', 'api'], {}, { method: 'private_key_jwt' }],
  ];
  for (const [what, extra, env, expect] of wrong) {
    it(`a wrong credential is refused and logged at warn: ${what}`, { timeout: 60_000 }, async () => {
      const ingress = await startIngressCommand(ingressArgs(extra()), env);
      try {
        await assertRefusedAndLogged(ingress, { reason: 'http_status', status: 401, error: 'invalid_client', err: 'introspection endpoint answered 401 invalid_client', ...expect });
        // Fail closed every time: nothing was cached, and every failed call is logged.
        const again = await call(ingress.url);
        assert.equal(again.status, 401);
        await until('a second warn line', () => ingress.log.warnings().length === 2);
      } finally {
        assert.equal(await ingress.stop(), 0);
      }
    });
  }

  it('an unreachable introspection endpoint is refused and logged (reason network)', { timeout: 60_000 }, async () => {
    const closed = createHttpsServer();
    closed.listen(0, '127.0.0.1');
    await once(closed, 'listening');
    const port = (closed.address() as AddressInfo).port;
    closed.close();
    await once(closed, 'close');
    const ingress = await startIngressCommand(
      ingressArgs(['--introspection-client-id', 'api', '--introspection-cert', file('api.pem'), '--introspection-key', file('api.key')], `https://127.0.0.1:${port}/introspect`),
    );
    try {
      const r = await call(ingress.url);
      assert.equal(r.status, 401);
      await until('the warn line', () => ingress.log.warnings().length > 0);
      const line = ingress.log.warnings()[0] as Record<string, unknown>;
      assert.equal(line.reason, 'network');
      assert.match(String(line.err), /ECONNREFUSED/);
    } finally {
      assert.equal(await ingress.stop(), 0);
    }
  });

  const badArgs: Array<[string, string[], Record<string, string>, RegExp]> = [
    ['no client id', [], {}, /needs --introspection-client-id/],
    ['an unknown method', ['--introspection-client-id', 'api', '--introspection-auth', 'client_secret_post'], {}, /--introspection-auth must be one of tls_client_auth, private_key_jwt, client_secret_basic/],
    ['client_secret_basic without the secret', ['--introspection-client-id', 'api', '--introspection-auth', 'client_secret_basic'], {}, /TETHER_INTROSPECTION_SECRET/],
    ['a certificate with private_key_jwt', ['--introspection-client-id', 'api', '--introspection-auth', 'private_key_jwt', '--introspection-cert', 'x.pem'], {}, /only used with --introspection-auth tls_client_auth/],
    ['a certificate without its key', ['--introspection-client-id', 'api', '--introspection-cert', 'x.pem'], {}, /go together/],
    ['a key that does not match the certificate', ['--introspection-client-id', 'api', '--introspection-cert', 'api.pem', '--introspection-key', 'agent.key'], {}, /does not belong to the certificate/],
  ];
  for (const [what, extra, env, message] of badArgs) {
    it(`configuration error, exit 2: ${what}`, async () => {
      const err = new Capture();
      const resolved = extra.map((a) => (a.endsWith('.pem') || a.endsWith('.key') ? file(a) : a));
      const code = await runIngressCommand(ingressArgs(resolved), { stderr: err, stdout: err, env });
      assert.equal(code, 2, err.text);
      assert.match(err.text, message);
      assert.equal(err.text.trim().split('\n').length, 1, err.text);
    });
  }

  it('introspection options without --introspection-url are refused', async () => {
    const err = new Capture();
    const args = ingressArgs(['--introspection-client-id', 'api']).filter((a, i, all) => a !== '--introspection-url' && all[i - 1] !== '--introspection-url');
    args.push('--jwks-file', file('ca.pem'));
    assert.equal(await runIngressCommand(args, { stderr: err, stdout: err, env: {} }), 2);
    assert.match(err.text, /--introspection-client-id is only used with --introspection-url/);
  });

  it('the core validator reports each failure to onError and still fails closed', { timeout: 30_000 }, async () => {
    const { introspectionValidator } = await import('@tether/core');
    const failures: IntrospectionFailure[] = [];
    const validator: AccessTokenValidator = introspectionValidator({
      endpoint: `${as.url}/introspect`,
      clientAuth: { method: 'tls_client_auth', clientId: 'api', cert: read('agent.pem'), key: read('agent.key') },
      tls: { ca: read('ca.pem') },
      onError: (f) => {
        failures.push(f);
        throw new Error('a throwing hook changes nothing');
      },
    });
    await assert.rejects(validator.validate(token), (e: Error & { reason?: string }) => e.reason === 'introspection_failed');
    assert.deepEqual(failures, [
      { reason: 'http_status', message: 'introspection endpoint answered 401 invalid_client', status: 401, error: 'invalid_client', endpoint: `${as.url}/introspect` },
    ]);
    const ok = introspectionValidator({
      endpoint: `${as.url}/introspect`,
      clientAuth: { method: 'private_key_jwt', clientId: 'api-jwt', key: read('server.key'), audience: `${as.url}/token` },
      tls: { ca: read('ca.pem') },
      onError: (f) => failures.push(f),
    });
    assert.equal((await ok.validate(token)).sub, 'agent', 'aud = the token endpoint is accepted too');
    assert.equal(failures.length, 1);
  });

  it('onError reasons for a bad answer: not_json, malformed, http_status without an error code, timeout', { timeout: 30_000 }, async () => {
    const { introspectionValidator } = await import('@tether/core');
    const { createServer } = await import('node:http');
    const hanging = new Set<import('node:http').ServerResponse>();
    const server = createServer((req, res) => {
      req.resume();
      if (req.url === '/html') res.writeHead(200, { 'content-type': 'application/json' }).end('<html>');
      else if (req.url === '/array') res.writeHead(200, { 'content-type': 'application/json' }).end('[{"active":true}]');
      else if (req.url === '/500') res.writeHead(500, { 'content-type': 'text/plain' }).end('{"error":"with \\"quotes\\""}');
      else hanging.add(res);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
    try {
      const cases: Array<[string, Partial<IntrospectionFailure>, string]> = [
        ['/html', { reason: 'not_json', message: 'introspection response is not JSON' }, 'introspection_failed'],
        ['/array', { reason: 'malformed', message: 'introspection response is not a JSON object' }, 'introspection_malformed'],
        ['/500', { reason: 'http_status', status: 500, message: 'introspection endpoint answered 500' }, 'introspection_failed'],
        ['/hang', { reason: 'timeout', message: 'introspection request timed out' }, 'introspection_failed'],
      ];
      for (const [path, expected, reason] of cases) {
        const failures: IntrospectionFailure[] = [];
        const v = introspectionValidator({ endpoint: `${base}${path}`, timeoutMs: 300, onError: (f) => failures.push(f) });
        await assert.rejects(v.validate('tok'), (e: Error & { reason?: string }) => e.reason === reason, path);
        assert.equal(failures.length, 1, path);
        assert.deepEqual(failures[0], { ...expected, endpoint: `${base}${path}` }, path);
      }
    } finally {
      for (const res of hanging) res.destroy();
      server.closeAllConnections();
      server.close();
    }
  });
});
