import { test } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, createServer as createNetServer, type AddressInfo } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type TLSSocket, type ConnectionOptions } from 'node:tls';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import {
  TlsExporterError,
  createSessionBindingProof,
  deriveSessionExporter,
  sessionBoundTlsOptions,
  verifySessionBindingProof,
  InvalidProofError,
} from '@tether/core';
import { testPki } from '../helpers/pki.js';

interface TlsServer {
  port: number;
  /** Server-side sockets in accept order. */
  sockets: TLSSocket[];
  /** The server side of the `n`th (1-based) connection, once its handshake completed there. */
  accepted(n: number): Promise<TLSSocket>;
  close(): Promise<void>;
}

async function startTlsServer(options: { allowTls12?: boolean } = {}): Promise<TlsServer> {
  const pki = await testPki();
  const sockets: TLSSocket[] = [];
  const waiters: Array<() => void> = [];
  const server = createTlsServer(sessionBoundTlsOptions({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, allowTls12: options.allowTls12 === true }), (socket) => {
    sockets.push(socket);
    for (const w of waiters.splice(0)) w();
    socket.on('error', () => undefined);
    socket.on('data', () => undefined);
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as AddressInfo).port,
    sockets,
    accepted: async (n) => {
      while (sockets.length < n) await new Promise<void>((resolve) => waiters.push(resolve));
      return sockets[n - 1] as TLSSocket;
    },
    close: () =>
      new Promise<void>((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}

async function clientOptions(extra: ConnectionOptions = {}): Promise<ConnectionOptions> {
  const pki = await testPki();
  const c = pki.clients.client!;
  return { host: '127.0.0.1', cert: c.cert, key: c.key, ca: pki.ca.cert, ...extra };
}

async function connect(port: number, extra: ConnectionOptions = {}): Promise<TLSSocket> {
  const socket = tlsConnect({ ...(await clientOptions(extra)), port });
  socket.on('error', () => undefined);
  await once(socket, 'secureConnect');
  return socket;
}

test('TLS 1.3 only by default: a TLS 1.2 client cannot connect', async (t) => {
  const server = await startTlsServer();
  t.after(() => server.close());
  const socket = tlsConnect({ ...(await clientOptions({ maxVersion: 'TLSv1.2' })), port: server.port });
  const [error] = (await once(socket, 'error')) as [Error & { code?: string }];
  assert.match(String(error.code ?? error.message), /VERSION|PROTOCOL|ALERT/i);
});

test('both ends derive the same exporter value on TLS 1.3 and on allowed TLS 1.2', async (t) => {
  const server = await startTlsServer({ allowTls12: true });
  t.after(() => server.close());
  let n = 0;
  for (const version of ['TLSv1.3', 'TLSv1.2'] as const) {
    const socket = await connect(server.port, { minVersion: version, maxVersion: version });
    const serverSocket = await server.accepted(++n);
    assert.equal(socket.getProtocol(), version);
    const clientEkm = deriveSessionExporter(socket, ['TLSv1.3', 'TLSv1.2']);
    const serverEkm = deriveSessionExporter(serverSocket, ['TLSv1.3', 'TLSv1.2']);
    assert.equal(clientEkm.length, 32);
    assert.deepEqual(clientEkm, serverEkm);
    // The default policy refuses TLS 1.2 even when the socket could export.
    if (version === 'TLSv1.2') assert.throws(() => deriveSessionExporter(socket), TlsExporterError);
    socket.destroy();
  }
});

test('on TLS 1.2 the explicit empty context differs from "no context" (why the context is passed)', async (t) => {
  const server = await startTlsServer({ allowTls12: true });
  t.after(() => server.close());
  const socket = await connect(server.port, { maxVersion: 'TLSv1.2' });
  t.after(() => socket.destroy());
  const withEmpty = deriveSessionExporter(socket, ['TLSv1.2']);
  // @types/node marks context as required; at run time omitting it means "no context".
  const withoutContext = (socket.exportKeyingMaterial as (length: number, label: string) => Buffer).call(socket, 32, 'EXPORTER-oauth-tls-session-bound');
  assert.notDeepEqual(withEmpty, withoutContext);
});

test('renegotiation is refused on allowed TLS 1.2', async (t) => {
  const server = await startTlsServer({ allowTls12: true });
  t.after(() => server.close());
  const socket = await connect(server.port, { maxVersion: 'TLSv1.2' });
  t.after(() => socket.destroy());
  const before = socket.getPeerX509Certificate()?.fingerprint256;
  const outcome = await new Promise<Error | null>((resolve) => {
    socket.once('error', resolve);
    const started = socket.renegotiate({}, (err) => resolve(err ?? null));
    if (started === false) resolve(new Error('renegotiate() refused locally'));
  });
  assert.ok(outcome instanceof Error, 'renegotiation must not succeed');
  assert.match(outcome.message, /no renegotiation/);
  assert.equal(socket.getPeerX509Certificate()?.fingerprint256 ?? before, before);
});

test('exporter derivation fails clearly before the handshake, on plaintext and after close', async (t) => {
  const server = await startTlsServer();
  t.after(() => server.close());
  const pending = tlsConnect({ ...(await clientOptions()), port: server.port });
  pending.on('error', () => undefined);
  assert.throws(() => deriveSessionExporter(pending), (e: unknown) => e instanceof TlsExporterError && /handshake not complete/.test(e.message));
  await once(pending, 'secureConnect');
  assert.equal(deriveSessionExporter(pending).length, 32);
  pending.destroy();
  await once(pending, 'close');
  assert.throws(() => deriveSessionExporter(pending), TlsExporterError);

  const plain = createNetServer((s) => s.destroy());
  plain.listen(0, '127.0.0.1');
  await once(plain, 'listening');
  t.after(() => plain.close());
  const raw = netConnect((plain.address() as AddressInfo).port, '127.0.0.1');
  raw.on('error', () => undefined);
  await once(raw, 'connect');
  assert.throws(() => deriveSessionExporter(raw as unknown as TLSSocket), TlsExporterError);
  raw.destroy();
});

test('TLS 1.3 session resumption yields a new exporter value: an old proof fails on the resumed connection', async (t) => {
  const server = await startTlsServer();
  t.after(() => server.close());
  const pki = await testPki();
  const c = pki.clients.client!;
  const first = await connect(server.port);
  // TLS 1.3 tickets arrive after the handshake, as post-handshake messages.
  const [ticket] = (await once(first, 'session')) as [Buffer];
  const ekm1 = deriveSessionExporter(first);
  const certificate = new X509Certificate(c.cert);
  const proof = await createSessionBindingProof({ privateKey: createPrivateKey(c.key), certificate, accessToken: 'token-a', ekm: ekm1 });
  first.destroy();

  const resumed = await connect(server.port, { session: ticket });
  t.after(() => resumed.destroy());
  assert.equal(resumed.isSessionReused(), true, 'the second connection resumed the first session');
  const serverSide = await server.accepted(2);
  const ekm2 = deriveSessionExporter(serverSide);
  assert.notDeepEqual(ekm2, ekm1);
  assert.deepEqual(deriveSessionExporter(resumed), ekm2);
  // The client certificate survives resumption on the server side, so the binding is still checked against it.
  const peer = serverSide.getPeerX509Certificate();
  assert.ok(peer !== undefined);
  await assert.rejects(
    verifySessionBindingProof(proof, { certificate: peer, ekm: ekm2, accessToken: 'token-a' }),
    (e: unknown) => e instanceof InvalidProofError && e.reason === 'ekm_mismatch',
  );
});
