/**
 * The `tether egress` / `tether ingress` command functions: files on disk, structured logs,
 * graceful shutdown, and configuration errors (exit 2, one line, no stack).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { writeDevPki } from '@tether/pki';
import { runEgressCommand, runIngressCommand } from '@tether/sidecar';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { startEchoApp, type EchoApp } from './helpers/stack.js';

class Capture {
  text = '';
  write(chunk: string): boolean {
    this.text += chunk;
    return true;
  }
  lines(): Array<Record<string, unknown>> {
    return this.text
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

function started(run: (onReady: (info: { url: string; metricsUrl: string | undefined }) => void) => Promise<number>) {
  let exit!: Promise<number>;
  const ready = new Promise<{ url: string; metricsUrl: string | undefined }>((resolve, reject) => {
    exit = run(resolve);
    exit.then((code) => reject(new Error(`command exited early with ${code}`)), reject);
  });
  return { ready, exit: () => exit };
}

describe('sidecar commands', () => {
  let dir: string;
  let app: EchoApp;
  let issuer: TestIssuer;
  let files: { ca: string; serverCert: string; serverKey: string; clientCert: string; clientKey: string; otherKey: string; jwks: string };

  before(async () => {
    dir = mkdtempSync(join(tmpdir(), 'tether-sidecar-'));
    await writeDevPki(dir, { clients: ['client', 'other'] });
    issuer = await TestIssuer.create();
    const jwks = join(dir, 'jwks.json');
    writeFileSync(jwks, JSON.stringify(issuer.jwks));
    files = {
      ca: join(dir, 'ca.pem'),
      serverCert: join(dir, 'server.pem'),
      serverKey: join(dir, 'server.key'),
      clientCert: join(dir, 'client.pem'),
      clientKey: join(dir, 'client.key'),
      otherKey: join(dir, 'other.key'),
      jwks,
    };
    app = await startEchoApp();
  });

  after(async () => {
    await app?.close();
    rmSync(dir, { recursive: true, force: true });
  });

  it('run both commands, log structured lines, and drain in-flight requests on shutdown', async () => {
    const stopIngress = new AbortController();
    const stopEgress = new AbortController();
    const ingressLog = new Capture();
    const egressLog = new Capture();
    const ingress = started((onReady) =>
      runIngressCommand(
        ['--listen', '127.0.0.1:0', '--cert', files.serverCert, '--key', files.serverKey, '--ca', files.ca, '--upstream', app.url, '--jwks-file', files.jwks, '--issuer', ISSUER, '--audience', AUDIENCE, '--metrics-listen', '127.0.0.1:0', '--log-level', 'info'],
        { stderr: ingressLog, stdout: ingressLog, signal: stopIngress.signal, onReady },
      ),
    );
    const { url: ingressUrl } = await ingress.ready;
    const egress = started((onReady) =>
      runEgressCommand(
        ['--listen', '127.0.0.1:0', '--cert', files.clientCert, '--key', files.clientKey, '--ca', files.ca, '--route', `api=${ingressUrl}`, '--audience', `api=${AUDIENCE}`, '--route', `other=${ingressUrl}`, '--metrics-listen', '127.0.0.1:0'],
        { stderr: egressLog, stdout: egressLog, signal: stopEgress.signal, onReady },
      ),
    );
    const { url: egressUrl, metricsUrl } = await egress.ready;
    const { readFileSync } = await import('node:fs');
    const token = await issuer.sessionBound(readFileSync(files.clientCert, 'utf8'));

    const ok = await fetch(`${egressUrl}/api/x`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(ok.status, 200);
    await ok.arrayBuffer();
    const denied = await fetch(`${egressUrl}/other/x`, { headers: { authorization: `Bearer ${token}` } });
    assert.equal(denied.status, 403);
    await denied.arrayBuffer();

    // An in-flight request survives shutdown of both sidecars.
    const slow = fetch(`${egressUrl}/api/slow`, { headers: { authorization: `Bearer ${token}` } });
    await new Promise((r) => setTimeout(r, 100));
    stopEgress.abort();
    stopIngress.abort();
    const res = await slow;
    assert.equal(res.status, 200);
    assert.equal(await res.text(), 'slow done');
    assert.equal(await egress.exit(), 0);
    assert.equal(await ingress.exit(), 0);
    await assert.rejects(fetch(`${egressUrl}/api/x`, { headers: { authorization: `Bearer ${token}` } }), 'the listener is closed');
    await assert.rejects(fetch(`${metricsUrl}/healthz`), 'the metrics listener is closed');

    const egressLines = egressLog.lines();
    assert.ok(egressLines.some((l) => l.msg === 'egress ready' && l.sidecar === 'egress'));
    const violation = egressLines.find((l) => l.msg === 'policy violation: request refused');
    assert.equal(violation?.reason, 'audience_mismatch');
    assert.equal(violation?.route, 'other');
    assert.ok(egressLines.some((l) => l.msg === 'egress stopped'));
    assert.ok(!egressLog.text.includes(token), 'tokens never reach the logs');
    assert.ok(ingressLog.lines().some((l) => l.msg === 'ingress stopped'));
  });

  it('ingress token sources from the command line: --jwks-url and --introspection-url', async () => {
    const { createServer: createHttpServer } = await import('node:http');
    const { X509Certificate } = await import('node:crypto');
    const { readFileSync } = await import('node:fs');
    const { SessionBoundClient, sessionBoundConfirmation } = await import('@tether/core');
    const clientCert = readFileSync(files.clientCert, 'utf8');
    const introspected: string[] = [];
    const as = createHttpServer((req, res) => {
      if (req.url === '/jwks') {
        res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuer.jwks));
        return;
      }
      let body = '';
      req.setEncoding('utf8').on('data', (c: string) => (body += c));
      req.on('end', () => {
        introspected.push(String(req.headers.authorization));
        const token = new URLSearchParams(body).get('token');
        const active = token === 'opaque-good';
        const now = Math.floor(Date.now() / 1000);
        res.writeHead(200, { 'content-type': 'application/json' }).end(
          JSON.stringify(active ? { active, sub: 'opaque-user', client_id: 'client', aud: AUDIENCE, iss: ISSUER, exp: now + 600, cnf: sessionBoundConfirmation(new X509Certificate(clientCert)) } : { active: false }),
        );
      });
    });
    await new Promise<void>((r) => as.listen(0, '127.0.0.1', r));
    const asUrl = `http://127.0.0.1:${(as.address() as { port: number }).port}`;
    const common = ['--listen', '127.0.0.1:0', '--cert', files.serverCert, '--key', files.serverKey, '--ca', files.ca, '--upstream', app.url, '--log-level', 'silent'];
    const variants: Array<{ args: string[]; token: string; sub: string; env?: Record<string, string> }> = [
      { args: ['--jwks-url', `${asUrl}/jwks`, '--issuer', ISSUER, '--audience', AUDIENCE], token: await issuer.sessionBound(clientCert, { sub: 'jwt-user' }), sub: 'jwt-user' },
      { args: ['--introspection-url', `${asUrl}/introspect`, '--introspection-client-id', 'rs', '--audience', AUDIENCE], token: 'opaque-good', sub: 'opaque-user', env: { TETHER_INTROSPECTION_SECRET: 's3cret' } },
    ];
    const client = new SessionBoundClient({ cert: clientCert, key: readFileSync(files.clientKey, 'utf8'), ca: readFileSync(files.ca, 'utf8') });
    try {
      for (const v of variants) {
        const stop = new AbortController();
        const run = started((onReady) => runIngressCommand([...common, ...v.args], { stderr: new Capture(), signal: stop.signal, onReady, ...(v.env === undefined ? {} : { env: v.env }) }));
        const { url } = await run.ready;
        const ok = await client.request(`${url}/x`, { token: v.token });
        assert.equal(ok.status, 200, ok.body.toString());
        const echo = JSON.parse(ok.body.toString('utf8')) as { headers: Record<string, string> };
        assert.equal((JSON.parse(Buffer.from(echo.headers['x-tether-principal']!, 'base64url').toString()) as { sub: string }).sub, v.sub);
        const bad = await client.request(`${url}/x`, { token: 'opaque-bad' });
        assert.equal(bad.status, 401);
        stop.abort();
        assert.equal(await run.exit(), 0);
      }
      assert.ok(introspected.length >= 1);
      assert.equal(introspected[0], `Basic ${Buffer.from('rs:s3cret').toString('base64')}`);
    } finally {
      await client.close();
      as.close();
    }
  });

  const base = () => ['--cert', files.clientCert, '--key', files.clientKey, '--ca', files.ca];
  const badEgress: Array<[string, () => string[], RegExp]> = [
    ['a routable listen address', () => ['--listen', '0.0.0.0:0', ...base(), '--route', 'a=https://localhost:1'], /loopback/],
    ['no route', () => ['--listen', '127.0.0.1:0', ...base()], /--route/],
    ['a plain-http route', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=http://localhost:1'], /https/],
    ['a missing certificate file', () => ['--listen', '127.0.0.1:0', '--cert', '/nonexistent/c.pem', '--key', files.clientKey, '--route', 'a=https://localhost:1'], /cannot read --cert/],
    ['a key that does not match the certificate', () => ['--listen', '127.0.0.1:0', '--cert', files.clientCert, '--key', files.otherKey, '--route', 'a=https://localhost:1'], /does not belong/],
    ['an unknown option', () => ['--listen', '127.0.0.1:0', '--bogus'], /^tether egress: unknown option --bogus \(see 'tether egress --help'\)$/m],
    ['--token-endpoint without --egress-token', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1', '--token-endpoint', 'https://as.example/token', '--client-id', 'x'], /--egress-token/],
    ['an egress token for an unknown route', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1', '--token-endpoint', 'https://as.example/token', '--client-id', 'x', '--egress-token', 'b'], /unknown route b/],
    ['a plain-http token endpoint', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1', '--token-endpoint', 'http://as.example/token', '--client-id', 'x', '--egress-token', 'a'], /https/],
    ['a bad listen address', () => ['--listen', 'nowhere', ...base(), '--route', 'a=https://localhost:1'], /HOST:PORT/],
    ['a negative --connect-retry', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1', '--connect-retry=-1'], /--connect-retry \(connectRetryMs\) must be/],
    ['a negative --upstream-timeout', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1', '--upstream-timeout=-1'], /^tether egress: --upstream-timeout \(upstreamTimeoutMs\) must be/],
    ['a non-number --agent-idle-timeout', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1', '--agent-idle-timeout', 'soon'], /--agent-idle-timeout \(agentIdleTimeoutMs\)/],
    ['a bad --retry-buffer', () => ['--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1', '--retry-buffer', '1k'], /--retry-buffer \(retryBufferBytes\)/],
  ];
  for (const [what, args, message] of badEgress) {
    it(`egress refuses ${what} with exit 2 and one line`, async () => {
      const err = new Capture();
      const code = await runEgressCommand(args(), { stderr: err, stdout: err });
      assert.equal(code, 2);
      assert.match(err.text, message);
      assert.equal(err.text.trim().split('\n').length, 1, err.text);
    });
  }

  const badIngress: Array<[string, () => string[], RegExp]> = [
    ['no token source', () => ['--listen', '127.0.0.1:0', '--cert', files.serverCert, '--key', files.serverKey, '--ca', files.ca, '--upstream', app.url], /jwks/],
    ['a non-http upstream', () => ['--listen', '127.0.0.1:0', '--cert', files.serverCert, '--key', files.serverKey, '--ca', files.ca, '--upstream', 'ftp://x', '--jwks-file', files.jwks, '--issuer', ISSUER, '--audience', AUDIENCE], /upstream/],
    ['a JWKS without issuer', () => ['--listen', '127.0.0.1:0', '--cert', files.serverCert, '--key', files.serverKey, '--ca', files.ca, '--upstream', app.url, '--jwks-file', files.jwks], /--issuer/],
    ['a JWKS file that is not JSON', () => ['--listen', '127.0.0.1:0', '--cert', files.serverCert, '--key', files.serverKey, '--ca', files.ca, '--upstream', app.url, '--jwks-file', files.ca, '--issuer', ISSUER, '--audience', AUDIENCE], /not JSON/],
    ['--max-requests-per-connection 0', () => ['--listen', '127.0.0.1:0', '--cert', files.serverCert, '--key', files.serverKey, '--ca', files.ca, '--upstream', app.url, '--jwks-file', files.jwks, '--issuer', ISSUER, '--audience', AUDIENCE, '--max-requests-per-connection', '0'], /--max-requests-per-connection/],
  ];
  for (const [what, args, message] of badIngress) {
    it(`ingress refuses ${what} with exit 2 and one line`, async () => {
      const err = new Capture();
      const code = await runIngressCommand(args(), { stderr: err, stdout: err });
      assert.equal(code, 2);
      assert.match(err.text, message);
      assert.equal(err.text.trim().split('\n').length, 1, err.text);
    });
  }

  it('a port in use is a runtime failure (exit 1)', async () => {
    const blocker = createServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    const port = (blocker.address() as { port: number }).port;
    const err = new Capture();
    try {
      const code = await runEgressCommand(['--listen', `127.0.0.1:${port}`, ...base(), '--route', 'a=https://localhost:1'], { stderr: err, stdout: err });
      assert.equal(code, 1);
      assert.match(err.text, /EADDRINUSE/);
    } finally {
      blocker.close();
    }
  });

  it('a real process drains and exits 0 on SIGTERM', async () => {
    const entry = fileURLToPath(new URL('./helpers/entry.ts', import.meta.url));
    const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', entry, 'egress', '--listen', '127.0.0.1:0', ...base(), '--route', 'a=https://localhost:1'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    const ready = new Promise<void>((resolve) =>
      child.stderr.setEncoding('utf8').on('data', (c: string) => {
        stderr += c;
        if (stderr.includes('"egress ready"')) resolve();
      }),
    );
    const closed = new Promise<{ code: number | null; signal: string | null }>((resolve) => child.on('close', (code, signal) => resolve({ code, signal })));
    try {
      await Promise.race([ready, closed.then(() => assert.fail(`exited early: ${stderr}`))]);
      child.kill('SIGTERM');
      const { code } = await closed;
      assert.equal(code, 0, stderr);
      assert.match(stderr, /"egress stopped"/);
    } finally {
      if (child.exitCode === null) child.kill('SIGKILL');
    }
  });

  it('in a child process a bad configuration exits 2 with one line and no stack', async () => {
    const entry = fileURLToPath(new URL('./helpers/entry.ts', import.meta.url));
    const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', entry, 'egress', '--listen', '0.0.0.0:8080', ...base(), '--route', 'a=https://x'], {
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    let stderr = '';
    child.stderr.setEncoding('utf8').on('data', (c: string) => (stderr += c));
    const code = await new Promise<number | null>((resolve) => child.on('close', (c) => resolve(c)));
    assert.equal(code, 2);
    assert.equal(stderr.trim().split('\n').length, 1, stderr);
    assert.match(stderr, /^tether egress: .*loopback/);
    assert.doesNotMatch(stderr, /\n\s+at /);
  });
});
