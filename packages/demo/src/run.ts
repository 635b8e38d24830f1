/**
 * The agent delegation chain over MCP (issue 6): agent A (MCP client) -> its egress -> B's ingress ->
 * agent B (MCP server) -> token exchange at the AS -> B's egress -> C's ingress -> service C, every
 * box a separate process on loopback, then live attacks (T3, T4, T1, T5, T6, deferred key binding).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { TokenClient } from '@tether/as';
import { createSessionBindingProof, parseWwwAuthenticate, SessionBoundClient } from '@tether/core';
import { writeDevPki } from '@tether/pki';
import { DemoProcess } from './processes.js';
import { TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, type AgentRunResult, type EgressStatsSnapshot, type IngressStatsSnapshot } from './protocol.js';
import { RawConnection } from './raw-connection.js';

export const USERS = ['alice', 'bob', 'carol'] as const;
const WORKLOADS = ['agent-a', 'agent-b', 'service-c'] as const;
const THIEF = 'thief';
const TIMEOUT_MS = 10_000;

export interface HopReport {
  hop: 'A->B' | 'B->C';
  /** Requests the egress sent on this hop (MCP messages for A->B, API calls for B->C). */
  requests: number;
  /** Upstream TLS connections the egress opened for this hop. */
  connections: number;
  /** Distinct access tokens used on this hop. */
  tokens: number;
  /** Session-Binding Proofs signed by the egress. */
  proofsSigned: number;
  /** Full proof verifications (signature checked) at the ingress. */
  fullVerifications: number;
  /** Requests the ingress served from its per-connection binding cache. */
  cacheHits: number;
  /** Requests the ingress accepted. */
  accepted: number;
  /** proofsSigned / requests. */
  signaturesPerRequest: number;
}

export interface AttackReport {
  id: string;
  /** The draft's threat ID(s) (section 6.1; T6 from revision -07). */
  threat: string;
  attempt: string;
  where: string;
  expected: { status: number; error: string };
  status: number;
  error: string | null;
  /** Refused with exactly the expected status and error code. */
  pass: boolean;
}

export interface DemoReport {
  ok: boolean;
  durationMs: number;
  phasesMs: { setup: number; honest: number; attacks: number; shutdown: number };
  honest: {
    users: number;
    toolCalls: number;
    succeeded: number;
    /** Progress notifications received by A for the streamed tool, all users. */
    progressNotifications: number;
    /** What service C saw for each user: subject and act chain (outermost actor first). */
    principals: Array<{ user: string; sub: string | null; actChain: string[] }>;
    tokenExchanges: { byA: number; byB: number };
    errors: string[];
  };
  deferredKeyBinding: { viaSidecar: boolean; principal: unknown };
  hops: HopReport[];
  attacks: AttackReport[];
  /** Exit codes of the child processes after SIGTERM (0 = clean). */
  exitCodes: Record<string, number | null>;
}

export interface DemoOptions {
  callsPerUser?: number;
  progressSteps?: number;
  signal?: AbortSignal;
  /** Called once the report is ready, before shutdown; resolve to shut down (`--keep-running`). */
  hold?: (stack: StackInfo, report: DemoReport) => Promise<void>;
}

export interface StackInfo {
  dir: string;
  caFile: string;
  pkiDir: string;
  issuer: string;
  tokenEndpoint: string;
  /** B's MCP endpoint through A's egress (plain HTTP; the egress adds A's identity and proofs). */
  mcpUrlViaEgressA: string;
  /** The AS token endpoint through A's egress (mTLS as agent-a). */
  tokenUrlViaEgressA: string;
  ingressB: string;
  ingressC: string;
  /** A fresh token for B (alice via agent-a), usable only through A's egress. */
  tokenForB: string;
  pids: Record<string, number | undefined>;
}




function challengeOf(headers: Record<string, string | string[] | undefined>): string | null {
  return parseWwwAuthenticate(headers['www-authenticate'] as string | undefined).find((c) => c.scheme === 'bearer')?.params.error ?? null;
}

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
  return {
    hop: name,
    requests: egress.requests,
    connections: egress.upstreamConnectionsOpened,
    tokens,
    proofsSigned: egress.proofsSigned,
    fullVerifications: ingress.proofVerifications,
    cacheHits: ingress.cacheHits,
    accepted: ingress.accepted,
    signaturesPerRequest: egress.requests === 0 ? 0 : Number((egress.proofsSigned / egress.requests).toFixed(4)),
  };
}

/** Run the whole demo and return its report. Throws when the stack cannot be brought up. */
export async function runAgentChainDemo(options: DemoOptions = {}): Promise<DemoReport> {
  const started = performance.now();
  const callsPerUser = options.callsPerUser ?? 20;
  const progressSteps = options.progressSteps ?? 5;
  const dir = mkdtempSync(join(tmpdir(), 'tether-mcp-demo-'));
  const pkiDir = join(dir, 'pki');
  const procs = {
    as: new DemoProcess('as'),
    egressA: new DemoProcess('egress'),
    agentA: new DemoProcess('agent-a'),
    ingressB: new DemoProcess('ingress'),
    appB: new DemoProcess('app-b'),
    egressB: new DemoProcess('egress'),
    ingressC: new DemoProcess('ingress'),
    appC: new DemoProcess('app-c'),
  };
  const closers: Array<{ close(): unknown }> = [];
  const stopAll = async () => {
    const codes: Record<string, number | null> = {};
    await Promise.all(Object.entries(procs).map(async ([name, p]) => (codes[name] = await p.stop())));
    return codes;
  };
  const onAbort = () => void stopAll();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  try {
    // 1. PKI (one certificate per workload, per user, and the thief's) and the AS.
    await writeDevPki(pkiDir, { clients: [...WORKLOADS, ...USERS, THIEF] });
    const file = (name: string) => join(pkiDir, name);
    const read = (name: string) => readFileSync(file(name));
    const ca = read('ca.pem');
    const caFile = file('ca.pem');
    // TETHER_DEMO_TRACE=1: setup milestones (ms since start) on stderr.
    const mark = (what: string) => {
      if (process.env.TETHER_DEMO_TRACE === '1') process.stderr.write(`${what} ${Math.round(performance.now() - started)}\n`);
    };
    mark('pki');
    const as = await procs.as.call<{ issuer: string; url: string; tokenEndpoint: string; jwksUri: string }>('start', { pkiDir, dataDir: join(dir, 'as-data'), tmbUsers: [...USERS], tmbHolder: 'agent-a' });
    const server = { certFile: file('server.pem'), keyFile: file('server.key'), caFile };
    const spiffe = (name: string) => `spiffe://tether.local/${name}`;

    // 2. Service C and its ingress; B's egress (B's key); agent B and its ingress; A's egress (A's key).
    mark('as');
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
    const ingressB = await procs.ingressB.call<string>('start', { ...server, upstream: appB, issuer: as.issuer, jwksUri: as.jwksUri, audience: ['agent-b', spiffe('agent-b')] });
    const egressA = await procs.egressA.call<Record<string, string>>('start', {
      certFile: file('agent-a.pem'),
      keyFile: file('agent-a.key'),
      caFile,
      listeners: [
        { name: 'mcp', routes: [{ name: 'b', upstream: ingressB, audience: ['agent-b'] }] },
        { name: 'token', routes: [{ name: 'as', upstream: as.url }] },
      ],
    });
    mark('sidecars');
    const tokenUrlA = `${egressA.token}/as/token`;

    // 3. The users log in (each with its own certificate, on its own device): a token for agent A.
    const userToken = async (user: string, params: Record<string, string>) => {
      const client = new TokenClient({ cert: read(`${user}.pem`), key: read(`${user}.key`), ca });
      try {
        const r = await client.post(as.tokenEndpoint, { grant_type: 'client_credentials', client_id: user, ...params });
        if (r.status !== 200 || typeof r.json?.access_token !== 'string') throw new Error(`token for ${user} refused: ${r.status} ${r.text}`);
        return r.json.access_token;
      } finally {
        client.close();
      }
    };
    const users = await Promise.all(USERS.map(async (user) => ({ user, token: await userToken(user, { audience: 'agent-a' }) })));
    // Deferred key binding: alice binds a token for B to A's sidecar key (`tmb`, from the egress's discovery document).
    const discovery = (await (await fetch(`${egressA.mcp}/.well-known/tether-egress`)).json()) as { tmb: string };
    mark('user tokens');
    const tmbToken = await userToken('alice', { audience: 'agent-b', tmb: discovery.tmb });

    const before = {
      egressA: await procs.egressA.call<Record<string, EgressStatsSnapshot>>('stats'),
      egressB: await procs.egressB.call<Record<string, EgressStatsSnapshot>>('stats'),
    };
    const tSetup = performance.now();
    if (options.signal?.aborted) throw new Error('interrupted');

    // 4. The workload: A exchanges each user's token for a B token (through its egress), then MCP
    //    sessions, one per user, over A's one shared connection to B; B exchanges and calls C.
    const run = await procs.agentA.call<AgentRunResult>(
      'run',
      { egressUrl: egressA.mcp, tokenUrl: tokenUrlA, audienceB: 'agent-b', users, callsPerUser, progressSteps, tmbUser: 'alice', tmbToken, ingressBUrl: ingressB, caFile },
      60_000,
    );
    const tHonest = performance.now();
    const after = {
      egressA: await procs.egressA.call<Record<string, EgressStatsSnapshot>>('stats'),
      egressB: await procs.egressB.call<Record<string, EgressStatsSnapshot>>('stats'),
      ingressB: await procs.ingressB.call<IngressStatsSnapshot>('stats'),
      ingressC: await procs.ingressC.call<IngressStatsSnapshot>('stats'),
      appB: await procs.appB.call<{ exchanges: number; toolCalls: number; callsToC: number }>('stats'),
    };
    const aToB = diff(after.egressA.mcp as EgressStatsSnapshot, before.egressA.mcp as EgressStatsSnapshot);
    const bToC = diff(after.egressB.api as EgressStatsSnapshot, before.egressB.api as EgressStatsSnapshot);
    const hops = [
      hop('A->B', aToB, after.ingressB, run.tokens + (run.tmbViaSidecar === undefined ? 0 : 1)),
      hop('B->C', bToC, after.ingressC, after.appB.exchanges),
    ];

    // 5. Attacks.
    const attacks: AttackReport[] = [];
    const add = (a: Omit<AttackReport, 'pass'>) => attacks.push({ ...a, pass: a.status === a.expected.status && a.error === a.expected.error });
    const thief = { cert: read(`${THIEF}.pem`), key: read(`${THIEF}.key`) };
    const agentAKeys = { cert: read('agent-a.pem'), key: read('agent-a.key') };
    const stolen = await procs.agentA.call<string>('exfiltrate');
    const bMcp = new URL('/mcp', ingressB);

    // T3: the token leaks out of A's process (prompt injection); the thief replays it from its own host.
    const thiefClient = new SessionBoundClient({ cert: thief.cert, key: thief.key, ca, protocol: 'h2', timeoutMs: TIMEOUT_MS });
    closers.push(thiefClient);
    const t3 = await thiefClient.request(bMcp, { token: stolen, method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
    add({ id: 'T3', threat: 'T3 (and T2)', attempt: "A's token exfiltrated from A's process, replayed with the thief's certificate and its own valid proof", where: "B's ingress", expected: { status: 401, error: 'invalid_token' }, status: t3.status, error: challengeOf(t3.headers) });

    // T4 / T1: a proof captured on A's connection (signed here with A's key, standing in for a wire or log
    // capture), then token + proof replayed on new connections.
    const victim = await RawConnection.open(bMcp, agentAKeys.cert, agentAKeys.key, ca);
    closers.push(victim);
    const captured = await createSessionBindingProof({ privateKey: createPrivateKey(agentAKeys.key), certificate: new X509Certificate(agentAKeys.cert), accessToken: stolen, ekm: victim.ekm });
    const control = await victim.send(bMcp, stolen, captured);
    if (control.status === 401) throw new Error(`the captured proof was refused on its own connection (${control.error ?? ''})`);
    victim.close();
    const exfil = await RawConnection.open(bMcp, thief.cert, thief.key, ca);
    closers.push(exfil);
    const t4 = await exfil.send(bMcp, stolen, captured);
    add({ id: 'T4', threat: 'T4', attempt: 'token + captured proof replayed on a new connection (thief certificate)', where: "B's ingress", expected: { status: 401, error: 'invalid_token' }, ...t4 });
    exfil.close();
    const replay = await RawConnection.open(bMcp, agentAKeys.cert, agentAKeys.key, ca);
    closers.push(replay);
    const t1 = await replay.send(bMcp, stolen, captured);
    add({ id: 'T1', threat: 'T1 (T4 with the right certificate)', attempt: "token + captured proof replayed on a new connection with A's own certificate", where: "B's ingress", expected: { status: 401, error: 'invalid_proof' }, ...t1 });
    replay.close();

    // T5: the B->C token (from B's process) replayed at another hop, by A (its certificate, its own valid proofs).
    const successor = await procs.appB.call<string | undefined>('lastSuccessor');
    if (successor === undefined) throw new Error('agent B holds no B->C token (the honest phase failed)');
    const asA = new SessionBoundClient({ cert: agentAKeys.cert, key: agentAKeys.key, ca, protocol: 'h2', timeoutMs: TIMEOUT_MS });
    closers.push(asA);
    const t5b = await asA.request(bMcp, { token: successor });
    add({ id: 'T5a', threat: 'T5', attempt: "B->C token presented at B's ingress by A (A's certificate and proof)", where: "B's ingress", expected: { status: 401, error: 'invalid_token' }, status: t5b.status, error: challengeOf(t5b.headers) });
    const t5c = await asA.request(new URL('/items/x', ingressC), { token: successor });
    add({ id: 'T5b', threat: 'T5', attempt: "B->C token presented at C's ingress by A (A's certificate and proof)", where: "C's ingress", expected: { status: 401, error: 'invalid_token' }, status: t5c.status, error: challengeOf(t5c.headers) });

    // T6: the thief takes the stolen token to the AS to extend the chain (exchange it for a C token).
    const thiefAs = new TokenClient({ cert: thief.cert, key: thief.key, ca });
    closers.push(thiefAs);
    const t6 = await thiefAs.post(as.tokenEndpoint, { grant_type: TOKEN_EXCHANGE, client_id: THIEF, subject_token: stolen, subject_token_type: TOKEN_TYPE_ACCESS_TOKEN, audience: 'service-c' });
    add({ id: 'T6', threat: 'T6', attempt: 'stolen A->B token exchanged at the AS by the thief (own certificate) for a C token', where: 'AS token endpoint', expected: { status: 400, error: 'invalid_grant' }, status: t6.status, error: typeof t6.json?.error === 'string' ? t6.json.error : null });

    // Deferred key binding: A holds a tmb-bound token but no key; presenting it itself fails.
    const direct = run.tmbDirect ?? { status: -1, error: 'not run' };
    attacks.push({
      id: 'TMB',
      threat: 'deferred key binding (T3 variant)',
      attempt: "A presents its tmb-bound token directly (no sidecar, so no client certificate)",
      where: "B's ingress",
      expected: { status: 0, error: 'TLS handshake refused' },
      status: direct.status,
      error: direct.error,
      // TLS 1.3 reports the server's certificate_required alert after the client's handshake, as that alert or a reset.
      pass: direct.status === 0 && direct.error !== null && /CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|ECONNRESET/.test(direct.error),
    });

    const tAttacks = performance.now();
    const honestCalls = run.users.reduce((n, u) => n + u.calls, 0);
    const honestOk = run.users.reduce((n, u) => n + u.ok, 0);
    const report: DemoReport = {
      ok: false,
      durationMs: Math.round(tAttacks - started),
      phasesMs: { setup: Math.round(tSetup - started), honest: Math.round(tHonest - tSetup), attacks: Math.round(tAttacks - tHonest), shutdown: 0 },
      honest: {
        users: run.users.length,
        toolCalls: honestCalls,
        succeeded: honestOk,
        progressNotifications: run.users.reduce((n, u) => n + u.progress, 0),
        principals: run.users.map((u) => ({ user: u.user, sub: u.sub, actChain: u.actChain })).sort((a, b) => a.user.localeCompare(b.user)),
        tokenExchanges: { byA: run.tokens, byB: after.appB.exchanges },
        errors: run.errors,
      },
      deferredKeyBinding: { viaSidecar: run.tmbViaSidecar?.ok === true, principal: run.tmbViaSidecar?.principal ?? null },
      hops,
      attacks,
      exitCodes: {},
    };
    const chainOk = report.honest.principals.every((p) => p.sub === p.user && p.actChain.join(',') === `agent-b,agent-a,${p.user}`);
    report.ok =
      run.errors.length === 0 &&
      honestCalls === USERS.length * (callsPerUser + 1) &&
      honestOk === honestCalls &&
      chainOk &&
      report.deferredKeyBinding.viaSidecar &&
      attacks.every((a) => a.pass);

    if (options.hold !== undefined) {
      const fresh = await userToken('alice', { audience: 'agent-a' });
      const forB = await fetch(tokenUrlA, {
        method: 'POST',
        headers: { 'content-type': 'application/x-www-form-urlencoded' },
        body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, client_id: 'agent-a', subject_token: fresh, subject_token_type: TOKEN_TYPE_ACCESS_TOKEN, audience: 'agent-b' }).toString(),
      });
      const tokenForB = ((await forB.json()) as { access_token?: string }).access_token ?? '';
      await options.hold(
        {
          dir,
          caFile,
          pkiDir,
          issuer: as.issuer,
          tokenEndpoint: as.tokenEndpoint,
          mcpUrlViaEgressA: `${egressA.mcp}/b/mcp`,
          tokenUrlViaEgressA: tokenUrlA,
          ingressB,
          ingressC,
          tokenForB,
          pids: Object.fromEntries(Object.entries(procs).map(([k, p]) => [k, p.pid])),
        },
        report,
      );
    }
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
