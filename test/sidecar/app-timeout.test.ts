/**
 * The ingress's application response timeout (`appTimeoutMs` / `--app-timeout`): a hung
 * application is answered `504 upstream_timeout` and its request aborted; headers that arrive
 * before the deadline, and a response that keeps streaming after its headers for longer than the
 * timeout, are not cut. Runs agent -> egress -> ingress -> application on 127.0.0.1.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { jwtAccessTokenValidator, localJwks } from '@tether/core';
import { writeDevPki } from '@tether/pki';
import { runIngressCommand, startIngress, SidecarConfigError, type IngressConfig } from '@tether/sidecar';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';
import { startStack } from './helpers/stack.js';

const TIMEOUT_MS = 600;
const STREAM_CHUNKS = 10;
const STREAM_GAP_MS = 120; // 10 chunks, 1.2 s after the headers: twice the timeout
/** Deadline for one agent request: well past every answer these tests expect. */
const REQUEST_DEADLINE_MS = 10_000;

/**
 * The application: `/hang` never answers, `/late` answers 200 after 400 ms (before the 600 ms
 * deadline), `/stream` sends its headers at once and then a chunk every 120 ms for 1.2 s.
 */
async function startSlowApp() {
  const counts = { hangOpen: 0, hangAborted: 0, streamsEnded: 0 };
  const server = createServer((req, res) => {
    const path = (req.url ?? '').split('?')[0];
    req.resume();
    if (path === '/hang') {
      counts.hangOpen++;
      res.on('close', () => {
        counts.hangOpen--;
        if (!res.writableEnded) counts.hangAborted++;
      });
      return;
    }
    if (path === '/late') {
      const timer = setTimeout(() => res.writeHead(200, { 'content-type': 'text/plain' }).end('late but in time'), 400);
      res.on('close', () => clearTimeout(timer));
      return;
    }
    if (path === '/stream') {
      res.writeHead(200, { 'content-type': 'text/event-stream' });
      res.flushHeaders();
      let n = 0;
      const timer = setInterval(() => {
        n++;
        if (n < STREAM_CHUNKS) res.write(`data: ${n}\n\n`);
        else {
          clearInterval(timer);
          res.end(`data: ${n}\n\n`, () => counts.streamsEnded++);
        }
      }, STREAM_GAP_MS);
      res.on('close', () => clearInterval(timer));
      return;
    }
    res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}`,
    counts,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
}

/** One HTTP/1.1 request from the agent to the egress on a fresh connection; fails if not closed within `REQUEST_DEADLINE_MS`. */
function agentGet(port: number, path: string, headers: Record<string, string>): Promise<{ status: number; headers: IncomingHttpHeaders; body: string; complete: boolean; ms: number }> {
  const started = Date.now();
  const req = httpRequest({ host: '127.0.0.1', port, path, headers, agent: false });
  const answered = new Promise<{ status: number; headers: IncomingHttpHeaders; body: string; complete: boolean; ms: number }>((resolve, reject) => {
    req.on('response', (res) => {
      let body = '';
      let complete = false;
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => (complete = true));
      res.on('error', () => undefined);
      res.on('close', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body, complete: complete && res.complete, ms: Date.now() - started }));
    });
    req.on('error', reject);
    req.end();
  });
  return withTimeout(answered, REQUEST_DEADLINE_MS, `GET ${path}: the response did not end`, () => req.destroy());
}

class Lines extends Writable {
  text = '';
  override _write(chunk: Buffer, _encoding: string, callback: () => void): void {
    this.text += chunk.toString('utf8');
    callback();
  }
  records(): Array<Record<string, unknown>> {
    return this.text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

describe('ingress application response timeout', () => {
  it('hung application: 504 upstream_timeout after the timeout, the application sees its request aborted; in time and streaming responses pass', async (t) => {
    const app = await startSlowApp();
    t.after(() => app.close());
    const ingressLog = new Lines();
    const stack = await startStack({ ingress: { upstream: app.url, appTimeoutMs: TIMEOUT_MS, log: { level: 'warn', destination: ingressLog } } });
    t.after(() => stack.close());
    const port = (stack.egress.endpoint as { port: number }).port;
    const token = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
    const bearer = { authorization: `Bearer ${token}` };

    // Hung application.
    const hung = await agentGet(port, '/api/hang?secret=do-not-log', bearer);
    assert.equal(hung.status, 504);
    assert.match(String(hung.headers['content-type']), /^application\/json/);
    assert.equal(hung.headers['cache-control'], 'no-store');
    const body = JSON.parse(hung.body) as { error: string; error_description: string };
    assert.equal(body.error, 'upstream_timeout');
    assert.equal(typeof body.error_description, 'string');
    assert.ok(hung.complete);
    assert.ok(hung.ms >= TIMEOUT_MS - 50, `answered after the timeout (${hung.ms} ms)`);
    assert.ok(hung.ms < TIMEOUT_MS + 1000, `answered within timeout + 1 s (${hung.ms} ms)`);
    await waitFor(() => app.counts.hangAborted === 1, { message: 'the application saw its request aborted' });
    assert.equal(app.counts.hangOpen, 0);
    assert.equal(stack.ingress.stats.failures.upstream_timeout, 1);
    assert.equal(stack.ingress.stats.failures.upstream_error, undefined, 'the cancelled request is not also counted as an application error');
    const metrics = await (await fetch(`${stack.ingress.metrics!.url}/metrics`, { signal: deadline(REQUEST_DEADLINE_MS, 'GET ingress /metrics') })).text();
    assert.match(metrics, /tether_ingress_failures_total\{reason="upstream_timeout"\} 1\b/);
    assert.match(metrics, /tether_ingress_requests_total\{route="app",status="504"\} 1\b/);
    const warned = ingressLog.records().filter((r) => r.msg === 'application response timed out');
    assert.equal(warned.length, 1);
    assert.equal(warned[0]!.level, 40);
    assert.equal(warned[0]!.timeoutMs, TIMEOUT_MS);
    assert.doesNotMatch(ingressLog.text, /do-not-log/, 'no path or query logged');
    assert.ok(!ingressLog.text.includes(token), 'no token logged');

    // Hung application while the agent is still uploading (chunked, never finished): 504 too, the
    // upload is no longer read (the ingress resets its HTTP/2 stream with NO_ERROR after the answer).
    const uploadReq = httpRequest({ host: '127.0.0.1', port, path: '/api/hang', method: 'POST', headers: { ...bearer, 'content-type': 'text/plain' }, agent: false });
    const uploaded = new Promise<{ status: number; body: string }>((resolve, reject) => {
      uploadReq.on('response', (res) => {
        let text = '';
        res.setEncoding('utf8').on('data', (c: string) => (text += c));
        res.on('error', () => undefined);
        res.on('close', () => {
          resolve({ status: res.statusCode ?? 0, body: text });
          uploadReq.destroy();
        });
      });
      uploadReq.on('error', reject);
      uploadReq.write('part of an upload that never ends');
    });
    const upload = await withTimeout(uploaded, REQUEST_DEADLINE_MS, 'POST /api/hang (unfinished upload): no answer', () => uploadReq.destroy());
    assert.equal(upload.status, 504);
    assert.equal((JSON.parse(upload.body) as { error: string }).error, 'upstream_timeout');
    await waitFor(() => app.counts.hangAborted === 2, { message: 'the application saw the second request aborted' });
    assert.equal(stack.ingress.stats.failures.upstream_timeout, 2);
    await waitFor(() => stack.ingress.state().activeRequests === 0, { message: 'the ingress is done with the upload' });

    // Headers shortly before the deadline: answered normally.
    const late = await agentGet(port, '/api/late', bearer);
    assert.equal(late.status, 200);
    assert.equal(late.body, 'late but in time');
    assert.ok(late.complete);

    // Headers at once, body for twice the timeout: not cut.
    const stream = await agentGet(port, '/api/stream', bearer);
    assert.equal(stream.status, 200);
    assert.equal(stream.headers['content-type'], 'text/event-stream');
    assert.ok(stream.complete, 'the stream ended properly');
    assert.equal(stream.body, Array.from({ length: STREAM_CHUNKS }, (_, i) => `data: ${i + 1}\n\n`).join(''));
    assert.ok(stream.ms >= STREAM_CHUNKS * STREAM_GAP_MS - 50, `the stream outlived the timeout (${stream.ms} ms)`);
    assert.equal(app.counts.streamsEnded, 1);

    assert.equal(stack.ingress.stats.failures.upstream_timeout, 2, 'only the hung requests timed out');
    await waitFor(() => stack.ingress.state().activeRequests === 0 && stack.egress.state().activeRequests === 0, { message: 'nothing in flight' });
  });

  it('appTimeoutMs 0 turns it off: an answer slower than a short timeout allows still arrives (the short timeout gives 504)', async (t) => {
    const slowMs = 1000;
    const results: Record<string, { status: number; body: string; ms: number; timeouts: number | undefined }> = {};
    for (const appTimeoutMs of [300, 0]) {
      const stack = await startStack({ ingress: { appTimeoutMs } });
      t.after(() => stack.close());
      const token = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
      const res = await agentGet((stack.egress.endpoint as { port: number }).port, `/api/slow?ms=${slowMs}`, { authorization: `Bearer ${token}` });
      results[appTimeoutMs] = { status: res.status, body: res.body, ms: res.ms, timeouts: stack.ingress.stats.failures.upstream_timeout };
      assert.ok(stack.app.seen.some((r) => r.url === `/slow?ms=${slowMs}`), `appTimeoutMs ${appTimeoutMs}: the request reached the application`);
    }
    // Contrast: 300 ms is too short for this answer.
    assert.equal(results[300]!.status, 504, 'appTimeoutMs 300: the slow answer times out');
    assert.equal((JSON.parse(results[300]!.body) as { error: string }).error, 'upstream_timeout');
    assert.ok(results[300]!.ms < slowMs, `appTimeoutMs 300: answered before the application (${results[300]!.ms} ms)`);
    assert.equal(results[300]!.timeouts, 1);
    // 0: no limit, the same answer arrives.
    assert.equal(results[0]!.status, 200, 'appTimeoutMs 0: the slow answer is relayed');
    assert.equal(results[0]!.body, 'slow done');
    assert.ok(results[0]!.ms >= slowMs - 50, `appTimeoutMs 0: waited for the application (${results[0]!.ms} ms)`);
    assert.equal(results[0]!.timeouts, undefined, 'appTimeoutMs 0: nothing counted as timed out');
  });

  it('the option is validated: negative or non-number values are configuration errors', async (t) => {
    const pki = await testPki();
    const issuer = await TestIssuer.create();
    const base: IngressConfig = {
      listen: '127.0.0.1:0',
      cert: pki.server.cert,
      key: pki.server.key,
      ca: pki.ca.cert,
      upstream: 'http://127.0.0.1:1',
      tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }),
      log: { level: 'silent' },
    };
    for (const bad of [-1, Number.NaN, Infinity, 2 ** 31, '30' as unknown as number]) {
      const started = startIngress({ ...base, appTimeoutMs: bad });
      started.then((unexpected) => unexpected.close(), () => undefined);
      await assert.rejects(started, (error: unknown) => {
        assert.ok(error instanceof SidecarConfigError, String(error));
        assert.match(error.message, /^--app-timeout \(appTimeoutMs\) must be a number from 0 \(no limit\)/);
        return true;
      }, String(bad));
    }

    // The command line: seconds, refused with exit 2 and one line.
    const dir = mkdtempSync(join(tmpdir(), 'tether-app-timeout-'));
    t.after(() => rmSync(dir, { recursive: true, force: true }));
    await writeDevPki(dir, { clients: ['client'] });
    const jwks = join(dir, 'jwks.json');
    writeFileSync(jwks, JSON.stringify(issuer.jwks));
    const args = ['--listen', '127.0.0.1:0', '--cert', join(dir, 'server.pem'), '--key', join(dir, 'server.key'), '--ca', join(dir, 'ca.pem'), '--upstream', 'http://127.0.0.1:1', '--jwks-file', jwks, '--issuer', ISSUER, '--audience', AUDIENCE, '--log-level', 'silent'];
    for (const bad of ['-1', 'soon', 'NaN']) {
      let err = '';
      const sink = { write: (chunk: string) => (err += chunk) };
      const code = await runIngressCommand([...args, `--app-timeout=${bad}`], { stderr: sink, stdout: sink });
      assert.equal(code, 2, bad);
      assert.equal(err, 'tether ingress: --app-timeout must be a number of seconds (see \'tether ingress --help\')\n');
    }
    let err = '';
    const sink = { write: (chunk: string) => (err += chunk) };
    assert.equal(await runIngressCommand([...args, '--app-timeout', '9999999'], { stderr: sink, stdout: sink }), 2);
    assert.match(err, /^tether ingress: --app-timeout \(appTimeoutMs\) must be a number from 0 \(no limit\) of seconds on the command line, milliseconds in the configuration, at most 2147483647 ms \(see 'tether ingress --help'\)\n$/);
  });
});
