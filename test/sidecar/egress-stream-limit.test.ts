/**
 * The egress's upstream pool and the server's SETTINGS_MAX_CONCURRENT_STREAMS: a request never waits
 * for a stream slot behind requests that hold one (a long poll, an upload that does not end). When
 * every HTTP/2 session to the upstream is full the egress opens another connection; once slots are
 * free again, requests go on the existing sessions. A real HTTP/2 upstream with a limit of 2.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { request as httpRequest } from 'node:http';
import { createSecureServer, type Http2SecureServer, type ServerHttp2Session, type ServerHttp2Stream } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { startEgress, type EgressSidecar } from '@tether/sidecar';
import { testPki } from '../helpers/pki.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const REQUEST_DEADLINE_MS = 10_000;
const STREAM_LIMIT = 2;

/** One HTTP/1.1 agent request through the egress on its own connection: status and body. */
function agentGet(port: number, path: string): Promise<{ status: number; body: string }> {
  const req = httpRequest({ host: '127.0.0.1', port, path, agent: false });
  const answered = new Promise<{ status: number; body: string }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  return withTimeout(answered, REQUEST_DEADLINE_MS, `GET ${path}: no complete answer`, () => req.destroy());
}

describe('egress upstream stream limit', () => {
  let egress: EgressSidecar;
  let upstream: Http2SecureServer;
  let port: number;
  /** Upstream sessions in the order they were opened, with the most streams each had open at once. */
  const sessions: Array<{ session: ServerHttp2Session; open: number; peak: number }> = [];
  /** Answers of the /hold streams, run by release(). */
  const held: Array<() => void> = [];

  before(async () => {
    const pki = await testPki();
    upstream = createSecureServer({ cert: pki.server.cert, key: pki.server.key, settings: { maxConcurrentStreams: STREAM_LIMIT } });
    upstream.on('session', (session: ServerHttp2Session) => sessions.push({ session, open: 0, peak: 0 }));
    upstream.on('stream', (stream: ServerHttp2Stream, headers) => {
      stream.on('error', () => undefined);
      const entry = sessions.find((s) => s.session === stream.session)!;
      entry.peak = Math.max(entry.peak, ++entry.open);
      stream.once('close', () => entry.open--);
      const answer = () => {
        if (!stream.destroyed) stream.respond({ ':status': 200 });
        if (!stream.destroyed) stream.end(`session ${sessions.indexOf(entry)}`);
      };
      if (headers[':path']?.startsWith('/hold') === true) held.push(answer);
      else answer();
    });
    upstream.listen(0, '127.0.0.1');
    await once(upstream, 'listening');
    egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [{ name: 'up', upstream: `https://localhost:${(upstream.address() as AddressInfo).port}` }],
      tokenPolicy: 'none',
      drainTimeoutMs: 500,
      log: { level: 'silent' },
    });
    port = (egress.endpoint as { port: number }).port;
  });

  after(async () => {
    for (const answer of held) answer();
    await egress?.close();
    for (const { session } of sessions) session.destroy();
    upstream?.close();
  });

  it('requests beyond the limit of every open session go on a new connection, not into a queue', async () => {
    // The first connection, with the server's SETTINGS known.
    assert.deepEqual(await agentGet(port, '/up/first'), { status: 200, body: 'session 0' });
    // Twice the limit of held requests, one after the other (each reaches the upstream before the next).
    const holding: Array<Promise<{ status: number; body: string }>> = [];
    for (let i = 0; i < 2 * STREAM_LIMIT; i++) {
      holding.push(agentGet(port, `/up/hold?i=${i}`));
      await waitFor(() => held.length === i + 1, { message: () => `held request ${i} at the upstream (${held.length} there, ${sessions.length} sessions)` });
    }
    assert.equal(sessions.length, 2, 'a second connection for the requests the first session had no slot for');
    assert.deepEqual(
      sessions.map((s) => s.peak),
      [STREAM_LIMIT, STREAM_LIMIT],
    );
    assert.equal(egress.stats.upstreamConnectionsOpened, 2);
    assert.equal(egress.state().upstreamSessions, 2);
    // While all slots are held, one more request is not queued either: a third connection.
    assert.deepEqual(await agentGet(port, '/up/more'), { status: 200, body: 'session 2' });
    for (const answer of held.splice(0)) answer();
    const answers = await Promise.all(holding);
    assert.deepEqual(
      answers.map((a) => a.body),
      ['session 0', 'session 0', 'session 1', 'session 1'],
    );
    // Slots free again: the next requests use the sessions already open.
    await waitFor(() => sessions.every((s) => s.open === 0), { message: 'upstream streams closed' });
    for (let i = 0; i < 3; i++) assert.equal((await agentGet(port, `/up/again?i=${i}`)).body, 'session 0');
    assert.equal(egress.stats.upstreamConnectionsOpened, 3, 'no connection opened for requests that found a free slot');
  });
});
