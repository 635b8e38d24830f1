/**
 * Certificate rotation test helpers: server certificates from the development CA (the PKI package
 * issues client certificates only), certificate directories written the way real writers do
 * (rename-into-place, Kubernetes `..data` swap), in-memory sidecar logs, and agent requests to the
 * egress over HTTP/1.1 and h2c with a deadline; the load agents of the rotation test.
 */
import assert from 'node:assert/strict';
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type IncomingHttpHeaders } from 'node:http';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import type { TestContext } from 'node:test';
import * as x509 from '@peculiar/x509';
import type { IssuedCertificate } from '@tether/pki';
import { decodePrincipal } from '@tether/sidecar';
import { createLogger } from '../../../packages/sidecar/src/log.js';

x509.cryptoProvider.set(webcrypto as never);

/** Deadline of one agent request. */
export const REQUEST_MS = 15_000;

const EC = { name: 'ECDSA', namedCurve: 'P-256', hash: 'SHA-256' } as const;

function pemBody(pem: string): Buffer {
  return Buffer.from(pem.replace(/-----[^-]+-----/g, '').replace(/\s+/g, ''), 'base64');
}

/** A `localhost` / 127.0.0.1 / ::1 server certificate from `ca` (the dev PKI's server profile), valid until `notAfter` (default 30 days). */
export async function issueServerCertificate(ca: IssuedCertificate, notAfter = new Date(Date.now() + 30 * 86_400_000)): Promise<IssuedCertificate> {
  const caKey = await webcrypto.subtle.importKey('pkcs8', pemBody(ca.key), EC, false, ['sign']);
  const caCert = new x509.X509Certificate(ca.cert);
  const keys = (await webcrypto.subtle.generateKey(EC, true, ['sign', 'verify'])) as webcrypto.CryptoKeyPair;
  const serial = randomBytes(16);
  serial[0] = (serial[0] as number) & 0x7f;
  const cert = await x509.X509CertificateGenerator.create({
    serialNumber: serial.toString('hex'),
    subject: 'CN=localhost',
    issuer: caCert.subject,
    notBefore: new Date(Date.now() - 60_000),
    notAfter,
    signingAlgorithm: EC,
    publicKey: keys.publicKey,
    signingKey: caKey,
    extensions: [
      new x509.BasicConstraintsExtension(false, undefined, true),
      new x509.KeyUsagesExtension(x509.KeyUsageFlags.digitalSignature, true),
      new x509.ExtendedKeyUsageExtension([x509.ExtendedKeyUsage.serverAuth]),
      new x509.SubjectAlternativeNameExtension([
        { type: 'dns', value: 'localhost' },
        { type: 'ip', value: '127.0.0.1' },
        { type: 'ip', value: '::1' },
      ]),
      await x509.AuthorityKeyIdentifierExtension.create(caCert),
    ],
  });
  const der = Buffer.from(await webcrypto.subtle.exportKey('pkcs8', keys.privateKey));
  const key = `-----BEGIN PRIVATE KEY-----\n${der.toString('base64').replace(/(.{64})/g, '$1\n').trim()}\n-----END PRIVATE KEY-----\n`;
  return { cert: `${cert.toString('pem')}\n`, key };
}

/**
 * `tls.crt`, `tls.key` and `ca.crt` in a directory, replaced as certificate writers do:
 * `rename` writes each file next to its path and renames it over it (key, then certificate, as
 * cert-manager does); `kubernetes` writes a new versioned directory and swaps the `..data` symlink
 * the three paths point through (one atomic change).
 */
export class CredentialDir {
  readonly cert: string;
  readonly key: string;
  readonly ca: string;
  #version = 0;
  #current: string | undefined;

  constructor(
    readonly dir: string,
    readonly style: 'rename' | 'kubernetes',
  ) {
    mkdirSync(dir, { recursive: true });
    this.cert = join(dir, 'tls.crt');
    this.key = join(dir, 'tls.key');
    this.ca = join(dir, 'ca.crt');
  }

  /** Replace the three files with `pair` and `ca` (`key` overrides the pair's key: a mismatched pair). */
  write(pair: IssuedCertificate, ca: string, key = pair.key): void {
    const files: Array<[string, string, number]> = [['tls.key', key, 0o600], ['tls.crt', pair.cert, 0o644], ['ca.crt', ca, 0o644]];
    if (this.style === 'rename') {
      for (const [name, content, mode] of files) {
        const temp = join(this.dir, `.${name}.${randomBytes(4).toString('hex')}`);
        writeFileSync(temp, content, { mode });
        renameSync(temp, join(this.dir, name));
      }
      return;
    }
    const version = `..v${++this.#version}`;
    mkdirSync(join(this.dir, version));
    for (const [name, content, mode] of files) writeFileSync(join(this.dir, version, name), content, { mode });
    const link = join(this.dir, '..data_tmp');
    symlinkSync(version, link);
    renameSync(link, join(this.dir, '..data'));
    if (this.#version === 1) for (const [name] of files) symlinkSync(join('..data', name), join(this.dir, name));
    if (this.#current !== undefined) rmSync(join(this.dir, this.#current), { recursive: true, force: true });
    this.#current = version;
  }
}

export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A sidecar logger (pino, as in production) writing JSON lines into memory. */
export function memoryLog(sidecar: 'egress' | 'ingress') {
  const lines: LogLine[] = [];
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return { lines, destination, log: createLogger(sidecar, { level: 'info', destination }) };
}

export interface Answer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/** One HTTP/1.1 request to the egress; rejects after `timeoutMs`. */
export function h1Call(port: number, agent: HttpAgent, path: string, options: { method?: string; headers?: Record<string, string>; body?: string; timeoutMs: number }): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const req = httpRequest({ host: '127.0.0.1', port, path, agent, method: options.method ?? 'GET', headers: options.headers ?? {}, timeout: options.timeoutMs }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      res.on('error', reject);
    });
    req.on('timeout', () => req.destroy(new Error(`timed out after ${options.timeoutMs} ms: ${path}`)));
    req.on('error', reject);
    req.end(options.body);
  });
}

/** One h2c request to the egress on `session`; rejects after `timeoutMs`. */
export function h2cCall(session: ClientHttp2Session, path: string, timeoutMs: number): Promise<Answer> {
  return new Promise((resolve, reject) => {
    const stream = session.request({ ':path': path });
    stream.setTimeout(timeoutMs, () => stream.destroy(new Error(`timed out after ${timeoutMs} ms: ${path}`)));
    const chunks: Buffer[] = [];
    let status = 0;
    let headers: IncomingHttpHeaders = {};
    stream.on('response', (h) => {
      status = Number(h[':status']);
      headers = h as IncomingHttpHeaders;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', reject);
    stream.on('close', () => {
      if (stream.rstCode !== undefined && stream.rstCode !== 0) reject(new Error(`stream reset ${stream.rstCode}: ${path}`));
      else resolve({ status, headers, body: Buffer.concat(chunks).toString('utf8') });
    });
    stream.end();
  });
}

export const bearer = (token: string) => ({ authorization: `Bearer ${token}` });

/** `cnf.x5t#S256` the ingress verified for this echoed request. */
export function boundTo(answer: Answer): string | undefined {
  const echo = JSON.parse(answer.body) as { headers: Record<string, string> };
  return decodePrincipal(echo.headers['x-tether-principal'] as string).cnf?.['x5t#S256'];
}

/** A token for route `agent`, as an agent gets one: client_credentials through the egress (route `as`), so it is bound to the egress's certificate. */
export async function agentToken(port: number, agent: HttpAgent): Promise<string> {
  const body = new URLSearchParams({ grant_type: 'client_credentials', client_id: 'egress', resource: 'api', scope: 'read' }).toString();
  const answer = await h1Call(port, agent, '/as/token', { method: 'POST', headers: { 'content-type': 'application/x-www-form-urlencoded' }, body, timeoutMs: REQUEST_MS });
  assert.equal(answer.status, 200, `token through the egress: ${answer.body}`);
  return (JSON.parse(answer.body) as { access_token: string }).access_token;
}

export interface LoadOutcome {
  ok: number;
  failures: string[];
  /** `cnf.x5t#S256` of the egress-token requests the ingress verified, with counts. */
  boundTo: Map<string, number>;
  /** Agent-token requests refused 401 invalid_token (token bound to an earlier egress certificate), each followed by a new token. */
  stale: number;
  agentOk: number;
}

/** An agent without credentials on route `api` (the egress obtains the token), until `until`. */
async function egressTokenAgent(call: (path: string) => Promise<Answer>, name: string, until: number, outcome: LoadOutcome): Promise<void> {
  for (let i = 0; Date.now() < until; i++) {
    const tag = `${name}-${i}`;
    try {
      const answer = await call(`/api/load?tag=${tag}`);
      if (answer.status !== 200) throw new Error(`status ${answer.status}: ${answer.body.slice(0, 200)}`);
      if (!(JSON.parse(answer.body) as { url: string }).url.endsWith(`tag=${tag}`)) throw new Error('answered with another request');
      const bound = boundTo(answer) ?? 'none';
      outcome.boundTo.set(bound, (outcome.boundTo.get(bound) ?? 0) + 1);
      outcome.ok++;
    } catch (error) {
      outcome.failures.push(`${tag}: ${(error as Error).message}`);
    }
  }
}

/** An agent with its own tokens (fetched through the egress) on route `agent`: a 401 invalid_token means "get a new token", up to 3 attempts per request. */
export async function agentTokenAgent(port: number, agent: HttpAgent, name: string, until: number, outcome: LoadOutcome): Promise<void> {
  let token: string | undefined;
  for (let i = 0; Date.now() < until; i++) {
    const tag = `${name}-${i}`;
    try {
      let answered = false;
      for (let attempt = 0; attempt < 3 && !answered; attempt++) {
        token ??= await agentToken(port, agent);
        const answer = await h1Call(port, agent, `/agent/load?tag=${tag}`, { headers: bearer(token), timeoutMs: REQUEST_MS });
        if (answer.status === 200) answered = true;
        else if (answer.status === 401 && /error="invalid_token"/.test(String(answer.headers['www-authenticate']))) {
          outcome.stale++;
          token = undefined;
        } else throw new Error(`status ${answer.status}: ${answer.body.slice(0, 200)}`);
      }
      if (!answered) throw new Error('refused three times in a row');
      outcome.agentOk++;
    } catch (error) {
      outcome.failures.push(`${tag}: ${(error as Error).message}`);
    }
  }
}

/** Egress-token agents: half over HTTP/1.1 keep-alive, half over h2c. */
export function startEgressTokenAgents(t: TestContext, port: number, count: number, until: number, outcome: LoadOutcome): Promise<void>[] {
  return Array.from({ length: count }, (_, a) => {
    if (a % 2 === 0) {
      const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
      t.after(() => agent.destroy());
      return egressTokenAgent((path) => h1Call(port, agent, path, { timeoutMs: REQUEST_MS }), `h1-${a}`, until, outcome);
    }
    const session: ClientHttp2Session = h2connect(`http://127.0.0.1:${port}`);
    session.on('error', (error) => outcome.failures.push(`h2c session ${a}: ${error.message}`));
    t.after(() => void session.destroy());
    return egressTokenAgent((path) => h2cCall(session, path, REQUEST_MS), `h2c-${a}`, until, outcome);
  });
}

export const newOutcome = (): LoadOutcome => ({ ok: 0, failures: [], boundTo: new Map(), stale: 0, agentOk: 0 });
