/**
 * `tether as` and `tether resource` as real child processes (the CLI from source through tsx):
 * exactly one JSON ready line on stdout (`listening` first, `metrics` with --metrics-listen,
 * `pid`), logs on stderr, and the operations listener's /healthz, /readyz and /metrics, including
 * readiness that is not (yet, or any more) given: a JWKS URL that cannot be fetched, and draining
 * after SIGTERM. Every child is killed by PID in teardown.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { createServer, request as httpRequest, type Server } from 'node:http';
import { createServer as createTcpServer } from 'node:net';
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join, resolve } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { writeDevPki } from '@tether/pki';
import { TokenClient } from '@tether/as';
import { mintDevToken, writeDevIssuer, type DevIssuer } from '@tether/cli';

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), '../..');
const BIN = join(ROOT, 'packages/cli/src/bin.ts');
const READY_MS = 30_000;
const children = new Set<ChildProcess>();

/** `tether ARGS` from source in a child process: stdout lines, stderr text, exit. */
class Tether {
  readonly lines: string[] = [];
  stderr = '';
  readonly exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  readonly #waiters: Array<() => void> = [];

  constructor(readonly args: string[]) {
    this.child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', BIN, ...args], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
    children.add(this.child);
    this.exited = new Promise((r) =>
      this.child.on('exit', (code, signal) => {
        r({ code, signal });
        this.#wake();
      }),
    );
    this.child.stderr?.setEncoding('utf8').on('data', (c: string) => (this.stderr += c));
    createInterface({ input: this.child.stdout as NodeJS.ReadableStream }).on('line', (line) => {
      this.lines.push(line);
      this.#wake();
    });
  }

  readonly child: ChildProcess;

  #wake(): void {
    for (const w of this.#waiters.splice(0)) w();
  }

  /** The first stdout line, parsed; fails when the process exits first or after `READY_MS`. */
  async ready(): Promise<Record<string, unknown>> {
    const deadline = Date.now() + READY_MS;
    while (this.lines.length === 0) {
      if (this.child.exitCode !== null || this.child.signalCode !== null) throw new Error(`tether ${this.args[0]} exited before its ready line: ${this.stderr}`);
      if (Date.now() > deadline) throw new Error(`tether ${this.args[0]}: no ready line within ${READY_MS} ms: ${this.stderr}`);
      await new Promise<void>((r) => {
        this.#waiters.push(r);
        setTimeout(r, 200).unref();
      });
    }
    return JSON.parse(this.lines[0] as string) as Record<string, unknown>;
  }

  /** Send `signal` by PID ('none': it was sent already) and wait for the exit (SIGKILL after 10 s). */
  async stop(signal: NodeJS.Signals | 'none' = 'SIGTERM'): Promise<{ code: number | null; signal: NodeJS.Signals | null }> {
    const pid = this.child.pid as number;
    if (signal !== 'none' && this.child.exitCode === null && this.child.signalCode === null) process.kill(pid, signal);
    const timer = setTimeout(() => this.child.exitCode === null && process.kill(pid, 'SIGKILL'), 10_000);
    try {
      return await this.exited;
    } finally {
      clearTimeout(timer);
    }
  }
}

interface PlainResponse {
  status: number;
  body: string;
}

/** One plain HTTP GET on its own connection, 5 s timeout. */
function get(url: string): Promise<PlainResponse> {
  return new Promise((resolvePromise, reject) => {
    const req = httpRequest(url, { agent: false, timeout: 5000 }, (res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolvePromise({ status: res.statusCode ?? 0, body }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`GET ${url}: no answer within 5 s`)));
    req.on('error', reject);
    req.end();
  });
}

/** Poll `check` every 20 ms until it returns a value, or fail after `timeoutMs` naming `what`. */
async function until<T>(what: string, check: () => Promise<T | undefined>, timeoutMs = 10_000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: unknown;
  for (;;) {
    try {
      const value = await check();
      if (value !== undefined) return value;
    } catch (error) {
      last = error;
    }
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}${last === undefined ? '' : ` (last error: ${String(last)})`}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

const dir = mkdtempSync(join(tmpdir(), 'tether-ready-'));
const pki = join(dir, 'pki');
const f = (name: string) => join(pki, name);
let issuer: DevIssuer;

before(async () => {
  await writeDevPki(pki, { clients: ['agent', 'tool'] });
  issuer = writeDevIssuer(join(dir, 'issuer'));
});

after(() => {
  for (const child of children) {
    if (child.pid !== undefined && child.exitCode === null && child.signalCode === null) process.kill(child.pid, 'SIGKILL');
  }
  rmSync(dir, { recursive: true, force: true });
});

describe('tether as', () => {
  test('one ready line {listening, issuer, metrics, pid}; /healthz, /readyz, /metrics with the status of each token response; logs on stderr; SIGTERM exits 0', async () => {
    const as = new Tether(['as', '--dev', '--pki', pki, '--listen', '127.0.0.1:0', '--data', join(dir, 'as-data'), '--metrics-listen', '127.0.0.1:0']);
    const ready = await as.ready();
    assert.deepEqual(Object.keys(ready), ['listening', 'issuer', 'metrics', 'pid']);
    assert.match(ready.listening as string, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(ready.issuer, ready.listening);
    assert.match(ready.metrics as string, /^http:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(ready.pid, as.child.pid);
    const ops = ready.metrics as string;

    const health = await get(`${ops}/healthz`);
    assert.deepEqual([health.status, JSON.parse(health.body)], [200, { status: 'ok' }]);
    const readyz = await get(`${ops}/readyz`);
    assert.deepEqual([readyz.status, JSON.parse(readyz.body)], [200, { status: 'ready' }]);

    const agent = new TokenClient({ cert: readFileSync(f('agent.pem')), key: readFileSync(f('agent.key')), ca: readFileSync(f('ca.pem')) });
    try {
      const ok = await agent.post(`${ready.listening as string}/token`, { grant_type: 'client_credentials', client_id: 'agent', audience: 'tool' });
      assert.equal(ok.status, 200, ok.text);
      const refused = await agent.post(`${ready.listening as string}/token`, { grant_type: 'client_credentials', client_id: 'tool', audience: 'agent' });
      assert.equal(refused.status, 401, refused.text);
    } finally {
      agent.close();
    }
    await until('one 200 and one 401 token response in /metrics', async () => {
      const { status, body } = await get(`${ops}/metrics`);
      assert.equal(status, 200);
      const ok = /^tether_as_request_duration_seconds_count\{endpoint="token",status="200"\} 1$/m.test(body);
      const refused = /^tether_as_request_duration_seconds_count\{endpoint="token",status="401"\} 1$/m.test(body);
      return ok && refused ? true : undefined;
    });

    const exit = await as.stop('SIGTERM');
    assert.deepEqual(exit, { code: 0, signal: null }, as.stderr);
    assert.equal(as.lines.length, 1, `stdout holds only the ready line: ${as.lines.join('\n')}`);
    const logs = as.stderr.split('\n').filter((l) => l.startsWith('{')).map((l) => JSON.parse(l) as Record<string, unknown>);
    assert.ok(logs.some((l) => l.event === 'started' && l.metricsUrl === ops), 'the start is logged on stderr, with the operations listener');
    assert.ok(logs.some((l) => l.event === 'stopped'), 'the stop is logged on stderr');
    await assert.rejects(get(`${ops}/healthz`), /ECONNREFUSED/);
  });

  test('without --metrics-listen the ready line is {listening, issuer, pid}; a bad --metrics-listen exits 2', async () => {
    const as = new Tether(['as', '--dev', '--pki', pki, '--listen', '127.0.0.1:0', '--data', join(dir, 'as-data-2'), '--log-level', 'silent']);
    const ready = await as.ready();
    assert.deepEqual(Object.keys(ready), ['listening', 'issuer', 'pid']);
    assert.deepEqual(await as.stop(), { code: 0, signal: null });
    assert.equal(as.stderr, '', 'nothing logged at --log-level silent');
    const bad = new Tether(['as', '--dev', '--pki', pki, '--metrics-listen', 'nowhere']);
    assert.deepEqual(await bad.exited, { code: 2, signal: null });
    assert.match(bad.stderr, /--metrics-listen must be HOST:PORT/);
    assert.equal(bad.lines.length, 0);
  });
});

describe('tether resource', () => {
  const base = () => ['resource', '--listen', '127.0.0.1:0', '--cert', f('server.pem'), '--key', f('server.key'), '--ca', f('ca.pem')];

  test('ready line {listening, pid} without --metrics-listen', async () => {
    const rs = new Tether([...base(), '--jwks-file', issuer.jwksPath]);
    const ready = await rs.ready();
    assert.deepEqual(Object.keys(ready), ['listening', 'pid']);
    assert.match(ready.listening as string, /^https:\/\/127\.0\.0\.1:\d+$/);
    assert.equal(ready.pid, rs.child.pid);
    assert.deepEqual(await rs.stop(), { code: 0, signal: null });
    assert.equal(rs.lines.length, 1);
  });

  test('a --metrics-listen address in use: exit 1, one line on stderr, nothing on stdout', async () => {
    const blocker = createTcpServer();
    await new Promise<void>((r) => blocker.listen(0, '127.0.0.1', r));
    try {
      const port = (blocker.address() as AddressInfo).port;
      const rs = new Tether([...base(), '--jwks-file', issuer.jwksPath, '--metrics-listen', `127.0.0.1:${port}`]);
      const exit = await Promise.race([rs.exited, new Promise((r) => setTimeout(r, READY_MS, 'timeout').unref())]);
      assert.deepEqual(exit, { code: 1, signal: null }, rs.stderr);
      assert.equal(rs.stderr, `tether resource: --metrics-listen: cannot listen on 127.0.0.1:${port}: address already in use\n`);
      assert.equal(rs.lines.length, 0);
    } finally {
      blocker.close();
    }
  });

  test('a JWKS URL that cannot be fetched: /readyz 503 jwks_unavailable, then 200 once the issuer answers (retried in the background)', async () => {
    let available = false;
    let fetches = 0;
    const jwksServer: Server = createServer((_req, res) => {
      fetches++;
      if (!available) res.writeHead(503).end();
      else res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(issuer.jwks));
    });
    jwksServer.listen(0, '127.0.0.1');
    await new Promise((r) => jwksServer.once('listening', r));
    try {
      const jwksUrl = `http://127.0.0.1:${(jwksServer.address() as AddressInfo).port}/jwks`;
      const rs = new Tether([...base(), '--jwks-url', jwksUrl, '--metrics-listen', '127.0.0.1:0']);
      const ready = await rs.ready();
      assert.deepEqual(Object.keys(ready), ['listening', 'metrics', 'pid']);
      const ops = ready.metrics as string;
      assert.match(rs.stderr, /warning: cannot fetch the JWKS/);
      const health = await get(`${ops}/healthz`);
      assert.deepEqual([health.status, JSON.parse(health.body)], [200, { status: 'ok' }]);
      const notReady = await get(`${ops}/readyz`);
      assert.deepEqual([notReady.status, JSON.parse(notReady.body)], [503, { status: 'not_ready', reason: 'jwks_unavailable' }]);

      available = true;
      await until('/readyz 200 after the JWKS became available', async () => ((await get(`${ops}/readyz`)).status === 200 ? true : undefined), 20_000);
      assert.ok(fetches >= 2, `the JWKS was fetched again (${fetches} fetches)`);
      const metrics = await get(`${ops}/metrics`);
      assert.equal(metrics.status, 200);
      assert.match(metrics.body, /^tether_resource_jwks_keys 1$/m);
      assert.match(metrics.body, /^tether_resource_requests_total 0$/m);
      assert.match(metrics.body, /^tether_resource_jwks_fetch_failures_total [1-9]\d*$/m);
      assert.deepEqual(await rs.stop(), { code: 0, signal: null });
      assert.equal(rs.lines.length, 1, 'stdout holds only the ready line');
    } finally {
      jwksServer.closeAllConnections();
      await new Promise((r) => jwksServer.close(r));
    }
  });

  test('after SIGTERM, while a request is in flight: /readyz 503 draining, then exit 0', async () => {
    const rs = new Tether([...base(), '--jwks-file', issuer.jwksPath, '--minimum-binding', 'none', '--metrics-listen', '127.0.0.1:0']);
    const ready = await rs.ready();
    const ops = ready.metrics as string;
    assert.equal((await get(`${ops}/readyz`)).status, 200);
    const token = mintDevToken({ privateKey: createPrivateKey(readFileSync(issuer.keyPath)), kid: issuer.kid, binding: 'certificate', certificate: new X509Certificate(readFileSync(f('agent.pem'))) });
    let session: ClientHttp2Session | undefined;
    try {
      session = http2Connect(ready.listening as string, { cert: readFileSync(f('agent.pem')), key: readFileSync(f('agent.key')), ca: readFileSync(f('ca.pem')) });
      session.on('error', () => undefined);
      const stream = session.request({ [h2.HTTP2_HEADER_METHOD]: 'POST', [h2.HTTP2_HEADER_PATH]: '/upload', authorization: `Bearer ${token}` });
      stream.on('error', () => undefined);
      stream.write('part of a body');
      // The request is verified and in the application once the resource counts it accepted.
      await until('the in-flight request accepted', async () => (/^tether_resource_accepted_total 1$/m.test((await get(`${ops}/metrics`)).body) ? true : undefined));

      process.kill(rs.child.pid as number, 'SIGTERM');
      const draining = await until('/readyz 503 draining', async () => {
        const r = await get(`${ops}/readyz`);
        return r.status === 503 ? r : undefined;
      });
      assert.deepEqual(JSON.parse(draining.body), { status: 'not_ready', reason: 'draining' });
      stream.end();
      assert.deepEqual(await rs.stop('none'), { code: 0, signal: null }, rs.stderr);
    } finally {
      session?.destroy();
    }
  });
});
