/**
 * Behind a TLS-terminating L7 proxy (issue 15 item 5), measured with a real nginx from Debian's package in front of
 * an ingress. The client's TLS session ends at nginx; nginx opens its own TLS connection to the ingress. A
 * session-bound token therefore fails with a clear 401, never a silent pass:
 * - nginx presents its own client certificate upstream: the token's `x5t#S256` names another certificate
 *   (401 invalid_token);
 * - even an nginx that holds the client's own certificate and key: the proof's `ekm` is the client<->nginx exporter,
 *   not this connection's (401 invalid_proof).
 * An RFC 8705 certificate-bound token sent without a proof, by contrast, passes through an nginx that holds the
 * client's key: what session binding adds. Supported patterns: TCP passthrough (haproxy.test.ts) or terminating TLS at
 * the ingress. (Found on the way: nginx resumes its upstream TLS sessions across locations by default, so an upstream
 * connection can carry the certificate of another location; `proxy_ssl_session_reuse off` keeps them apart.)
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import { join } from 'node:path';
import { parseWwwAuthenticate } from '@tether/core';
import { SessionBoundClient } from '@tether/core/client';
import type { DevPki } from '@tether/pki';
import type { IngressSidecar } from '@tether/sidecar';
import { TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { findBinary, freePort, ProxyProcess } from '../helpers/proxy-process.js';
import { startEchoApp, startTestIngress, type EchoApp } from '../sidecar/helpers/stack.js';

const NGINX = findBinary('/usr/sbin/nginx', '/usr/bin/nginx');

let pki: DevPki;
let issuer: TestIssuer;
let app: EchoApp;
let ingress: IngressSidecar;
let nginx: ProxyProcess;
let port: number;

function nginxConfig(ingressPort: number): string {
  const upstream = (location: string, client: string) => `
    location /${location}/ {
      proxy_pass https://127.0.0.1:${ingressPort}/;
      proxy_http_version 1.1;
      proxy_ssl_protocols TLSv1.3;
      proxy_ssl_certificate {dir}/${client}.pem;
      proxy_ssl_certificate_key {dir}/${client}.key;
      proxy_ssl_trusted_certificate {dir}/ca.pem;
      proxy_ssl_verify on;
      proxy_ssl_name localhost;
      # Each location its own upstream identity: no TLS session resumed across them.
      proxy_ssl_session_reuse off;
    }`;
  return `daemon off;
master_process off;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events { worker_connections 64; }
http {
  access_log off;
  client_body_temp_path {dir}/body;
  proxy_temp_path {dir}/proxy;
  fastcgi_temp_path {dir}/fastcgi;
  uwsgi_temp_path {dir}/uwsgi;
  scgi_temp_path {dir}/scgi;
  server {
    listen 127.0.0.1:${port} ssl;
    ssl_protocols TLSv1.3;
    ssl_certificate {dir}/server.pem;
    ssl_certificate_key {dir}/server.key;
    ssl_client_certificate {dir}/ca.pem;
    ssl_verify_client on;
    ${upstream('own-cert', 'proxy')}
    ${upstream('client-cert', 'client')}
  }
}
`;
}

before(async () => {
  assert.ok(NGINX, "nginx is installed (.ci/run installs Debian's nginx)");
  pki = await testPki();
  issuer = await TestIssuer.create();
  app = await startEchoApp();
  ingress = await startTestIngress(pki, issuer, app.url, { minimumBinding: 'certificate', drainTimeoutMs: 1000 });
  port = await freePort();
  const files: Record<string, string> = {
    'ca.pem': pki.ca.cert,
    'server.pem': pki.server.cert,
    'server.key': pki.server.key,
    'client.pem': pki.clients.client!.cert,
    'client.key': pki.clients.client!.key,
    'proxy.pem': pki.clients.other!.cert,
    'proxy.key': pki.clients.other!.key,
  };
  nginx = await ProxyProcess.start({
    binary: NGINX,
    args: ['-p', '{dir}', '-c', '{dir}/nginx.conf', '-e', '{dir}/error.log'],
    config: { name: 'nginx.conf', text: nginxConfig(Number(new URL(ingress.url).port)) },
    host: '127.0.0.1',
    port,
    beforeStart: (dir) => {
      for (const [name, text] of Object.entries(files)) writeFileSync(join(dir, name), text, { mode: 0o600 });
    },
  });
});

after(async () => {
  await nginx?.stop();
  await ingress?.close();
  await app?.close();
});

async function viaNginx(location: string, token: string): Promise<{ status: number; error: string | undefined; proofsSigned: number }> {
  const client = new SessionBoundClient({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert, protocol: 'http/1.1', timeoutMs: 10_000 });
  try {
    const response = await client.request(`https://127.0.0.1:${port}/${location}/items/1`, { token });
    const challenge = response.headers['www-authenticate'];
    const error = typeof challenge === 'string' ? parseWwwAuthenticate(challenge)[0]?.params.error : undefined;
    return { status: response.status, error, proofsSigned: client.stats.proofsSigned };
  } finally {
    await client.close();
  }
}

describe('nginx terminating TLS (L7) in front of an ingress', () => {
  it('a session-bound token through an nginx with its own certificate: 401 invalid_token (another certificate)', async () => {
    const token = await issuer.sessionBound(pki.clients.client!.cert);
    const r = await viaNginx('own-cert', token);
    assert.deepEqual([r.status, r.error], [401, 'invalid_token'], nginx.log('error.log'));
  });

  it("a session-bound token through an nginx holding the client's own key: 401 invalid_proof (another connection's exporter)", async () => {
    const token = await issuer.sessionBound(pki.clients.client!.cert);
    const before = { ...ingress.verifier.stats };
    const r = await viaNginx('client-cert', token);
    assert.deepEqual([r.status, r.error], [401, "invalid_proof"], JSON.stringify(ingress.verifier.stats.failures) + nginx.log("error.log"));
    assert.equal(r.proofsSigned, 2, 'the client tried a fresh proof once, refused again');
    assert.equal(ingress.verifier.stats.requests - before.requests, 2, 'both attempts reached the ingress');
    assert.equal(ingress.verifier.stats.accepted, before.accepted, 'and were refused there');
    assert.equal(app.seen.length, 0, 'nothing reached the application');
  });

  it('an RFC 8705 certificate-bound token (no proof) through the same nginx is accepted: what session binding adds', async () => {
    const token = await issuer.certificateBound(pki.clients.client!.cert);
    const { cert, key } = pki.clients.client!;
    const status = await new Promise<number>((resolve, reject) => {
      const req = httpsRequest(`https://127.0.0.1:${port}/client-cert/items/2`, { cert, key, ca: pki.ca.cert, headers: { authorization: `Bearer ${token}` }, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('timeout', () => req.destroy(new Error('timed out')));
      req.on('error', reject);
      req.end();
    });
    assert.equal(status, 200, JSON.stringify(ingress.verifier.stats.failures));
    assert.equal(app.seen.length, 1);
  });
});
