/**
 * Reloadable sidecar credentials with real files in a temporary directory and the development PKI:
 * rename-into-place (cert then key), the Kubernetes `..data` symlink swap, SIGHUP, polling,
 * refusals (mismatched pair, truncated PEM, foreign CA, expired) that keep the current pair, a real
 * TLS connection that keeps its certificate while new ones get the new one, and close() leaving
 * no handle behind.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { randomBytes, X509Certificate } from 'node:crypto';
import { once } from 'node:events';
import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, it } from 'node:test';
import { connect, createServer, type TLSSocket } from 'node:tls';
import type { AddressInfo } from 'node:net';
import { createDevPki, issueClientCertificate, type DevPki, type IssuedCertificate } from '@tether/pki';
import { SidecarConfigError } from '@tether/sidecar';
import {
  CredentialsError,
  onSighup,
  ReloadableCredentials,
  tlsContextFor,
  type CredentialsEvents,
  type FileCredentialsOptions,
} from '../../packages/sidecar/src/credentials/index.js';
import { createLogger } from '../../packages/sidecar/src/log.js';
import { testPki } from '../helpers/pki.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const WAIT_MS = 5000;

let pki: DevPki;
/** Same CA, new key: the rotation target. */
let renewed: IssuedCertificate;
/** Same CA, another new key. */
let third: IssuedCertificate;
/** A CA that never issued anything for us, with a client of its own. */
let foreign: DevPki;
let expired: IssuedCertificate;

before(async () => {
  pki = await testPki();
  renewed = await issueClientCertificate(pki.ca, 'client');
  third = await issueClientCertificate(pki.ca, 'client');
  foreign = await createDevPki({ clients: ['client'] });
  expired = await issueClientCertificate(pki.ca, 'client', { days: -1 });
});

const fingerprintOf = (pem: string) => new X509Certificate(pem).fingerprint256;

interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

/** A real pino logger (the sidecars' own) writing JSON lines into memory. */
function memoryLog() {
  const lines: LogLine[] = [];
  let raw = '';
  const destination = new Writable({
    write(chunk: Buffer, _encoding, callback) {
      raw += chunk.toString();
      for (const line of chunk.toString().split('\n')) if (line.trim() !== '') lines.push(JSON.parse(line) as LogLine);
      callback();
    },
  });
  return { log: createLogger('egress', { level: 'debug', destination }), lines, raw: () => raw };
}

interface Fixture {
  dir: string;
  certPath: string;
  keyPath: string;
  caPath: string;
  /** Write `content` next to `path` and rename it over `path` (as cert-manager does). */
  replace(path: string, content: string): void;
}

const fixtures: string[] = [];
after(() => {
  for (const dir of fixtures) rmSync(dir, { recursive: true, force: true });
});

function fixture(initial: IssuedCertificate = pki.clients.client as IssuedCertificate): Fixture {
  const dir = mkdtempSync(join(tmpdir(), 'tether-creds-'));
  fixtures.push(dir);
  const f: Fixture = {
    dir,
    certPath: join(dir, 'tls.crt'),
    keyPath: join(dir, 'tls.key'),
    caPath: join(dir, 'ca.crt'),
    replace(path, content) {
      const temp = join(dir, `.tmp-${randomBytes(6).toString('hex')}`);
      writeFileSync(temp, content, { mode: 0o600 });
      renameSync(temp, path);
    },
  };
  writeFileSync(f.certPath, initial.cert);
  writeFileSync(f.keyPath, initial.key, { mode: 0o600 });
  writeFileSync(f.caPath, pki.ca.cert);
  return f;
}

/** Every event of `credentials`, recorded in order. */
function record(credentials: ReloadableCredentials) {
  const changes: { generation: number; fingerprint: string; trigger: string }[] = [];
  const refusals: CredentialsEvents['refused'][0][] = [];
  credentials.on('change', (snapshot, trigger) => changes.push({ generation: snapshot.generation, fingerprint: snapshot.fingerprint, trigger }));
  credentials.on('refused', (refusal) => refusals.push(refusal));
  return { changes, refusals };
}

async function open(f: Fixture, options: Partial<FileCredentialsOptions> = {}) {
  const memory = memoryLog();
  const credentials = ReloadableCredentials.fromFiles({ certPath: f.certPath, keyPath: f.keyPath, caPath: f.caPath, log: memory.log, debounceMs: 100, ...options });
  return { credentials, ...memory, ...record(credentials) };
}

describe('ReloadableCredentials: reloading from files', () => {
  it('rename-into-place of the certificate then the key is one change to generation 2', async () => {
    const f = fixture();
    const { credentials, changes, refusals, lines } = await open(f, { debounceMs: 300 });
    try {
      assert.equal(credentials.current().generation, 1);
      assert.equal(credentials.current().fingerprint, fingerprintOf(pki.clients.client!.cert));
      f.replace(f.certPath, renewed.cert);
      // The writer is not instantaneous: the key follows 30 ms later (scenario, not synchronisation),
      // well inside the debounce period, so the half-rotated pair is never read.
      await new Promise((resolve) => setTimeout(resolve, 30));
      f.replace(f.keyPath, renewed.key);
      await waitFor(() => changes.length > 0 || refusals.length > 0, { timeoutMs: WAIT_MS, message: 'no change event after replacing cert and key' });
      assert.deepEqual(refusals, [], 'the half-rotated pair was never looked at');
      assert.deepEqual(changes, [{ generation: 2, fingerprint: fingerprintOf(renewed.cert), trigger: 'watch' }]);
      const now = credentials.current();
      assert.equal(now.generation, 2);
      assert.equal(now.cert.toString(), renewed.cert);
      assert.ok('asymmetricKeyType' in now.privateKey && now.privateKey.asymmetricKeyType === 'ec');
      // The files are what is in use: asking again changes nothing.
      assert.deepEqual(credentials.reload('test'), { status: 'unchanged', generation: 2 });
      assert.equal(changes.length, 1);
      const info = lines.find((l) => l.msg.startsWith('certificate reloaded'));
      assert.equal(info?.generation, 2);
      assert.equal(info?.level, 30);
    } finally {
      credentials.close();
    }
  });

  it('a Kubernetes secret volume ..data symlink swap is a change, and the next swap too', async () => {
    const dir = mkdtempSync(join(tmpdir(), 'tether-k8s-'));
    fixtures.push(dir);
    let n = 0;
    /** What the kubelet does: a new timestamped directory, `..data_tmp` pointing at it, renamed over `..data`. */
    const publish = (issued: IssuedCertificate) => {
      const version = `..2025_01_01_00_00_0${n++}.${randomBytes(4).toString('hex')}`;
      mkdirSync(join(dir, version));
      writeFileSync(join(dir, version, 'tls.crt'), issued.cert);
      writeFileSync(join(dir, version, 'tls.key'), issued.key);
      writeFileSync(join(dir, version, 'ca.crt'), pki.ca.cert);
      symlinkSync(version, join(dir, '..data_tmp'));
      renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
    };
    publish(pki.clients.client!);
    for (const name of ['tls.crt', 'tls.key', 'ca.crt']) symlinkSync(join('..data', name), join(dir, name));
    const memory = memoryLog();
    const credentials = ReloadableCredentials.fromFiles({ certPath: join(dir, 'tls.crt'), keyPath: join(dir, 'tls.key'), caPath: join(dir, 'ca.crt'), log: memory.log });
    const { changes, refusals } = record(credentials);
    try {
      publish(renewed);
      await waitFor(() => changes.length >= 1, { timeoutMs: WAIT_MS, message: 'no change after the ..data swap' });
      assert.deepEqual(changes[0], { generation: 2, fingerprint: fingerprintOf(renewed.cert), trigger: 'watch' });
      publish(third);
      await waitFor(() => changes.length >= 2, { timeoutMs: WAIT_MS, message: 'no change after the second ..data swap' });
      assert.deepEqual(changes[1], { generation: 3, fingerprint: fingerprintOf(third.cert), trigger: 'watch' });
      assert.deepEqual(refusals, []);
    } finally {
      credentials.close();
    }
  });

  it('SIGHUP reloads (a real signal, to a handler installed first); the remover takes the listener away', async () => {
    const f = fixture();
    // No watching and no polling: only the signal can notice the new files.
    const { credentials, changes } = await open(f, { watch: false, pollMs: 0 });
    const listenersBefore = process.listenerCount('SIGHUP');
    const results: unknown[] = [];
    const remove = onSighup(() => results.push(credentials.reload('SIGHUP')));
    try {
      assert.equal(process.listenerCount('SIGHUP'), listenersBefore + 1);
      f.replace(f.certPath, renewed.cert);
      f.replace(f.keyPath, renewed.key);
      assert.equal(credentials.current().generation, 1, 'nothing reloads without the signal');
      process.kill(process.pid, 'SIGHUP');
      await waitFor(() => changes.length > 0, { timeoutMs: WAIT_MS, message: 'no change after SIGHUP' });
      assert.deepEqual(changes, [{ generation: 2, fingerprint: fingerprintOf(renewed.cert), trigger: 'SIGHUP' }]);
      assert.deepEqual(results, [{ status: 'changed', generation: 2, fingerprint: fingerprintOf(renewed.cert) }]);
    } finally {
      remove();
      remove();
      credentials.close();
    }
    assert.equal(process.listenerCount('SIGHUP'), listenersBefore);
    // A handler that throws goes to onError, not out of the signal listener.
    const errors: unknown[] = [];
    const removeThrowing = onSighup(() => {
      throw new Error('boom');
    }, (error) => errors.push(error));
    try {
      process.kill(process.pid, 'SIGHUP');
      await waitFor(() => errors.length > 0, { timeoutMs: WAIT_MS, message: 'the throwing SIGHUP handler was not reported' });
      assert.match(String(errors[0]), /boom/);
    } finally {
      removeThrowing();
    }
  });

  it('polling notices replaced files when no watch event arrives', async () => {
    const f = fixture();
    const { credentials, changes } = await open(f, { watch: false, pollMs: 50 });
    try {
      f.replace(f.certPath, renewed.cert);
      f.replace(f.keyPath, renewed.key);
      await waitFor(() => changes.length > 0, { timeoutMs: WAIT_MS, message: 'polling did not notice the new files' });
      assert.equal(changes[0]?.trigger, 'poll');
      assert.equal(credentials.current().fingerprint, fingerprintOf(renewed.cert));
    } finally {
      credentials.close();
    }
  });
});

describe('ReloadableCredentials: refusals keep the current pair', () => {
  it('a new certificate with the old key is refused (warn, no key material) until its key arrives', async () => {
    const f = fixture();
    const { credentials, changes, refusals, lines, raw } = await open(f);
    const original = credentials.current();
    try {
      f.replace(f.certPath, renewed.cert);
      await waitFor(() => refusals.length > 0 || changes.length > 0, { timeoutMs: WAIT_MS, message: 'the mismatched pair was neither refused nor accepted' });
      assert.deepEqual(changes, [], 'a mismatched pair must not be used');
      assert.equal(refusals[0]?.reason, 'key_mismatch');
      assert.equal(refusals[0]?.path, f.keyPath);
      assert.equal(refusals[0]?.trigger, 'watch');
      assert.equal(credentials.current(), original, 'the old pair stays in use');
      const warn = lines.find((l) => l.level === 40);
      assert.equal(warn?.reason, 'key_mismatch');
      assert.equal(warn?.path, f.keyPath);
      assert.match(warn?.msg ?? '', /refused; the current certificate stays in use/);
      f.replace(f.keyPath, renewed.key);
      await waitFor(() => changes.length > 0, { timeoutMs: WAIT_MS, message: 'the matching key did not complete the rotation' });
      assert.deepEqual(changes, [{ generation: 2, fingerprint: fingerprintOf(renewed.cert), trigger: 'watch' }]);
      for (const key of [pki.clients.client!.key, renewed.key]) {
        const body = key.split('\n')[1] as string;
        assert.ok(!raw().includes(body), 'a private key line appeared in the log');
      }
      assert.ok(!raw().includes('PRIVATE KEY'));
    } finally {
      credentials.close();
    }
  });

  it('a half-written (truncated) certificate or key is refused, then the complete file is accepted', async () => {
    const f = fixture();
    const { credentials, changes, refusals } = await open(f);
    const original = credentials.current();
    try {
      f.replace(f.certPath, renewed.cert.slice(0, Math.floor(renewed.cert.length / 2)));
      await waitFor(() => refusals.length >= 1, { timeoutMs: WAIT_MS, message: 'the truncated certificate was not refused' });
      assert.equal(refusals[0]?.reason, 'cert_invalid');
      assert.equal(refusals[0]?.path, f.certPath);
      assert.equal(credentials.current(), original);

      // A complete certificate with an intermediate cut off is refused too, not silently shortened.
      f.replace(f.certPath, renewed.cert + pki.ca.cert.slice(0, 200));
      await waitFor(() => refusals.length >= 2, { timeoutMs: WAIT_MS, message: 'the certificate file with a cut-off second block was not refused' });
      assert.equal(refusals[1]?.reason, 'cert_invalid');

      f.replace(f.keyPath, renewed.key.slice(0, renewed.key.length - 40));
      f.replace(f.certPath, renewed.cert);
      await waitFor(() => refusals.length >= 3, { timeoutMs: WAIT_MS, message: 'the truncated key was not refused' });
      assert.equal(refusals[2]?.reason, 'key_invalid');
      assert.equal(refusals[2]?.path, f.keyPath);
      assert.equal(credentials.current(), original);
      assert.deepEqual(changes, []);

      f.replace(f.keyPath, renewed.key);
      await waitFor(() => changes.length > 0, { timeoutMs: WAIT_MS, message: 'the complete key was not accepted' });
      assert.equal(credentials.current().generation, 2);
    } finally {
      credentials.close();
    }
  });

  it('a certificate from another CA, an expired one, or unreadable files are refused', async () => {
    const f = fixture();
    const { credentials, changes } = await open(f, { watch: false, pollMs: 0 });
    try {
      f.replace(f.certPath, foreign.clients.client!.cert);
      f.replace(f.keyPath, foreign.clients.client!.key);
      assert.deepEqual(
        { ...credentials.reload('test'), message: undefined },
        { status: 'refused', generation: 1, reason: 'chain_invalid', path: f.certPath, message: undefined },
      );
      f.replace(f.certPath, expired.cert);
      f.replace(f.keyPath, expired.key);
      const result = credentials.reload('test');
      assert.equal(result.status === 'refused' && result.reason, 'cert_expired');
      f.replace(f.caPath, 'not a certificate\n');
      f.replace(f.certPath, renewed.cert);
      f.replace(f.keyPath, renewed.key);
      const badCa = credentials.reload('test');
      assert.equal(badCa.status === 'refused' && badCa.reason, 'ca_invalid');
      assert.equal(badCa.status === 'refused' && badCa.path, f.caPath);
      rmSync(f.keyPath);
      const missing = credentials.reload('test');
      assert.equal(missing.status === 'refused' && missing.reason, 'read_failed');
      assert.equal(missing.status === 'refused' && missing.message, 'cannot read the file: ENOENT');
      assert.equal(credentials.current().fingerprint, fingerprintOf(pki.clients.client!.cert));
      assert.deepEqual(changes, []);
      // Without a chain requirement the foreign certificate is accepted (an egress whose --ca only verifies upstream servers).
      f.replace(f.caPath, pki.ca.cert);
      f.replace(f.certPath, foreign.clients.client!.cert);
      f.replace(f.keyPath, foreign.clients.client!.key);
      const relaxed = ReloadableCredentials.fromFiles({ certPath: f.certPath, keyPath: f.keyPath, caPath: f.caPath, log: memoryLog().log, requireChain: false, watch: false, pollMs: 0 });
      assert.equal(relaxed.current().fingerprint, fingerprintOf(foreign.clients.client!.cert));
      relaxed.close();
    } finally {
      credentials.close();
    }
    assert.deepEqual(credentials.reload('late SIGHUP'), { status: 'closed', generation: 1 });
  });

  it('at start-up an invalid pair is a configuration error (exit status 2) naming the file, not the key', () => {
    const f = fixture();
    f.replace(f.keyPath, renewed.key);
    assert.throws(
      () => ReloadableCredentials.fromFiles({ certPath: f.certPath, keyPath: f.keyPath, caPath: f.caPath, log: memoryLog().log }),
      (error: unknown) => {
        assert.ok(error instanceof CredentialsError);
        assert.ok(error instanceof SidecarConfigError);
        assert.equal(error.exitCode, 2);
        assert.equal(error.reason, 'key_mismatch');
        assert.equal(error.path, f.keyPath);
        assert.ok(!error.message.includes('PRIVATE KEY'));
        return true;
      },
    );
  });
});

describe('in-memory credentials and TLS contexts', () => {
  it('fromPem validates the same way and never reloads; a snapshot does not print its key', () => {
    const credentials = ReloadableCredentials.fromPem({ cert: renewed.cert, key: renewed.key, ca: pki.ca.cert });
    assert.equal(credentials.reloadable, false);
    assert.equal(credentials.current().generation, 1);
    assert.deepEqual(credentials.reload('SIGHUP'), { status: 'unchanged', generation: 1 });
    const json = JSON.stringify({ credentials: credentials.current() });
    assert.ok(json.includes(fingerprintOf(renewed.cert)));
    assert.ok(!json.includes('PRIVATE KEY') && !json.includes(renewed.key.split('\n')[1] as string));
    assert.throws(() => ReloadableCredentials.fromPem({ cert: renewed.cert, key: third.key }), { reason: 'key_mismatch' });
    assert.throws(() => ReloadableCredentials.fromPem({ cert: foreign.clients.client!.cert, key: foreign.clients.client!.key, ca: pki.ca.cert }), { reason: 'chain_invalid' });
    credentials.close();
  });

  it('tlsContextFor: new connections present the new certificate, an open connection keeps the old one and keeps working', async () => {
    const f = fixture();
    const { credentials } = await open(f, { watch: false, pollMs: 0 });
    const peers: string[] = [];
    const server = createServer({ cert: pki.server.cert, key: pki.server.key, ca: pki.ca.cert, requestCert: true, rejectUnauthorized: true }, (socket) => {
      peers.push(socket.getPeerCertificate().fingerprint256);
      socket.on('data', (data) => socket.write(data));
      socket.on('error', () => socket.destroy());
    });
    server.listen(0, '127.0.0.1');
    await withTimeout(once(server, 'listening'), WAIT_MS, 'server did not listen');
    const port = (server.address() as AddressInfo).port;
    const sockets: TLSSocket[] = [];
    const dial = async () => {
      const socket = connect({ host: '127.0.0.1', port, secureContext: tlsContextFor(credentials, { minVersion: 'TLSv1.3' }), timeout: WAIT_MS });
      sockets.push(socket);
      socket.on('timeout', () => socket.destroy(new Error('socket timeout')));
      await withTimeout(once(socket, 'secureConnect'), WAIT_MS, 'TLS handshake did not complete', () => socket.destroy());
      return socket;
    };
    const echo = async (socket: TLSSocket, text: string) => {
      socket.write(text);
      const [data] = (await withTimeout(once(socket, 'data'), WAIT_MS, `no echo of ${text}`)) as [Buffer];
      return data.toString();
    };
    try {
      const first = await dial();
      assert.equal(tlsContextFor(credentials, { minVersion: 'TLSv1.3' }), tlsContextFor(credentials, { minVersion: 'TLSv1.3' }), 'one context per generation');
      f.replace(f.certPath, renewed.cert);
      f.replace(f.keyPath, renewed.key);
      assert.equal(credentials.reload('test').status, 'changed');
      const second = await dial();
      await waitFor(() => peers.length === 2, { timeoutMs: WAIT_MS, message: `server saw ${peers.length} client certificates, expected 2` });
      assert.deepEqual(peers, [fingerprintOf(pki.clients.client!.cert), fingerprintOf(renewed.cert)]);
      assert.equal(first.getCertificate() !== null && 'fingerprint256' in first.getCertificate()! && (first.getCertificate() as { fingerprint256: string }).fingerprint256, fingerprintOf(pki.clients.client!.cert));
      assert.equal(await echo(first, 'old connection'), 'old connection');
      assert.equal(await echo(second, 'new connection'), 'new connection');
    } finally {
      for (const socket of sockets) socket.destroy();
      server.close();
      credentials.close();
    }
  });
});

describe('close()', () => {
  const counts = () => {
    const info = process.getActiveResourcesInfo();
    return { watchers: info.filter((r) => r === 'FSEventWrap').length, timers: info.filter((r) => r === 'Timeout').length };
  };

  it('removes every watcher and timer it created', async () => {
    const f = fixture();
    const baseline = counts();
    const { credentials } = await open(f, { pollMs: 1000, debounceMs: 5000 });
    const opened = counts();
    assert.equal(opened.watchers, baseline.watchers + 1, 'one directory watcher');
    assert.equal(opened.timers, baseline.timers + 1, 'the poll timer');
    f.replace(f.certPath, renewed.cert);
    await waitFor(() => counts().timers === baseline.timers + 2, { timeoutMs: WAIT_MS, message: 'the debounce timer was not armed by the rename' });
    credentials.close();
    await waitFor(() => {
      const now = counts();
      return now.watchers === baseline.watchers && now.timers === baseline.timers;
    }, { timeoutMs: WAIT_MS, message: () => `handles left after close(): ${JSON.stringify(counts())}, baseline ${JSON.stringify(baseline)}` });
  });

  it('a process that closes its credentials exits promptly', async () => {
    const f = fixture();
    const script = join(f.dir, 'child.mts');
    const module = new URL('../../packages/sidecar/src/credentials/index.ts', import.meta.url).href;
    writeFileSync(
      script,
      `import { renameSync, writeFileSync } from 'node:fs';
import { ReloadableCredentials } from ${JSON.stringify(module)};
const log = { debug() {}, info() {}, warn() {}, error() {} };
const credentials = ReloadableCredentials.fromFiles({ certPath: ${JSON.stringify(f.certPath)}, keyPath: ${JSON.stringify(f.keyPath)}, caPath: ${JSON.stringify(f.caPath)}, log, pollMs: 100, debounceMs: 60000 });
const timers = () => process.getActiveResourcesInfo().filter((r) => r === 'Timeout').length;
const before = timers();
writeFileSync(${JSON.stringify(f.certPath + '.new')}, ${JSON.stringify(renewed.cert)});
renameSync(${JSON.stringify(f.certPath + '.new')}, ${JSON.stringify(f.certPath)});
const started = Date.now();
while (timers() === before) {
  if (Date.now() - started > 5000) { console.log('debounce never armed'); process.exit(3); }
  await new Promise((resolve) => setImmediate(resolve));
}
credentials.close();
console.log('closed');
`,
    );
    const child = spawn(process.execPath, ['--conditions=tether-source', '--import', 'tsx', script], { stdio: ['ignore', 'pipe', 'pipe'] });
    let stdout = '';
    let stderr = '';
    let closedAt = 0;
    child.stdout.on('data', (chunk: Buffer) => {
      stdout += chunk.toString();
      if (closedAt === 0 && stdout.includes('closed')) closedAt = Date.now();
    });
    child.stderr.on('data', (chunk: Buffer) => (stderr += chunk.toString()));
    try {
      const [code] = (await withTimeout(once(child, 'exit'), 20_000, `the child did not exit (stdout ${JSON.stringify(stdout)}, stderr ${JSON.stringify(stderr)})`)) as [number | null];
      assert.equal(code, 0, `child failed: ${stdout} ${stderr}`);
      assert.match(stdout, /closed/);
      const lingered = Date.now() - closedAt;
      assert.ok(lingered < 1000, `the child lived ${lingered} ms after close()`);
    } finally {
      if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
    }
  });
});
