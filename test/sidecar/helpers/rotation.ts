/**
 * Certificate rotation test helpers: server certificates from the development CA (the PKI package
 * issues client certificates only), certificate directories written the way real writers do
 * (rename-into-place, Kubernetes `..data` swap), in-memory sidecar logs, and agent requests to the
 * egress over HTTP/1.1 and h2c with a deadline.
 */
import { randomBytes, webcrypto } from 'node:crypto';
import { mkdirSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { request as httpRequest, type Agent as HttpAgent, type IncomingHttpHeaders } from 'node:http';
import type { ClientHttp2Session } from 'node:http2';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import * as x509 from '@peculiar/x509';
import type { IssuedCertificate } from '@tether/pki';
import { createLogger } from '../../../packages/sidecar/src/log.js';

x509.cryptoProvider.set(webcrypto as never);

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
