// The connection context must read the client certificate without touching the TLS session's
// peer chain: Node's getPeerX509Certificate() lifts the chain's certificates out of the session
// and never frees them (a leak per mTLS connection; bench/results/soak.md, root cause). A chain
// still intact after the context was built shows the context did not call it.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import type { AddressInfo } from 'node:net';
import { connect, createServer, type TLSSocket } from 'node:tls';
import { X509Certificate } from 'node:crypto';
import { certificateThumbprint } from '@tether/core';
import { sessionBoundTlsOptions } from '@tether/core/node';
import { tlsConnectionContext } from '@tether/core/verifier';
import { testPki } from '../helpers/pki.js';

const pki = await testPki();
const client = pki.clients.client as { cert: string; key: string };

test('the connection context reads the client certificate and leaves the peer chain in the TLS session', { timeout: 15_000 }, async (t) => {
  const seen = new Promise<{ fingerprint?: string; thumbprint?: string; issuerBefore?: string; issuerAfter?: string }>((resolve) => {
    const server = createServer(sessionBoundTlsOptions({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert }), (socket: TLSSocket) => {
      socket.on('error', () => undefined);
      // The client sent its CA after its leaf (OpenSSL's automatic chain from `ca`): the case that leaked.
      const issuerBefore = String(socket.getPeerCertificate(true).issuerCertificate?.subject?.CN);
      const context = tlsConnectionContext(socket);
      // Only now the leaking call, once: it still finds the chain only if the context left it alone.
      const issuerAfter = socket.getPeerX509Certificate()?.issuerCertificate?.subject;
      resolve({ fingerprint: context.certificate?.fingerprint256, thumbprint: context.thumbprint, issuerBefore, issuerAfter });
      socket.end();
    });
    t.after(() => server.close());
    server.listen(0, '127.0.0.1', () => {
      const socket = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, cert: client.cert, key: client.key, ca: pki.ca.cert, checkServerIdentity: () => undefined });
      socket.on('data', () => undefined);
      socket.on('error', () => undefined);
      socket.on('end', () => socket.end());
      t.after(() => socket.destroy());
    });
  });
  const result = await seen;
  const leaf = new X509Certificate(client.cert);
  assert.equal(result.fingerprint, leaf.fingerprint256);
  assert.equal(result.thumbprint, certificateThumbprint(leaf));
  assert.equal(result.issuerBefore, 'tether development CA', 'the client sent a chain beyond its leaf');
  assert.match(result.issuerAfter ?? 'none', /CN=tether development CA/, 'the peer chain is still in the TLS session');
});

test('a connection context on a socket closed before the handshake has no certificate', async () => {
  const server = createServer(sessionBoundTlsOptions({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert }));
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  try {
    const socket = connect({ host: '127.0.0.1', port: (server.address() as AddressInfo).port, ca: pki.ca.cert });
    socket.on('error', () => undefined);
    socket.destroy();
    const context = tlsConnectionContext(socket);
    assert.equal(context.certificate, undefined);
    assert.equal(context.closed, true);
  } finally {
    server.close();
  }
});
