/**
 * Certificate rotation without restart, with real files, sockets and TLS: egress and ingress
 * started with ReloadableCredentials over certificate directories (egress: Kubernetes `..data`
 * swaps, ingress: rename-into-place), our authorization server in process (`tether as --dev`
 * configuration) for the egress's own tokens (`egressToken`) and for agents fetching tokens through
 * the egress. New connections, proofs and tokens follow the new certificate; requests in flight
 * finish on the old connection, which then closes; a stale agent token gets a 401 the agent
 * recovers from; `/readyz` follows the certificate in use; a 30 s load with both sidecars rotating
 * every 2 s loses no egress-token request; a mismatched pair is refused and changes nothing.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { Agent as HttpAgent, request as httpRequest, type ClientRequest } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { after, before, describe, it, type TestContext } from 'node:test';
import { pino } from 'pino';
import { certificateThumbprint, jwtAccessTokenValidator, localJwks } from '@tether/core';
import { devConfig, resolveConfig, startAuthorizationServer, type AuthorizationServer } from '@tether/as';
import { issueClientCertificate, writeDevPki, type IssuedCertificate } from '@tether/pki';
import { ReloadableCredentials, startEgress, startIngress, type EgressRoute, type EgressSidecar, type IngressSidecar } from '@tether/sidecar';
import { openRawConnection } from '../adapters/raw.js';
import { waitFor, withTimeout } from '../helpers/wait.js';
import {
  agentToken,
  agentTokenAgent,
  bearer,
  boundTo,
  CredentialDir,
  h1Call,
  issueServerCertificate,
  memoryLog,
  newOutcome,
  REQUEST_MS,
  startEgressTokenAgents,
  type Answer,
  type LogLine,
} from './helpers/rotation.js';
import { startEchoApp, type EchoApp } from './helpers/stack.js';

/** Deadline for a rotation to be applied (generous: CI runs on 2 cores). */
const SWITCH_MS = 10_000;
const REFUSED = 'certificate reload refused; the current certificate stays in use';
const METADATA = '/.well-known/oauth-protected-resource';

let dir: string;
let ca: IssuedCertificate;
let apiIdentity: IssuedCertificate;
let as: AuthorizationServer;
let app: EchoApp;

before(async () => {
  dir = mkdtempSync(join(tmpdir(), 'tether-rotation-'));
  const pkiDir = join(dir, 'pki');
  await writeDevPki(pkiDir, { clients: ['egress', 'api'] });
  const read = (name: string) => readFileSync(join(pkiDir, name), 'utf8');
  ca = { cert: read('ca.pem'), key: read('ca.key') };
  apiIdentity = { cert: read('api.pem'), key: read('api.key') };
  // Exactly what `tether as --dev --pki DIR` runs: client `egress` authenticates by its SPIFFE SAN, so renewed certificates work.
  as = await startAuthorizationServer(resolveConfig(devConfig({ pkiDir, host: '127.0.0.1', port: 0, dataDir: join(dir, 'as-data'), logLevel: 'silent' })), {
    logger: pino({ level: 'silent' }),
    defaultMetrics: false,
  });
  app = await startEchoApp();
});

after(async () => {
  await app?.close();
  await as?.close();
  rmSync(dir, { recursive: true, force: true });
});

const fingerprint = (pem: string) => new X509Certificate(pem).fingerprint256;
const x5t = (pem: string) => certificateThumbprint(new X509Certificate(pem));

const claimsOf = (token: string) => JSON.parse(Buffer.from(token.split('.')[1] as string, 'base64url').toString('utf8')) as { cnf?: Record<string, string> };

interface RotatingStack {
  egressDir: CredentialDir;
  ingressDir: CredentialDir;
  egress: EgressSidecar;
  ingress: IngressSidecar;
  egressLog: LogLine[];
  ingressLog: LogLine[];
  port: number;
  first: { client: IssuedCertificate; server: IssuedCertificate };
}

/** Ingress and egress following their certificate directories; routes `api` (egress tokens), `agent` (agent tokens), `as` (the token endpoint). */
async function startRotatingStack(t: TestContext, name: string, extraRoutes: EgressRoute[] = []): Promise<RotatingStack> {
  const client = await issueClientCertificate(ca, 'egress');
  const server = await issueServerCertificate(ca);
  const egressDir = new CredentialDir(join(dir, name, 'egress'), 'kubernetes');
  egressDir.write(client, ca.cert);
  const ingressDir = new CredentialDir(join(dir, name, 'ingress'), 'rename');
  ingressDir.write(server, ca.cert);
  const egressMem = memoryLog('egress');
  const ingressMem = memoryLog('ingress');
  const follow = (d: CredentialDir, log: typeof egressMem.log) =>
    ReloadableCredentials.fromFiles({ certPath: d.cert, keyPath: d.key, caPath: d.ca, requireChain: false, debounceMs: 50, pollMs: 1000, log });
  const egressCreds = follow(egressDir, egressMem.log);
  const ingressCreds = follow(ingressDir, ingressMem.log);
  // Hooks run in the order they were added: the egress goes first, then the ingress.
  const closing: Array<() => unknown> = [];
  t.after(async () => {
    for (const close of closing.reverse()) await close();
    egressCreds.close();
    ingressCreds.close();
  });
  const ingress = await startIngress({
    listen: '127.0.0.1:0',
    credentials: ingressCreds,
    upstream: app.url,
    tokens: jwtAccessTokenValidator({ keys: localJwks(as.jwks()), issuer: as.issuer, audience: 'api' }),
    metricsListen: '127.0.0.1:0',
    drainTimeoutMs: 2000,
    log: { level: 'info', destination: ingressMem.destination },
  });
  closing.push(() => ingress.close());
  const egress = await startEgress({
    listen: '127.0.0.1:0',
    credentials: egressCreds,
    routes: [
      { name: 'api', upstream: ingress.url, audience: 'api', egressToken: true, scope: 'read' },
      { name: 'agent', upstream: ingress.url, audience: 'api' },
      { name: 'as', upstream: as.url },
      ...extraRoutes,
    ],
    tokenEndpoint: { endpoint: `${as.url}/token`, clientId: 'egress' },
    metricsListen: '127.0.0.1:0',
    drainTimeoutMs: 2000,
    log: { level: 'info', destination: egressMem.destination },
  });
  closing.push(() => egress.close());
  const port = (egress.endpoint as { port: number }).port;
  return { egressDir, ingressDir, egress, ingress, egressLog: egressMem.lines, ingressLog: ingressMem.lines, port, first: { client, server } };
}

async function readyz(url: string): Promise<{ status: number; body: string }> {
  const res = await fetch(`${url}/readyz`, { signal: AbortSignal.timeout(REQUEST_MS) });
  return { status: res.status, body: await res.text() };
}

/** POST /api/upload with a 10-byte body of which only 5 bytes are sent until `finish()`. */
function slowUpload(port: number): { answer: Promise<Answer>; finish(): void } {
  let request: ClientRequest | undefined;
  const answer = new Promise<Answer>((resolve, reject) => {
    request = httpRequest(
      { host: '127.0.0.1', port, path: '/api/upload', method: 'POST', agent: false, headers: { 'content-type': 'text/plain', 'content-length': '10' }, timeout: REQUEST_MS },
      (res) => {
        const chunks: Buffer[] = [];
        res.on('data', (c: Buffer) => chunks.push(c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') }));
      },
    );
    request.on('timeout', () => request?.destroy(new Error('upload timed out')));
    request.on('error', reject);
    request.write('01234');
  });
  return { answer, finish: () => request?.end('56789') };
}

describe('certificate rotation without restart', () => {
  it('egress: new connections, proofs and tokens use the new certificate; in-flight requests finish on the old connection, which closes; stale agent tokens get a recoverable 401; /readyz follows the certificate', { timeout: 60_000 }, async (t) => {
    // An HTTP/1.1-only mTLS upstream answering with the client certificate it sees (slowly for /slow).
    const h1Pair = await issueServerCertificate(ca);
    const h1Open = new Map<string, number>();
    const h1 = createHttpsServer({ cert: h1Pair.cert, key: h1Pair.key, ca: ca.cert, requestCert: true, rejectUnauthorized: true }, (req, res) => {
      const seen = (req.socket as TLSSocket).getPeerX509Certificate()?.fingerprint256 ?? 'none';
      setTimeout(() => res.end(seen), req.url === '/slow' ? 800 : 0);
    });
    h1.on('secureConnection', (socket: TLSSocket) => {
      const fp = socket.getPeerX509Certificate()?.fingerprint256 ?? 'none';
      h1Open.set(fp, (h1Open.get(fp) ?? 0) + 1);
      socket.once('close', () => h1Open.set(fp, (h1Open.get(fp) ?? 0) - 1));
    });
    await new Promise<void>((resolve) => h1.listen(0, '127.0.0.1', resolve));
    t.after(() => new Promise<void>((resolve) => (h1.closeAllConnections(), h1.close(() => resolve()))));
    const s = await startRotatingStack(t, 'egress', [{ name: 'h1', upstream: `https://127.0.0.1:${(h1.address() as AddressInfo).port}` }]);
    const agent = new HttpAgent({ keepAlive: true });
    t.after(() => agent.destroy());
    const get = (path: string, headers: Record<string, string> = {}) => h1Call(s.port, agent, path, { headers, timeoutMs: REQUEST_MS });

    const first = await get('/api/one');
    assert.equal(first.status, 200, first.body);
    assert.equal(boundTo(first), x5t(s.first.client.cert), "the egress's token is bound to its certificate");
    assert.equal(s.egress.stats.tokensFetched, 1);
    assert.equal((await get('/h1/fp')).body, fingerprint(s.first.client.cert));
    const staleToken = await agentToken(s.port, agent);
    assert.equal(claimsOf(staleToken).cnf?.['x5t#S256'], x5t(s.first.client.cert));
    assert.equal((await get('/agent/one', bearer(staleToken))).status, 200);
    const opened = s.egress.stats.upstreamConnectionsOpened;

    // In flight across the switch: an h2 stream through the ingress and an HTTP/1.1 request; and an
    // upload that got its (egress) token before the switch and its connection after it.
    const slow = get('/api/slow?ms=1500');
    const slowH1 = get('/h1/slow');
    const upload = slowUpload(s.port);
    await waitFor(() => app.seen.some((r) => r.url === '/slow?ms=1500') && s.egress.state().activeRequests === 3, {
      timeoutMs: REQUEST_MS,
      message: () => `the slow requests in flight and the upload started: ${JSON.stringify(s.egress.state())}`,
    });
    const renewed = await issueClientCertificate(ca, 'egress');
    s.egressDir.write(renewed, ca.cert);
    await waitFor(() => s.egress.certificate().generation === 2, { timeoutMs: SWITCH_MS, message: () => `egress switched to generation 2 (${JSON.stringify(s.egress.certificate())})` });
    assert.equal(s.egress.certificate().fingerprint, fingerprint(renewed.cert));

    const next = await get('/api/two');
    assert.equal(next.status, 200, next.body);
    assert.equal(boundTo(next), x5t(renewed.cert), 'a token bound to the new certificate, on a connection made with it');
    assert.equal(s.egress.stats.tokensFetched, 2, 'one token fetched with the new certificate');
    upload.finish();
    const uploaded = await upload.answer;
    assert.equal(uploaded.status, 200, `the upload whose token predates the switch: ${uploaded.body}`);
    assert.equal(boundTo(uploaded), x5t(renewed.cert), 'it was sent with the token of the new certificate, on a new connection');
    assert.equal((JSON.parse(uploaded.body) as { body: string }).body, '0123456789');
    assert.equal(s.egress.stats.tokensFetched, 2, 'the token fetched for the switch');
    assert.equal((await get('/h1/fp')).body, fingerprint(renewed.cert), 'HTTP/1.1: a new socket with the new certificate');
    assert.ok(s.egress.stats.upstreamConnectionsOpened > opened);
    const discovery = JSON.parse((await get('/.well-known/tether-egress')).body) as { cnf: Record<string, string> };
    assert.equal(discovery.cnf['x5t#S256'], x5t(renewed.cert), 'the discovery document follows the certificate');

    // The requests in flight finished on their old connections, which then closed.
    assert.deepEqual([(await slow).status, (await slow).body], [200, 'slow done']);
    assert.equal((await slowH1).body, fingerprint(s.first.client.cert), 'the in-flight HTTP/1.1 request kept its connection');
    await waitFor(() => s.egress.state().connectionStates === 2 && h1Open.get(fingerprint(s.first.client.cert)) === 0, {
      timeoutMs: SWITCH_MS,
      message: () => `only the new api and h1 connections left: ${JSON.stringify(s.egress.state())}, h1 sockets open ${JSON.stringify([...h1Open])}`,
    });

    // A token bound to the old certificate is refused on a new connection; a new one works.
    const stale = await get('/agent/two', bearer(staleToken));
    assert.equal(stale.status, 401);
    assert.match(String(stale.headers['www-authenticate']), /error="invalid_token"/);
    const fresh = await agentToken(s.port, agent);
    assert.equal(claimsOf(fresh).cnf?.['x5t#S256'], x5t(renewed.cert));
    assert.equal((await get('/agent/three', bearer(fresh))).status, 200);

    // /readyz follows the certificate in use: one that expires soon, then expired.
    assert.deepEqual(await readyz(s.egress.metrics!.url), { status: 200, body: '{"status":"ready"}' });
    const shortLived = await issueClientCertificate(ca, 'egress', { days: 3 / 86_400 });
    s.egressDir.write(shortLived, ca.cert);
    await waitFor(() => s.egress.certificate().generation === 3, { timeoutMs: SWITCH_MS, message: 'egress switched to the short-lived certificate' });
    const notAfter = Date.parse(new X509Certificate(shortLived.cert).validTo);
    await waitFor(() => Date.now() > notAfter, { timeoutMs: 10_000, message: 'the short-lived certificate expired' });
    assert.deepEqual(await readyz(s.egress.metrics!.url), { status: 503, body: '{"status":"not_ready","reason":"certificate_expired"}' });
    assert.ok(s.egressLog.some((l) => l.msg === 'egress certificate switched: new upstream connections and tokens use it' && l.generation === 2));
  });

  it('ingress: new connections get the new server certificate, an open connection keeps its own and keeps working; /readyz follows the certificate in use', { timeout: 60_000 }, async (t) => {
    const s = await startRotatingStack(t, 'ingress');
    const open = () => openRawConnection(s.ingress.url, apiIdentity, { protocol: 'h2', ca: ca.cert });
    const before = await open();
    t.after(() => before.close());
    assert.equal(before.socket.getPeerX509Certificate()?.fingerprint256, fingerprint(s.first.server.cert));
    const shortLived = await issueServerCertificate(ca, new Date(Date.now() + 3000));
    s.ingressDir.write(shortLived, ca.cert);
    await waitFor(() => s.ingress.certificate().generation === 2, { timeoutMs: SWITCH_MS, message: 'ingress switched to generation 2' });
    const afterSwitch = await open();
    t.after(() => afterSwitch.close());
    assert.equal(afterSwitch.socket.getPeerX509Certificate()?.fingerprint256, fingerprint(shortLived.cert), 'a new connection gets the new certificate');
    assert.equal((await withTimeout(before.request({ path: METADATA, headers: [] }), REQUEST_MS, 'old connection')).status, 200, 'the old connection still works');
    assert.equal((await withTimeout(afterSwitch.request({ path: METADATA, headers: [] }), REQUEST_MS, 'new connection')).status, 200);
    // Through the egress too (new egress connections verify the new server certificate).
    const agent = new HttpAgent({ keepAlive: false });
    assert.equal((await h1Call(s.port, agent, '/api/x', { timeoutMs: REQUEST_MS })).status, 200);
    assert.deepEqual(await readyz(s.ingress.metrics!.url), { status: 200, body: '{"status":"ready"}' });
    const notAfter = Date.parse(new X509Certificate(shortLived.cert).validTo);
    await waitFor(() => Date.now() > notAfter, { timeoutMs: 10_000, message: 'the short-lived certificate expired' });
    assert.deepEqual(await readyz(s.ingress.metrics!.url), { status: 503, body: '{"status":"not_ready","reason":"certificate_expired"}' });
    s.ingressDir.write(await issueServerCertificate(ca), ca.cert);
    await waitFor(() => s.ingress.certificate().generation === 3, { timeoutMs: SWITCH_MS, message: 'ingress switched to generation 3' });
    assert.deepEqual(await readyz(s.ingress.metrics!.url), { status: 200, body: '{"status":"ready"}' });
  });

  it('30 s of load (8 egress-token agents, 4 agent-token agents) with both sidecars rotating every 2 s: no egress-token request lost, stale agent tokens recovered', { timeout: 120_000 }, async (t) => {
    const LOAD_MS = 30_000;
    const EVERY_MS = 2000;
    const rotations = LOAD_MS / EVERY_MS - 1;
    const s = await startRotatingStack(t, 'load');
    const clients = await Promise.all(Array.from({ length: rotations }, () => issueClientCertificate(ca, 'egress')));
    const servers = await Promise.all(Array.from({ length: rotations }, () => issueServerCertificate(ca)));
    const outcome = newOutcome();
    const started = Date.now();
    const until = started + LOAD_MS;
    const work = startEgressTokenAgents(t, s.port, 8, until, outcome);
    for (let a = 0; a < 4; a++) {
      const agent = new HttpAgent({ keepAlive: true, maxSockets: 1 });
      t.after(() => agent.destroy());
      work.push(agentTokenAgent(s.port, agent, `agent-${a}`, until, outcome));
    }
    const switchTimes: number[] = [];
    for (let n = 0; n < rotations; n++) {
      // Pacing of the load, not synchronisation: the switches themselves are waited for below.
      await new Promise((resolve) => setTimeout(resolve, Math.max(0, started + (n + 1) * EVERY_MS - Date.now())));
      const client = clients[n] as IssuedCertificate;
      const server = servers[n] as IssuedCertificate;
      const written = Date.now();
      s.egressDir.write(client, ca.cert);
      s.ingressDir.write(server, ca.cert);
      await waitFor(() => s.egress.certificate().fingerprint === fingerprint(client.cert) && s.ingress.certificate().fingerprint === fingerprint(server.cert), {
        timeoutMs: SWITCH_MS,
        message: () => `rotation ${n + 1} applied: egress ${JSON.stringify(s.egress.certificate())}, ingress ${JSON.stringify(s.ingress.certificate())}`,
      });
      switchTimes.push(Date.now() - written);
    }
    await withTimeout(Promise.all(work), LOAD_MS + 2 * REQUEST_MS, `the agents to finish (${outcome.ok} answered)`);
    const report = { ok: outcome.ok, agentOk: outcome.agentOk, stale: outcome.stale, tokensFetched: s.egress.stats.tokensFetched, opened: s.egress.stats.upstreamConnectionsOpened, switchMs: Math.max(...switchTimes) };
    t.diagnostic(JSON.stringify(report));

    assert.deepEqual(outcome.failures.slice(0, 10), [], `${outcome.failures.length} failed requests; ${JSON.stringify(report)}`);
    assert.ok(outcome.ok > 100 && outcome.agentOk > 20, JSON.stringify(report));
    assert.equal(s.egress.certificate().generation, rotations + 1);
    assert.equal(s.ingress.certificate().generation, rotations + 1);
    // Each egress certificate was used: its tokens were fetched with it and verified on connections made with it.
    const thumbprints = new Set([s.first.client, ...clients].map((c) => x5t(c.cert)));
    for (const bound of outcome.boundTo.keys()) assert.ok(thumbprints.has(bound), `bound to a certificate of ours: ${bound}`);
    assert.ok(outcome.boundTo.size >= rotations, `tokens of ${outcome.boundTo.size} egress certificates seen by the ingress, ${rotations + 1} used`);
    assert.ok(s.egress.stats.tokensFetched >= rotations + 1, `tokens fetched: ${s.egress.stats.tokensFetched}`);
    assert.ok(s.egress.stats.upstreamConnectionsOpened >= 2 * (rotations + 1), `upstream connections opened: ${s.egress.stats.upstreamConnectionsOpened}`);
    // Stale agent tokens: a 401 invalid_token after a switch, then a new token worked.
    assert.ok(outcome.stale > 0, 'agent tokens bound to an earlier certificate were refused');
    assert.deepEqual(s.egressLog.filter((l) => l.msg === REFUSED), [], 'no pair refused during the load');
    assert.deepEqual(s.ingressLog.filter((l) => l.msg === REFUSED), []);
    // Connections of earlier certificates are gone: one per route (api, agent, as) at most.
    await waitFor(() => s.egress.state().connectionStates <= 3, { timeoutMs: SWITCH_MS, message: () => `old connections closed: ${JSON.stringify(s.egress.state())}` });
  });

  it('a mismatched pair written during load is refused with a warn line; the current pair stays in use and traffic keeps flowing', { timeout: 60_000 }, async (t) => {
    const s = await startRotatingStack(t, 'mismatch');
    const outcome = newOutcome();
    const until = Date.now() + 4000;
    const work = startEgressTokenAgents(t, s.port, 8, until, outcome);
    await waitFor(() => outcome.ok >= 20, { timeoutMs: REQUEST_MS, message: () => `traffic flowing (${outcome.ok})` });
    const other = await issueClientCertificate(ca, 'egress');
    s.egressDir.write(await issueClientCertificate(ca, 'egress'), ca.cert, other.key);
    s.ingressDir.write(await issueServerCertificate(ca), ca.cert, other.key);
    const refused = (lines: LogLine[]) => lines.find((l) => l.msg === REFUSED);
    await waitFor(() => refused(s.egressLog) !== undefined && refused(s.ingressLog) !== undefined, { timeoutMs: SWITCH_MS, message: 'both refusals logged' });
    for (const line of [refused(s.egressLog), refused(s.ingressLog)]) {
      assert.equal(line?.level, 40, 'warn');
      assert.equal(line?.reason, 'key_mismatch');
    }
    assert.ok(!JSON.stringify([...s.egressLog, ...s.ingressLog]).includes('PRIVATE KEY'), 'no key material in the logs');
    const servedBefore = outcome.ok;
    await withTimeout(Promise.all(work), 4000 + 2 * REQUEST_MS, 'the agents to finish');
    assert.deepEqual(outcome.failures.slice(0, 10), [], `${outcome.failures.length} failed requests`);
    assert.ok(outcome.ok > servedBefore, 'traffic kept flowing after the refusal');
    assert.deepEqual([s.egress.certificate().generation, s.ingress.certificate().generation], [1, 1]);
    assert.deepEqual([...outcome.boundTo.keys()], [x5t(s.first.client.cert)], 'every token bound to the current certificate');
    const raw = await openRawConnection(s.ingress.url, apiIdentity, { protocol: 'h2', ca: ca.cert });
    t.after(() => raw.close());
    assert.equal(raw.socket.getPeerX509Certificate()?.fingerprint256, fingerprint(s.first.server.cert), 'new ingress connections still get the current certificate');
  });
});
