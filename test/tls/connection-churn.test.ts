import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as tlsConnect } from 'node:tls';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { createSessionBindingProof, deriveSessionExporter } from '@tether/core';
import { testPki } from '../helpers/pki.js';
import { TestIssuer } from '../helpers/issuer.js';
import { startEchoServer, testVerifier } from '../helpers/servers.js';

const CYCLES = Number(process.env.CHURN_CYCLES ?? 10_000);
const PARALLEL = 8;

test(`bindings vanish with their connections: ${CYCLES} connect/request/close cycles leave the cache empty`, async (t) => {
  const pki = await testPki();
  const issuer = await TestIssuer.create();
  const client = pki.clients.client!;
  const server = await startEchoServer(pki, testVerifier(issuer), { protocol: 'http/1.1' });
  t.after(() => server.close());
  const token = await issuer.sessionBound(client.cert);
  const privateKey = createPrivateKey(client.key);
  const certificate = new X509Certificate(client.cert);
  const port = server.port;
  let ok = 0;
  let peakCache = 0;

  async function cycle(): Promise<void> {
    const socket = tlsConnect({ host: '127.0.0.1', port, cert: client.cert, key: client.key, ca: pki.ca.cert });
    await once(socket, 'secureConnect');
    const proof = await createSessionBindingProof({ privateKey, certificate, accessToken: token, ekm: deriveSessionExporter(socket) });
    socket.write(`GET /churn HTTP/1.1\r\nHost: 127.0.0.1:${port}\r\nAuthorization: Bearer ${token}\r\nSession-Binding-Proof: ${proof}\r\nConnection: close\r\n\r\n`);
    let response = '';
    socket.setEncoding('utf8');
    socket.on('data', (d: string) => (response += d));
    await once(socket, 'close');
    if (response.startsWith('HTTP/1.1 200')) ok++;
    else if (process.env.CHURN_DEBUG) console.log(JSON.stringify(response.slice(0, 300)));
    peakCache = Math.max(peakCache, server.verifier.cache.size);
  }

  let next = 0;
  await Promise.all(
    Array.from({ length: PARALLEL }, async () => {
      while (next++ < CYCLES) await cycle();
    }),
  );
  assert.equal(ok, CYCLES, 'every honest request succeeded');
  assert.equal(server.verifier.stats.proofVerifications, CYCLES, 'one full verification per connection');
  assert.ok(peakCache >= 1, 'bindings were cached while connections were open');
  // Server-side close events can trail the client's by a tick.
  for (let i = 0; i < 100 && server.verifier.cache.size > 0; i++) await new Promise((r) => setTimeout(r, 10));
  assert.equal(server.verifier.cache.size, 0);
  assert.equal(server.verifier.cache.connections, 0);
});
