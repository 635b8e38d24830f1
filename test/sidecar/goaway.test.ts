/**
 * An upstream HTTP/2 server sends GOAWAY but does not close its connection: the egress lets the
 * streams the GOAWAY covers finish, then closes that connection itself, sends new requests over a
 * new connection, and its state gauges (`upstreamSessions`, `connectionStates`, `cachedProofs`)
 * fall back to the live values. Two upstreams: a plain Node HTTP/2 server (it closes its side once
 * the egress has closed its own), and one that never closes its side at all (its sockets' `end()`
 * does nothing and a FIN is not answered), so only the egress can end the connection.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { constants as h2, createSecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo, Socket } from 'node:net';
import { it } from 'node:test';
import { startEgress } from '@tether/sidecar';
import { testPki } from '../helpers/pki.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function until(condition: () => boolean, timeoutMs = 2000): Promise<boolean> {
  const deadline = Date.now() + timeoutMs;
  while (!condition() && Date.now() < deadline) await sleep(10);
  return condition();
}

interface UpstreamSession {
  n: number;
  session: ServerHttp2Session;
  socket: Socket;
  streams: number;
  /** The egress ended its side of the connection (FIN). */
  finReceived: boolean;
  sessionClosed: boolean;
  socketClosed: boolean;
}

function agentGet(port: number, path: string): Promise<{ status: number; body: string; complete: boolean }> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, headers: { authorization: 'Bearer opaque-test-token' }, agent: false }, (res) => {
      let body = '';
      let complete = false;
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => (complete = true));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, body, complete: complete && res.complete }));
    });
    req.on('error', reject);
    req.end();
  });
}

for (const neverCloses of [false, true]) {
  const title = neverCloses ? 'an upstream that never closes its side' : 'a plain HTTP/2 upstream';
  it(`GOAWAY from ${title}: the in-flight stream completes, the egress closes the connection, new requests use a new one`, async (t) => {
    const pki = await testPki();
    const sessions: UpstreamSession[] = [];
    let goawaySent: (() => void) | undefined;
    const goaway = new Promise<void>((resolve) => (goawaySent = resolve));
    let release: (() => void) | undefined;
    const released = new Promise<void>((resolve) => (release = resolve));
    // mTLS HTTP/2 upstream (core API): `/goaway` sends GOAWAY(NO_ERROR, this stream) and answers
    // only when released; it never closes or destroys a session itself.
    const server = createSecureServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true, allowHalfOpen: neverCloses });
    const sockets: Socket[] = [];
    // Before the HTTP/2 server's own listener, which starts the session.
    server.prependListener('secureConnection', (socket: Socket) => {
      sockets.push(socket);
      // The server's graceful close ends the socket: here it never does (no close_notify, no FIN).
      if (neverCloses) {
        socket.end = function end() {
          return this;
        };
      }
    });
    server.on('session', (session) => {
      // (session.socket is a proxy that refuses listeners: use the socket seen just before.)
      const entry: UpstreamSession = { n: sessions.length + 1, session, socket: sockets[sockets.length - 1]!, streams: 0, finReceived: false, sessionClosed: false, socketClosed: false };
      sessions.push(entry);
      session.on('error', () => undefined);
      session.on('close', () => (entry.sessionClosed = true));
      entry.socket.on('end', () => (entry.finReceived = true));
      entry.socket.on('close', () => (entry.socketClosed = true));
    });
    server.on('stream', (stream: ServerHttp2Stream, headers) => {
      stream.on('error', () => undefined);
      const entry = sessions.find((s) => s.session === stream.session)!;
      entry.streams++;
      const path = String(headers[':path']);
      stream.resume();
      if (path === '/goaway') {
        stream.session!.goaway(h2.NGHTTP2_NO_ERROR, stream.id!);
        goawaySent!();
        void released.then(() => {
          stream.respond({ ':status': 200, 'content-type': 'text/plain' });
          stream.end(`in flight done on session ${entry.n}`);
        });
        return;
      }
      stream.respond({ ':status': 200, 'content-type': 'text/plain' });
      stream.end(`ok on session ${entry.n}`);
    });
    server.listen(0, '127.0.0.1');
    await once(server, 'listening');
    t.after(async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      for (const socket of sockets) socket.destroy();
      await closed;
    });

    const egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [{ name: 'up', upstream: `https://127.0.0.1:${(server.address() as AddressInfo).port}` }],
      tokenPolicy: 'none',
      drainTimeoutMs: 500,
      log: { level: 'silent' },
    });
    t.after(() => egress.close());
    const port = (egress.endpoint as { port: number }).port;
    // One Bearer token: one proof cached per live connection.
    const live = (open: number) => ({ connectionStates: open, cachedProofs: open, upstreamSessions: open, agentConnections: 0, agentSessions: 0, activeRequests: 0 });

    const warm = await agentGet(port, '/up/warm');
    assert.equal(warm.status, 200);
    assert.equal(warm.body, 'ok on session 1');
    assert.ok(await until(() => egress.state().agentConnections === 0));
    assert.deepEqual(egress.state(), live(1));

    // The in-flight request is covered by the GOAWAY (lastStreamID = its stream).
    const inFlight = agentGet(port, '/up/goaway');
    await goaway;
    await sleep(50); // the GOAWAY reaches the egress
    // A request after the GOAWAY goes to a new connection while the old one still has a stream open.
    const during = await agentGet(port, '/up/during');
    assert.equal(during.status, 200);
    assert.equal(during.body, 'ok on session 2');
    assert.equal(sessions[0]!.finReceived, false, 'the old connection waits for its in-flight stream');
    assert.equal(egress.state().upstreamSessions, 2, 'the closing session is held until its stream is done');
    release!();
    const done = await inFlight;
    assert.equal(done.status, 200);
    assert.equal(done.body, 'in flight done on session 1');
    assert.ok(done.complete);

    // The egress ended the old connection (the upstream never closed it) and forgot it.
    assert.ok(await until(() => sessions[0]!.finReceived, 1000), 'the upstream saw the egress end the GOAWAY connection');
    if (!neverCloses) assert.ok(await until(() => sessions[0]!.sessionClosed && sessions[0]!.socketClosed, 1000), 'the upstream session and socket closed');
    // (Without an answer to its FIN the egress destroys the socket after a 1 s grace.)
    assert.ok(await until(() => egress.state().upstreamSessions === 1 && egress.state().agentConnections === 0, 2500), `state back to one live session: ${JSON.stringify(egress.state())}`);
    assert.deepEqual(egress.state(), live(1));
    assert.equal(egress.stats.upstreamConnectionsOpen, 1);
    if (neverCloses) assert.equal(sessions[0]!.socketClosed, false, 'the upstream really kept its side open');

    const next = await agentGet(port, '/up/next');
    assert.equal(next.status, 200);
    assert.equal(next.body, 'ok on session 2');
    assert.equal(sessions.length, 2);
    assert.equal(sessions[0]!.streams, 2, 'the GOAWAY connection carried only the warm-up and the in-flight request');
    assert.equal(sessions[1]!.finReceived, false);
    assert.ok(await until(() => egress.state().agentConnections === 0));
    assert.deepEqual(egress.state(), live(1));
    assert.equal(egress.stats.upstreamConnectionsOpened, 2);
    assert.equal(egress.stats.upstreamConnectionsOpen, 1);
    assert.equal(egress.stats.failures.upstream_unavailable, undefined);
  });
}
