/**
 * The matrix load generator cannot hang (issue 13 item 6): against a real HTTP/2 and HTTP/1.1 TLS
 * server that accepts requests and never answers, every request ends at its deadline (status 0, the
 * stream cancelled or the connection destroyed, seen by the server), and a run that misses its
 * deadline fails naming the requests still outstanding.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createPrivateKey, generateKeyPairSync, X509Certificate } from 'node:crypto';
import { createSecureServer, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { BenchFailure } from '../../bench/children.js';
import { Outstanding, withRunDeadline } from '../../bench/deadline.js';
import type { LoadCredentials } from '../../bench/load/connection.js';
import { H1Conn } from '../../bench/load/h1.js';
import { closeH2, h2Get, openH2 } from '../../bench/load/h2.js';
import { publicJwkOf } from '@tether/core/dpop';
import { testPki } from '../helpers/pki.js';

async function silentServer() {
  const pki = await testPki();
  const client = pki.clients.client as { cert: string; key: string };
  const streams: ServerHttp2Stream[] = [];
  const h1: Array<{ destroyed: boolean }> = [];
  const server = createSecureServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, allowHTTP1: true, minVersion: 'TLSv1.3' }, (req) => {
    // Never answers. HTTP/2 requests keep their stream; HTTP/1.1 ones their socket.
    if (req.stream !== undefined) streams.push(req.stream);
    else h1.push(req.socket);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const dpopKey = generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey;
  const creds: LoadCredentials = {
    certPem: client.cert,
    keyPem: client.key,
    caPem: pki.ca.cert,
    privateKey: createPrivateKey(client.key),
    certificate: new X509Certificate(client.cert),
    dpopKey,
    dpopJwk: publicJwkOf(dpopKey),
  };
  const target = { host: '127.0.0.1', port: (server.address() as AddressInfo).port, path: '/resource' };
  const sockets = new Set<{ destroy(): void }>();
  server.on('secureConnection', (socket: { destroy(): void }) => sockets.add(socket));
  const close = () => {
    for (const socket of sockets) socket.destroy();
    return new Promise<void>((resolve) => server.close(() => resolve()));
  };
  return { creds, target, streams, h1, close, server };
}

test('an HTTP/2 request without an answer ends at its deadline with status 0 and its stream cancelled', { timeout: 20_000 }, async () => {
  const s = await silentServer();
  try {
    const conn = await openH2(s.creds, s.target);
    const started = Date.now();
    const status = await h2Get(conn, s.target, { authorization: 'Bearer x' }, 300);
    const waited = Date.now() - started;
    assert.equal(status, 0);
    assert.ok(waited >= 290 && waited < 5000, `waited ${waited} ms`);
    assert.equal(s.streams.length, 1);
    if (!s.streams[0]!.closed) await once(s.streams[0]!, 'close');
    assert.equal(s.streams[0]!.rstCode, 8, 'the server saw RST_STREAM(CANCEL)');
    await closeH2(conn);
  } finally {
    await s.close();
  }
});

test('an HTTP/1.1 request without an answer ends at its deadline with status 0 and its connection destroyed', { timeout: 20_000 }, async () => {
  const s = await silentServer();
  try {
    const conn = new H1Conn(s.creds, s.target);
    await conn.ready();
    const status = await conn.get(s.target, { authorization: 'Bearer x' }, false, 300);
    assert.equal(status, 0);
    assert.equal(conn.socket.destroyed, true);
  } finally {
    await s.close();
  }
});

test('a run that misses its deadline fails naming its outstanding requests; one that does not, returns its result', { timeout: 20_000 }, async () => {
  const s = await silentServer();
  try {
    const conn = await openH2(s.creds, s.target);
    const outstanding = new Outstanding();
    const run = async () => {
      const ids = [outstanding.begin('h2 stream, request 0 of 2'), outstanding.begin('h2 stream, request 1 of 2')];
      await Promise.all([h2Get(conn, s.target, { authorization: 'Bearer x' }, 5000), h2Get(conn, s.target, { authorization: 'Bearer y' }, 5000)]);
      for (const id of ids) outstanding.end(id);
      return 'done';
    };
    const failure = await withRunDeadline('cell test/bearer', 300, outstanding, run()).then(
      () => assert.fail('the run should have missed its deadline'),
      (e: unknown) => e,
    );
    assert.ok(failure instanceof BenchFailure);
    assert.equal(failure.code, 'deadline_missed');
    assert.match(failure.message, /^cell test\/bearer missed its 300 ms deadline; 2 requests outstanding: h2 stream, request 0 of 2 \(waiting \d+ ms\); h2 stream, request 1 of 2 \(waiting \d+ ms\)$/);
    conn.session.destroy();
    assert.equal(await withRunDeadline('quick', 5000, new Outstanding(), Promise.resolve(42)), 42);
  } finally {
    await s.close();
  }
});
