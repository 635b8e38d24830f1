/**
 * A Session-Binding Proof is sent on every request of its token. With tether's HPACK table size on
 * both sides (sessionBoundTlsOptions advertises it, SessionBoundClient compresses up to it), the
 * proofs of 20 tokens stay in the server's table and a repeated proof costs a byte or two on the
 * wire; in Node's default 4 KiB they evict each other and every request carries its proof again.
 * Measured as the bytes the server reads per request, real TLS and HTTP/2 on loopback.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import { SESSION_BOUND_HEADER_TABLE_SIZE } from '@tether/core';
import { SessionBoundClient } from '@tether/core/client';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import { testPki } from '../helpers/pki.js';
import { TestIssuer } from '../helpers/issuer.js';
import { testVerifier } from '../helpers/servers.js';

const TOKENS = 20;
const ROUNDS = 3;

/** Bytes the server read per request over ROUNDS rounds of TOKENS tokens, after a first round that sent every proof once. */
async function bytesPerRepeatedRequest(headerTableSize: number): Promise<number> {
  const pki = await testPki();
  const issuer = await TestIssuer.create();
  const options = sessionBoundTlsOptions({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert });
  const sockets: TLSSocket[] = [];
  const server = createSecureServer(
    { ...options, settings: { ...options.settings, headerTableSize } },
    sessionBoundHandler(testVerifier(issuer), (_req, res) => {
      res.end('ok');
    }),
  );
  server.on('secureConnection', (socket: TLSSocket) => sockets.push(socket));
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/r`;
  const client = new SessionBoundClient({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert });
  try {
    const tokens = await Promise.all(Array.from({ length: TOKENS }, (_, i) => issuer.sessionBound(pki.clients.client!.cert, { sub: `user-${i}` })));
    const round = async () => {
      for (const token of tokens) assert.equal((await client.request(url, { token })).status, 200);
    };
    await round();
    const read = () => sockets.reduce((n, s) => n + s.bytesRead, 0);
    const before = read();
    for (let r = 0; r < ROUNDS; r++) await round();
    assert.equal(sockets.length, 1, 'one connection carried every request');
    assert.equal(client.stats.proofsSigned, TOKENS, 'one proof per token');
    return (read() - before) / (ROUNDS * TOKENS);
  } finally {
    await client.close();
    server.close();
    for (const s of sockets) s.destroy();
  }
}

test('the server options advertise the session-bound HPACK table size', () => {
  const options = sessionBoundTlsOptions({});
  assert.equal(options.settings.headerTableSize, SESSION_BOUND_HEADER_TABLE_SIZE);
  assert.ok(SESSION_BOUND_HEADER_TABLE_SIZE > 4096);
});

test('HPACK: proofs repeated on a connection travel indexed with the session-bound table, literally in 4 KiB', async (t) => {
  const indexed = await bytesPerRepeatedRequest(SESSION_BOUND_HEADER_TABLE_SIZE);
  const evicted = await bytesPerRepeatedRequest(4096);
  t.diagnostic(`bytes read per repeated request: ${indexed.toFixed(0)} with ${SESSION_BOUND_HEADER_TABLE_SIZE}, ${evicted.toFixed(0)} with 4096`);
  // A proof is about 350 base64url characters, about 260 bytes Huffman-coded.
  assert.ok(evicted - indexed > 200, `bytes read per repeated request: ${indexed.toFixed(0)} with ${SESSION_BOUND_HEADER_TABLE_SIZE}, ${evicted.toFixed(0)} with 4096`);
});
