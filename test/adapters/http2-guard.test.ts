/**
 * guardHttp2Session: a rapid-reset burst costs the abuser its connection (and leaves no CLOSE-WAIT
 * socket behind), honest clients are served during and right after it, a session nghttp2 stopped
 * reading is found by an unanswered PING, an idle session is closed, and an honest client that
 * cancels a few streams is left alone.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, createSecureServer, type Http2SecureServer, type ServerHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { before, describe, it } from 'node:test';
import { guardHttp2Session, type Http2GuardOptions } from '@tether/core/node';
import type { DevPki } from '@tether/pki';
import { rapidReset } from '../helpers/h2-rapid-reset.js';
import { testPki } from '../helpers/pki.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

interface Guarded {
  server: Http2SecureServer;
  port: number;
  sessions: Set<ServerHttp2Session>;
  destroyed: string[];
  /** Requests the handler received. */
  readonly requests: number;
  close(): Promise<void>;
}

async function guardedServer(pki: DevPki, options: Http2GuardOptions = {}): Promise<Guarded> {
  const sessions = new Set<ServerHttp2Session>();
  const destroyed: string[] = [];
  let requests = 0;
  const server = createSecureServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, allowHTTP1: true }, (req, res) => {
    requests++;
    if (req.url === '/hang') return; // never answered: cancelled by the client
    res.end('ok');
  });
  server.on('session', (session) => {
    sessions.add(session);
    session.once('close', () => sessions.delete(session));
    guardHttp2Session(session, { ...options, onDestroy: (reason) => destroyed.push(reason) });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    server,
    port: (server.address() as AddressInfo).port,
    sessions,
    destroyed,
    get requests() {
      return requests;
    },
    async close() {
      for (const s of sessions) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** One GET over a new connection; resolves with the body. */
async function honestGet(pki: DevPki, port: number, path = '/'): Promise<string> {
  const client = connect(`https://localhost:${port}`, { cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert });
  client.on('error', () => undefined);
  try {
    const req = client.request({ ':path': path });
    req.setEncoding('utf8');
    let body = '';
    req.on('data', (chunk: string) => (body += chunk));
    await withTimeout(once(req, 'end'), 5000, `honest request to ${path}`);
    return body;
  } finally {
    client.destroy();
  }
}

describe('guardHttp2Session', () => {
  let pki: DevPki;
  before(async () => {
    pki = await testPki();
  });

  const tls = () => ({ cert: pki.clients.client!.cert, key: pki.clients.client!.key, ca: pki.ca.cert });

  for (const streams of [500, 5000]) {
    it(`rapid reset of ${streams} streams: the abuser's connection is closed at once, honest clients are served`, async () => {
      const g = await guardedServer(pki);
      try {
        const attack = await rapidReset('127.0.0.1', g.port, tls(), streams);
        const during = honestGet(pki, g.port);
        await withTimeout(attack.closed, 3000, 'the server to close the abuser connection');
        assert.equal(await during, 'ok', 'served during the burst');
        assert.deepEqual(g.destroyed, ['rapid_reset']);
        assert.equal(await honestGet(pki, g.port), 'ok', 'served right after it');
        await waitFor(() => g.sessions.size === 0, { timeoutMs: 3000, message: 'no session left on the server' });
      } finally {
        await g.close();
      }
    });
  }

  it('a session nghttp2 stopped reading (its own rapid-reset limit) is found by an unanswered PING', async () => {
    // A budget above nghttp2's 1000: nghttp2 gives up first and stops reading; without the guard
    // the socket stays in CLOSE-WAIT for the life of the process.
    const g = await guardedServer(pki, { resetBurst: 100_000, resetsPerSecond: 100_000, pingTimeoutMs: 500 });
    try {
      const attack = await rapidReset('127.0.0.1', g.port, tls(), 3000);
      attack.socket.end(); // the abuser half-closes; nobody on the server side would read the FIN
      await withTimeout(attack.closed, 5000, 'the deaf session to be destroyed');
      // Node 20 leaves the session deaf and the guard's PING finds it; Node 24 closes such a session itself (the guard
      // then has nothing to do). Either way the connection is gone within the deadline.
      if (Number(process.versions.node.split('.')[0]) < 24) assert.deepEqual(g.destroyed, ['ping_timeout']);
      else assert.ok(g.destroyed.length === 0 || (g.destroyed.length === 1 && g.destroyed[0] === 'ping_timeout'), String(g.destroyed));
      await waitFor(() => g.sessions.size === 0, { timeoutMs: 3000, message: 'no session left on the server' });
      assert.equal(await honestGet(pki, g.port), 'ok');
    } finally {
      await g.close();
    }
  });

  it('an honest client that cancels a few streams keeps its session', async () => {
    const g = await guardedServer(pki);
    const client = connect(`https://localhost:${g.port}`, tls());
    client.on('error', () => undefined);
    try {
      for (let i = 0; i < 20; i++) {
        const req = client.request({ ':path': '/hang' });
        req.on('error', () => undefined);
        await waitFor(() => g.requests === i + 1, { timeoutMs: 5000, message: `the server to receive request ${i}` });
        req.close(0x8);
        await withTimeout(once(req, 'close'), 5000, `stream ${i} to close`);
      }
      const req = client.request({ ':path': '/' });
      req.setEncoding('utf8');
      let body = '';
      req.on('data', (chunk: string) => (body += chunk));
      await withTimeout(once(req, 'end'), 5000, 'request after 20 cancels');
      assert.equal(body, 'ok');
      assert.deepEqual(g.destroyed, []);
      assert.equal(g.sessions.size, 1);
    } finally {
      client.destroy();
      await g.close();
    }
  });

  it('a quiet session with a stream in flight is PINGed in every quiet period, not closed', async () => {
    const g = await guardedServer(pki, { idleTimeoutMs: 150 });
    const client = connect(`https://localhost:${g.port}`, tls());
    client.on('error', () => undefined);
    let pings = 0;
    client.on('ping', () => pings++);
    try {
      const req = client.request({ ':path': '/hang' });
      req.on('error', () => undefined);
      await waitFor(() => pings >= 3, { timeoutMs: 5000, message: `three liveness PINGs (saw ${pings})` });
      assert.deepEqual(g.destroyed, []);
      assert.equal(client.closed, false);
    } finally {
      client.destroy();
      await g.close();
    }
  });

  it('an idle session is closed after idleTimeoutMs', async () => {
    const g = await guardedServer(pki, { idleTimeoutMs: 300 });
    const client = connect(`https://localhost:${g.port}`, tls());
    client.on('error', () => undefined);
    try {
      const req = client.request({ ':path': '/' });
      req.resume();
      await withTimeout(once(req, 'end'), 5000, 'first request');
      const started = Date.now();
      await withTimeout(once(client, 'close'), 5000, 'the idle session to be closed');
      assert.ok(Date.now() - started >= 200, 'not before the idle timeout');
      await waitFor(() => g.sessions.size === 0, { timeoutMs: 3000, message: 'no session left on the server' });
    } finally {
      client.destroy();
      await g.close();
    }
  });
});

