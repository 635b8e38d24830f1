import { test } from 'node:test';
import assert from 'node:assert/strict';
import { createServer, type AddressInfo } from 'node:net';
import { once } from 'node:events';
import { SessionBoundClient } from '@tether/core/client';
import { testPki } from '../helpers/pki.js';

test('a peer that never completes the TLS handshake fails the request after timeoutMs (HTTP/2 and HTTP/1.1)', async (t) => {
  const held: import('node:net').Socket[] = [];
  const server = createServer((s) => held.push(s)); // accepts TCP, never speaks TLS
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  t.after(() => {
    for (const s of held) s.destroy();
    server.close();
  });
  const pki = await testPki();
  const url = `https://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  for (const protocol of ['h2', 'http/1.1'] as const) {
    const client = new SessionBoundClient({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert, protocol, timeoutMs: 300 });
    const started = Date.now();
    await assert.rejects(client.request(url, { token: 'abc' }), /timed out/);
    assert.ok(Date.now() - started < 5000);
    await client.close();
  }
});
