/**
 * The agent delegation chain over MCP (issues 6 and 16): each user logs in at the company's
 * identity provider; agent A (MCP client) discovers the AS from B's first 401 and exchanges the
 * user's IdP token for its own session-bound token; A -> its egress -> B's ingress -> agent B (MCP
 * server) -> token exchange at the AS -> B's egress -> C's ingress -> service C, every box a
 * separate process on loopback; then live attacks (T3, T4, T1, T5, T6, stolen IdP tokens,
 * deferred key binding).
 */
import { randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenClient } from '@tether/as';
import { writeDevPki } from '@tether/pki';
import { runAttacks } from './attacks.js';
import { scriptedLogin, type LoginResult } from './login.js';
import { DemoProcess } from './processes.js';
import { exchange } from './roles/shared.js';
import { type AgentRunResult, type EgressStatsSnapshot, type IngressStatsSnapshot } from './protocol.js';
import type { DemoOptions, DemoReport, HopReport, StackInfo } from './report.js';

export type { AttackReport, DemoOptions, DemoReport, HopReport, StackInfo } from './report.js';

export const USERS = ['alice', 'bob', 'carol'] as const;
const WORKLOADS = ['agent-a', 'agent-b', 'service-c'] as const;
const THIEF = 'thief';
/**
 * Alice's own device, a client of the AS (its own certificate) for deferred key binding: it binds
 * a token for B to A's sidecar key. Not named `alice`: the AS refuses to exchange an IdP token
 * whose subject is the name of one of its clients.
 */
const ALICE_DEVICE = 'alice-laptop';
/** A certificate from the demo CA that the AS does not register. */
const INTRUDER = 'intruder';
/** B's MCP resource identifier (RFC 8707 / RFC 9728 `resource`), served by B's ingress. */
const B_RESOURCE = 'https://agent-b.tether.local';
/** The tether AS's resource identifier at the identity provider: the `aud` of the users' IdP tokens. */
const AS_AT_IDP = 'https://as.tether.local';
/** Agent A's registration at the identity provider: a public native client (loopback redirect, PKCE). */
const IDP_CLIENT = 'agent-a';

function diff(after: EgressStatsSnapshot, before: EgressStatsSnapshot): EgressStatsSnapshot {
  return {
    requests: after.requests - before.requests,
    proofsSigned: after.proofsSigned - before.proofsSigned,
    proofCacheHits: after.proofCacheHits - before.proofCacheHits,
    retries: after.retries - before.retries,
    upstreamConnectionsOpened: after.upstreamConnectionsOpened - before.upstreamConnectionsOpened,
    failures: after.failures,
  };
}

function hop(name: HopReport['hop'], egress: EgressStatsSnapshot, ingress: IngressStatsSnapshot, tokens: number): HopReport {
  // Each request with a token got a proof, signed or reused; the others are A's discovery.
  const withToken = egress.proofsSigned + egress.proofCacheHits;
  return {
    hop: name,
    requests: withToken,
    unauthenticated: egress.requests - withToken,
    connections: egress.upstreamConnectionsOpened,
    tokens,
    proofsSigned: egress.proofsSigned,
    fullVerifications: ingress.proofVerifications,
    cacheHits: ingress.cacheHits,
    accepted: ingress.accepted,
    signaturesPerRequest: withToken === 0 ? 0 : Number((egress.proofsSigned / withToken).toFixed(4)),
  };
}

function newProcesses() {
  return {
    idp: new DemoProcess('idp'),
    as: new DemoProcess('as'),
    egressA: new DemoProcess('egress'),
    agentA: new DemoProcess('agent-a'),
    ingressB: new DemoProcess('ingress'),
    appB: new DemoProcess('app-b'),
    egressB: new DemoProcess('egress'),
    ingressC: new DemoProcess('ingress'),
    appC: new DemoProcess('app-c'),
  };
}
type Processes = ReturnType<typeof newProcesses>;

interface Stack {
  file: (name: string) => string;
  read: (name: string) => Buffer;
  idp: { issuer: string };
  as: { issuer: string; url: string; tokenEndpoint: string; jwksUri: string };
  ingressB: string;
  ingressC: string;
  egressA: Record<string, string>;
  egressB: Record<string, string>;
  passwords: Record<string, string>;
}

/** PKI, identity provider, AS, then C, B and A with their sidecars. */
async function startStack(procs: Processes, pkiDir: string, dir: string, mark: (what: string) => void): Promise<Stack> {
  await writeDevPki(pkiDir, { clients: [...WORKLOADS, ALICE_DEVICE, THIEF, INTRUDER] });
  const file = (name: string) => join(pkiDir, name);
  const read = (name: string) => readFileSync(file(name));
  const caFile = file('ca.pem');
  mark('pki');
  const passwords = Object.fromEntries(USERS.map((u) => [u, randomBytes(9).toString('base64url')]));
  const server = { certFile: file('server.pem'), keyFile: file('server.key'), caFile };
  const idp = await procs.idp.call<{ issuer: string }>('start', {
    certFile: server.certFile,
    keyFile: server.keyFile,
    users: USERS.map((u) => ({ sub: u, password: passwords[u], email: `${u}@example.com` })),
    clients: [{ client_id: IDP_CLIENT, redirect_uris: ['http://127.0.0.1/callback'] }],
    resource: AS_AT_IDP,
  });
  const as = await procs.as.call<Stack['as']>('start', {
    pkiDir,
    dataDir: join(dir, 'as-data'),
    tmbUsers: [ALICE_DEVICE],
    tmbHolder: 'agent-a',
    unregistered: [INTRUDER],
    idp: { issuer: idp.issuer, caFile, audience: AS_AT_IDP, clients: ['agent-a'], claims: ['email'] },
    identifiers: { 'agent-b': [B_RESOURCE] },
  });
  const spiffe = (name: string) => `spiffe://tether.local/${name}`;
  mark('idp and as');
  const appC = await procs.appC.call<string>('start');
  const ingressC = await procs.ingressC.call<string>('start', { ...server, upstream: appC, issuer: as.issuer, jwksUri: as.jwksUri, audience: ['service-c', spiffe('service-c')] });
  const egressB = await procs.egressB.call<Record<string, string>>('start', {
    certFile: file('agent-b.pem'),
    keyFile: file('agent-b.key'),
    caFile,
    listeners: [
      { name: 'api', routes: [{ name: 'c', upstream: ingressC, audience: ['service-c'] }] },
      { name: 'token', routes: [{ name: 'as', upstream: as.url }] },
    ],
  });
  const appB = await procs.appB.call<string>('start', { egressUrl: egressB.api, tokenUrl: `${egressB.token}/as/token`, audienceC: 'service-c' });
  const ingressB = await procs.ingressB.call<string>('start', { ...server, upstream: appB, issuer: as.issuer, jwksUri: as.jwksUri, audience: ['agent-b', spiffe('agent-b'), B_RESOURCE], resource: B_RESOURCE });
  const egressA = await procs.egressA.call<Record<string, string>>('start', {
    certFile: file('agent-a.pem'),
    keyFile: file('agent-a.key'),
    caFile,
    listeners: [
      { name: 'mcp', routes: [{ name: 'b', upstream: ingressB, audience: ['agent-b', B_RESOURCE] }] },
      { name: 'token', routes: [{ name: 'as', upstream: as.url }] },
    ],
  });
  mark('sidecars');
  return { file, read, idp, as, ingressB, ingressC, egressA, egressB, passwords };
}

/** A token from alice's own device (client_credentials with its certificate), bound to A's sidecar key (`tmb`). */
async function tmbTokenFromAliceDevice(s: Stack): Promise<string> {
  const discovery = (await (await fetch(`${s.egressA.mcp}/.well-known/tether-egress`, { signal: AbortSignal.timeout(10_000) })).json()) as { tmb: string };
  const client = new TokenClient({ cert: s.read(`${ALICE_DEVICE}.pem`), key: s.read(`${ALICE_DEVICE}.key`), ca: s.read('ca.pem') });
  try {
    const r = await client.post(s.as.tokenEndpoint, { grant_type: 'client_credentials', client_id: ALICE_DEVICE, audience: 'agent-b', tmb: discovery.tmb });
    if (r.status !== 200 || typeof r.json?.access_token !== 'string') throw new Error(`tmb token for ${ALICE_DEVICE} refused: ${r.status} ${r.text}`);
    return r.json.access_token;
  } finally {
    client.close();
  }
}

/**
 * A fresh token for B, for `--keep-running`: alice logs in again, A's exchange through its egress.
 * A refused exchange is an error: the stack is not handed over with a token that cannot work.
 */
function freshTokenForB(s: Stack, login: LoginResult): Promise<string> {
  return exchange(`${s.egressA.token}/as/token`, 'agent-a', login.accessToken, { resource: B_RESOURCE });
}

function stackInfo(s: Stack, dir: string, pkiDir: string, tokenForB: string, procs: Processes): StackInfo {
  return {
    dir,
    caFile: s.file('ca.pem'),
    pkiDir,
    issuer: s.as.issuer,
    tokenEndpoint: s.as.tokenEndpoint,
    identityProvider: s.idp.issuer,
    mcpUrlViaEgressA: `${s.egressA.mcp}/b/mcp`,
    tokenUrlViaEgressA: `${s.egressA.token}/as/token`,
    ingressB: s.ingressB,
    ingressC: s.ingressC,
    tokenForB,
    pids: Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, p.pid])),
  };
}

interface Snapshots {
  egressA: Record<string, EgressStatsSnapshot>;
  egressB: Record<string, EgressStatsSnapshot>;
}

async function egressSnapshots(procs: Processes): Promise<Snapshots> {
  return { egressA: await procs.egressA.call('stats'), egressB: await procs.egressB.call('stats') };
}

/** The per-hop counts of the honest phase. */
async function hopReports(procs: Processes, before: Snapshots, run: AgentRunResult): Promise<{ hops: HopReport[]; exchangesByB: number }> {
  const after = await egressSnapshots(procs);
  const ingressB = await procs.ingressB.call<IngressStatsSnapshot>('stats');
  const ingressC = await procs.ingressC.call<IngressStatsSnapshot>('stats');
  const appB = await procs.appB.call<{ exchanges: number }>('stats');
  const aToB = diff(after.egressA.mcp as EgressStatsSnapshot, before.egressA.mcp as EgressStatsSnapshot);
  const bToC = diff(after.egressB.api as EgressStatsSnapshot, before.egressB.api as EgressStatsSnapshot);
  return {
    hops: [hop('A->B', aToB, ingressB, run.tokens + (run.tmbViaSidecar === undefined ? 0 : 1)), hop('B->C', bToC, ingressC, appB.exchanges)],
    exchangesByB: appB.exchanges,
  };
}

function honestReport(run: AgentRunResult, logins: Map<string, LoginResult>, exchangesByB: number): DemoReport['honest'] {
  return {
    users: run.users.length,
    toolCalls: run.users.reduce((n, u) => n + u.calls, 0),
    succeeded: run.users.reduce((n, u) => n + u.ok, 0),
    progressNotifications: run.users.reduce((n, u) => n + u.progress, 0),
    principals: run.users.map((u) => ({ user: u.user, sub: u.sub, actChain: u.actChain, atB: { sub: u.atBSub, actChain: u.atBActChain }, login: logins.get(u.user)?.method ?? '-' })).sort((a, b) => a.user.localeCompare(b.user)),
    tokenExchanges: { byA: run.tokens, byB: exchangesByB },
    errors: run.errors,
  };
}

/** Honest when every call succeeded and C saw each user on top, acted for by B on behalf of A. */
function honestOk(r: DemoReport, callsPerUser: number): boolean {
  const h = r.honest;
  const chainOk =
    h.principals.length === USERS.length &&
    h.principals.every((p) => p.sub === p.user && p.actChain.join(',') === 'agent-b,agent-a' && p.atB.sub === p.user && p.atB.actChain.join(',') === 'agent-a');
  return h.errors.length === 0 && h.toolCalls === USERS.length * (callsPerUser + 1) && h.succeeded === h.toolCalls && chainOk && r.deferredKeyBinding.viaSidecar;
}

/** Run the whole demo and return its report. Throws when the stack cannot be brought up. */
export async function runAgentChainDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const started = performance.now();
  const callsPerUser = options.callsPerUser ?? 20;
  const progressSteps = options.progressSteps ?? 5;
  const login = options.login ?? scriptedLogin;
  const dir = mkdtempSync(join(tmpdir(), 'tether-mcp-demo-'));
  const pkiDir = join(dir, 'pki');
  const procs = newProcesses();
  const closers: Array<{ close(): unknown }> = [];
  const stopAll = async () => {
    const codes: Record<string, number | null> = {};
    await Promise.all(Object.entries(procs).map(async ([name, p]) => (codes[name] = await p.stop())));
    return codes;
  };
  const onAbort = () => void stopAll();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  // TETHER_DEMO_TRACE=1: setup milestones (ms since start) on stderr.
  const mark = (what: string) => {
    if (process.env.TETHER_DEMO_TRACE === '1') process.stderr.write(`${what} ${Math.round(performance.now() - started)}\n`);
  };
  try {
    const s = await startStack(procs, pkiDir, dir, mark);
    const ca = s.read('ca.pem');
    // The users log in at the identity provider (authorization code + PKCE), one after the other.
    const logins = new Map<string, LoginResult>();
    const loginOf = (user: string) => login({ user, password: s.passwords[user] as string, issuer: s.idp.issuer, ca, caFile: s.file('ca.pem'), clientId: IDP_CLIENT, resource: AS_AT_IDP });
    for (const user of USERS) logins.set(user, await loginOf(user));
    mark('logins');
    const tmbToken = await tmbTokenFromAliceDevice(s);
    const before = await egressSnapshots(procs);
    // A finds the AS from B's first 401 (MCP authorization), on the connection its MCP sessions then use.
    await procs.agentA.call('discover', { egress: { mcp: s.egressA.mcp, token: s.egressA.token } });
    const tSetup = performance.now();
    if (options.signal?.aborted) throw new Error('interrupted');

    // The workload: A discovers the AS from B, exchanges each user's IdP token for its own B token
    // (through its egress), then MCP sessions, one per user, over A's one connection to B; B exchanges and calls C.
    const users = USERS.map((user) => ({ user, token: (logins.get(user) as LoginResult).accessToken }));
    const run = await procs.agentA.call<AgentRunResult>(
      'run',
      { egress: { mcp: s.egressA.mcp, token: s.egressA.token }, users, callsPerUser, progressSteps, tmbUser: ALICE_DEVICE, tmbToken, ingressBUrl: s.ingressB, caFile: s.file('ca.pem') },
      60_000,
    );
    const tHonest = performance.now();
    const { hops, exchangesByB } = await hopReports(procs, before, run);

    const attacks = await runAttacks({
      ca,
      thief: { cert: s.read(`${THIEF}.pem`), key: s.read(`${THIEF}.key`) },
      intruder: { cert: s.read(`${INTRUDER}.pem`), key: s.read(`${INTRUDER}.key`) },
      agentA: { cert: s.read('agent-a.pem'), key: s.read('agent-a.key') },
      ingressB: s.ingressB,
      ingressC: s.ingressC,
      tokenEndpoint: s.as.tokenEndpoint,
      procs,
      run,
      idpToken: (logins.get('alice') as LoginResult).accessToken,
      closers,
    });
    const tAttacks = performance.now();
    const report: DemoReport = {
      ok: false,
      durationMs: Math.round(tAttacks - started),
      phasesMs: { setup: Math.round(tSetup - started), honest: Math.round(tHonest - tSetup), attacks: Math.round(tAttacks - tHonest), shutdown: 0 },
      honest: honestReport(run, logins, exchangesByB),
      identityProvider: { issuer: s.idp.issuer },
      discovery: run.discovery ?? null,
      deferredKeyBinding: { viaSidecar: run.tmbViaSidecar?.ok === true, principal: run.tmbViaSidecar?.principal ?? null },
      hops,
      attacks,
      exitCodes: {},
    };
    report.ok = honestOk(report, callsPerUser) && report.discovery?.resource === B_RESOURCE && attacks.every((a) => a.pass);

    if (options.hold !== undefined) await options.hold(stackInfo(s, dir, pkiDir, await freshTokenForB(s, await loginOf('alice')), procs), report);
    for (const c of closers.splice(0)) await c.close();
    report.exitCodes = await stopAll();
    const tEnd = performance.now();
    report.phasesMs.shutdown = Math.round(tEnd - tAttacks);
    report.durationMs = Math.round(tEnd - started);
    report.ok = report.ok && Object.values(report.exitCodes).every((c) => c === 0);
    return report;
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    for (const c of closers) {
      try {
        await c.close();
      } catch {
        // already closed
      }
    }
    await stopAll();
    rmSync(dir, { recursive: true, force: true });
  }
}
