/**
 * The live attacks of the demo, each a real request against the running stack, refused (or not)
 * with an exact status and error code. Threat IDs are the draft's (section 6.1; T6 from -07).
 */
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { TokenClient } from '@tether/as';
import { createSessionBindingProof, parseWwwAuthenticate, SessionBoundClient } from '@tether/core';
import type { DemoProcess } from './processes.js';
import { TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN, type AgentRunResult } from './protocol.js';
import { RawConnection } from './raw-connection.js';
import type { AttackReport } from './report.js';

const TIMEOUT_MS = 10_000;

interface KeyPair {
  cert: Buffer;
  key: Buffer;
}

export interface AttackContext {
  ca: Buffer;
  /** The thief: a client registered at the AS (its own certificate), not allowed to exchange IdP tokens. */
  thief: KeyPair;
  /** An intruder: a certificate from the same CA, not registered at the AS at all. */
  intruder: KeyPair;
  agentA: KeyPair;
  ingressB: string;
  ingressC: string;
  tokenEndpoint: string;
  procs: { agentA: DemoProcess; appB: DemoProcess };
  run: AgentRunResult;
  /** Alice's access token from the identity provider, as stolen from her browser. */
  idpToken: string;
  /** Everything opened here, closed by the caller. */
  closers: Array<{ close(): unknown }>;
}

type Add = (a: Omit<AttackReport, 'pass'>) => void;

function challengeOf(headers: Record<string, string | string[] | undefined>): string | null {
  return parseWwwAuthenticate(headers['www-authenticate'] as string | undefined).find((c) => c.scheme === 'bearer')?.params.error ?? null;
}

function client(c: AttackContext, keys: KeyPair): SessionBoundClient {
  const sb = new SessionBoundClient({ cert: keys.cert, key: keys.key, ca: c.ca, protocol: 'h2', timeoutMs: TIMEOUT_MS });
  c.closers.push(sb);
  return sb;
}

/** T3, T4, T1: A's token stolen, with and without a captured proof. */
async function stolenTokenAttacks(c: AttackContext, add: Add, stolen: string): Promise<void> {
  const bMcp = new URL('/mcp', c.ingressB);
  // T3: the token leaks out of A's process (prompt injection); the thief replays it from its own host.
  const t3 = await client(c, c.thief).request(bMcp, { token: stolen, method: 'POST', headers: { 'content-type': 'application/json', accept: 'application/json, text/event-stream' }, body: '{"jsonrpc":"2.0","id":1,"method":"tools/list"}' });
  add({ id: 'T3', threat: 'T3 (and T2)', attempt: "A's token exfiltrated from A's process, replayed with the thief's certificate and its own valid proof", where: "B's ingress", expected: { status: 401, error: 'invalid_token' }, status: t3.status, error: challengeOf(t3.headers) });

  // T4 / T1: a proof captured on A's connection (signed here with A's key, standing in for a wire or log
  // capture), then token + proof replayed on new connections.
  const victim = await RawConnection.open(bMcp, c.agentA.cert, c.agentA.key, c.ca);
  c.closers.push(victim);
  const captured = await createSessionBindingProof({ privateKey: createPrivateKey(c.agentA.key), certificate: new X509Certificate(c.agentA.cert), accessToken: stolen, ekm: victim.ekm });
  const control = await victim.send(bMcp, stolen, captured);
  if (control.status === 401) throw new Error(`the captured proof was refused on its own connection (${control.error ?? ''})`);
  victim.close();
  const exfil = await RawConnection.open(bMcp, c.thief.cert, c.thief.key, c.ca);
  c.closers.push(exfil);
  const t4 = await exfil.send(bMcp, stolen, captured);
  add({ id: 'T4', threat: 'T4', attempt: 'token + captured proof replayed on a new connection (thief certificate)', where: "B's ingress", expected: { status: 401, error: 'invalid_token' }, ...t4 });
  exfil.close();
  const replay = await RawConnection.open(bMcp, c.agentA.cert, c.agentA.key, c.ca);
  c.closers.push(replay);
  const t1 = await replay.send(bMcp, stolen, captured);
  add({ id: 'T1', threat: 'T1 (T4 with the right certificate)', attempt: "token + captured proof replayed on a new connection with A's own certificate", where: "B's ingress", expected: { status: 401, error: 'invalid_proof' }, ...t1 });
  replay.close();
}

/** T5 (a token replayed at another hop) and T6 (a stolen token taken to the AS to extend the chain). */
async function hopAttacks(c: AttackContext, add: Add, stolen: string): Promise<void> {
  const successor = await c.procs.appB.call<string | undefined>('lastSuccessor');
  if (successor === undefined) throw new Error('agent B holds no B->C token (the honest phase failed)');
  const asA = client(c, c.agentA);
  const t5b = await asA.request(new URL('/mcp', c.ingressB), { token: successor });
  add({ id: 'T5a', threat: 'T5', attempt: "B->C token presented at B's ingress by A (A's certificate and proof)", where: "B's ingress", expected: { status: 401, error: 'invalid_token' }, status: t5b.status, error: challengeOf(t5b.headers) });
  const t5c = await asA.request(new URL('/items/x', c.ingressC), { token: successor });
  add({ id: 'T5b', threat: 'T5', attempt: "B->C token presented at C's ingress by A (A's certificate and proof)", where: "C's ingress", expected: { status: 401, error: 'invalid_token' }, status: t5c.status, error: challengeOf(t5c.headers) });

  const t6 = await exchangeAs(c, c.thief, 'thief', stolen);
  add({ id: 'T6', threat: 'T6', attempt: 'stolen A->B token exchanged at the AS by the thief (own certificate) for a C token', where: 'AS token endpoint', expected: { status: 400, error: 'invalid_grant' }, ...t6 });
}

async function exchangeAs(c: AttackContext, keys: KeyPair, clientId: string, subjectToken: string): Promise<{ status: number; error: string | null }> {
  const tc = new TokenClient({ cert: keys.cert, key: keys.key, ca: c.ca });
  c.closers.push(tc);
  const r = await tc.post(c.tokenEndpoint, { grant_type: TOKEN_EXCHANGE, client_id: clientId, subject_token: subjectToken, subject_token_type: TOKEN_TYPE_ACCESS_TOKEN, audience: 'service-c' });
  return { status: r.status, error: typeof r.json?.error === 'string' ? r.json.error : null };
}

/** The user's IdP token, stolen from her browser: useless at B, and only agent A may exchange it. */
async function idpTokenAttacks(c: AttackContext, add: Add): Promise<void> {
  const atB = await client(c, c.thief).request(new URL('/mcp', c.ingressB), { token: c.idpToken });
  add({ id: 'IDP1', threat: 'T3 (IdP token)', attempt: "alice's IdP token, stolen from her browser, presented at B's ingress (thief's certificate and proof)", where: "B's ingress", expected: { status: 401, error: 'invalid_token' }, status: atB.status, error: challengeOf(atB.headers) });
  const byThief = await exchangeAs(c, c.thief, 'thief', c.idpToken);
  add({ id: 'IDP2', threat: 'T6 (IdP token)', attempt: "alice's IdP token exchanged at the AS by the thief, a registered client not allowed to exchange the IdP's tokens", where: 'AS token endpoint', expected: { status: 400, error: 'invalid_grant' }, ...byThief });
  const byIntruder = await exchangeAs(c, c.intruder, 'intruder', c.idpToken);
  add({ id: 'IDP3', threat: 'T6 (IdP token)', attempt: "alice's IdP token exchanged at the AS by an unregistered client (a certificate from the same CA)", where: 'AS token endpoint', expected: { status: 401, error: 'invalid_client' }, ...byIntruder });
}

/** Run every attack; the report lists them in this order. */
export async function runAttacks(c: AttackContext): Promise<AttackReport[]> {
  const attacks: AttackReport[] = [];
  const add: Add = (a) => attacks.push({ ...a, pass: a.status === a.expected.status && a.error === a.expected.error });
  const stolen = await c.procs.agentA.call<string>('exfiltrate');
  await stolenTokenAttacks(c, add, stolen);
  await hopAttacks(c, add, stolen);
  await idpTokenAttacks(c, add);

  // Deferred key binding: A holds a tmb-bound token but no key; presenting it itself fails.
  const direct = c.run.tmbDirect ?? { status: -1, error: 'not run' };
  attacks.push({
    id: 'TMB',
    threat: 'deferred key binding (T3 variant)',
    attempt: 'A presents its tmb-bound token directly (no sidecar, so no client certificate)',
    where: "B's ingress",
    expected: { status: 0, error: 'TLS handshake refused' },
    status: direct.status,
    error: direct.error,
    // TLS 1.3 reports the server's certificate_required alert after the client's handshake, as that alert or a reset.
    pass: direct.status === 0 && direct.error !== null && /CERTIFICATE_REQUIRED|HANDSHAKE_FAILURE|ECONNRESET/.test(direct.error),
  });
  return attacks;
}
