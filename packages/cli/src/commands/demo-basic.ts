/**
 * `tether demo --basic`: the earlier single-resource demo. Users call `tether resource` (a child
 * process) with session-bound tokens; then T1, T2 and T4 against it.
 */
import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createSessionBindingProof, parseWwwAuthenticate, SessionBoundClient } from '@tether/core';
import { writeDevPki, type KeyType } from '@tether/pki';
import { describeError, isCliError, runtimeError } from '../util/errors.js';
import { loadDemoPackage, type DemoPackage } from './demo-package.js';
import { writeDevIssuer } from './dev-issuer.js';
import { mintDevToken } from './dev-token.js';
import type { ResourceStats } from './resource.js';
import type { RawAnswer } from '@tether/demo';

const USERS = ['alice', 'bob', 'carol'] as const;
const TIMEOUT_MS = 10_000;

export interface AttackResult {
  id: 'T1' | 'T2' | 'T4';
  threat: string;
  attempt: string;
  expected: { status: number; error: string };
  status: number;
  error: string | null;
  description: string | null;
  /** The request was refused (not 2xx). */
  blocked: boolean;
  /** Refused with exactly the expected status and error code. */
  asExpected: boolean;
}

export interface DemoReport {
  ok: boolean;
  durationMs: number;
  /** Where the time went: PKI + issuer + resource start, honest phase, attacks, stats + shutdown. */
  phasesMs: { setup: number; honest: number; attacks: number; shutdown: number };
  keyType: KeyType;
  resource: string;
  honest: {
    users: number;
    requestsPerUser: number;
    requests: number;
    succeeded: number;
    statuses: Record<string, number>;
    clientConnections: number;
    proofsSigned: number;
    retries: number;
    server: Pick<ResourceStats, 'requests' | 'accepted' | 'proofVerifications' | 'cacheHits'>;
  };
  attacks: AttackResult[];
  /** The resource's counters at the end, attacks included. */
  server: ResourceStats;
  /** Exit code of the resource child after SIGTERM (0 = clean shutdown). */
  resourceExitCode: number | null;
}



/** `tether resource` as a child process, with its JSON-lines stdout. */
class ResourceChild {
  readonly #withTimeout: DemoPackage['withTimeout'];
  readonly #child: ChildProcess;
  readonly #waiters: Array<{ key: string; resolve: (value: unknown) => void; reject: (error: Error) => void }> = [];
  #stderr = '';
  #exit: Promise<number | null>;

  constructor(args: string[], withTimeout: DemoPackage['withTimeout']) {
    this.#withTimeout = withTimeout;
    const here = fileURLToPath(import.meta.url);
    const bin = fileURLToPath(new URL(`../bin${extname(here)}`, import.meta.url));
    this.#child = spawn(process.execPath, [...process.execArgv, bin, 'resource', ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
    this.#exit = new Promise((resolve) => {
      this.#child.once('exit', (code, signal) => {
        resolve(signal === null ? code : null);
        const error = new Error(`the resource exited (${signal ?? `code ${String(code)}`})${this.#stderr === '' ? '' : `: ${this.#stderr.trim().split('\n')[0]}`}`);
        for (const w of this.#waiters.splice(0)) w.reject(error);
      });
      this.#child.once('error', (error) => {
        resolve(null);
        for (const w of this.#waiters.splice(0)) w.reject(new Error(`cannot start the resource: ${describeError(error)}`));
      });
    });
    this.#child.stderr?.setEncoding('utf8').on('data', (chunk: string) => {
      if (this.#stderr.length < 4096) this.#stderr += chunk;
    });
    const lines = createInterface({ input: this.#child.stdout as NodeJS.ReadableStream });
    lines.on('line', (line) => {
      let message: Record<string, unknown>;
      try {
        message = JSON.parse(line) as Record<string, unknown>;
      } catch {
        return;
      }
      const index = this.#waiters.findIndex((w) => w.key in message);
      const [waiter] = index >= 0 ? this.#waiters.splice(index, 1) : [];
      waiter?.resolve(message[waiter.key]);
    });
  }

  #next<T>(key: string): Promise<T> {
    return this.#withTimeout(
      new Promise<T>((resolve, reject) => {
        this.#waiters.push({ key, resolve: resolve as (value: unknown) => void, reject });
      }),
      `waiting for the resource's ${key} line`,
    );
  }

  listening(): Promise<string> {
    return this.#next<string>('listening');
  }

  stats(): Promise<ResourceStats> {
    const next = this.#next<ResourceStats>('stats');
    this.#child.kill('SIGUSR2');
    return next;
  }

  /** SIGTERM, then SIGKILL after 3 s. Resolves the exit code (null when killed by a signal). */
  async stop(): Promise<number | null> {
    if (this.#child.exitCode !== null || this.#child.signalCode !== null) return this.#exit;
    this.#child.kill('SIGTERM');
    const timer = setTimeout(() => this.#child.kill('SIGKILL'), 3000);
    try {
      return await this.#exit;
    } finally {
      clearTimeout(timer);
    }
  }
}



function attack(id: AttackResult['id'], threat: string, attempt: string, expected: AttackResult['expected'], answer: RawAnswer): AttackResult {
  const blocked = answer.status < 200 || answer.status >= 300;
  return {
    id,
    threat,
    attempt,
    expected,
    ...answer,
    blocked,
    asExpected: answer.status === expected.status && answer.error === expected.error,
  };
}

/** Run the demo and return its report. Throws `CliError` when it cannot run at all. */
export async function runDemo(options: { requestsPerUser?: number; keyType?: KeyType; signal?: AbortSignal } = {}): Promise<DemoReport> {
  const { RawConnection, withTimeout } = await loadDemoPackage();
  const started = performance.now();
  const perUser = options.requestsPerUser ?? 100;
  const keyType = options.keyType ?? 'p256';
  const dir = mkdtempSync(join(tmpdir(), 'tether-demo-'));
  let child: ResourceChild | undefined;
  const onAbort = () => void child?.stop();
  options.signal?.addEventListener('abort', onAbort, { once: true });
  const clients: Array<{ close(): unknown }> = [];
  try {
    const pkiDir = join(dir, 'pki');
    await writeDevPki(pkiDir, { keyType, clients: ['agent', 'attacker'] });
    const issuer = writeDevIssuer(join(dir, 'issuer'));
    const file = (name: string) => readFileSync(join(pkiDir, name));
    const ca = file('ca.pem');
    const agent = { cert: file('agent.pem'), key: file('agent.key') };
    const attacker = { cert: file('attacker.pem'), key: file('attacker.key') };
    const agentX509 = new X509Certificate(agent.cert);

    child = new ResourceChild([
      '--listen', '127.0.0.1:0',
      '--cert', join(pkiDir, 'server.pem'),
      '--key', join(pkiDir, 'server.key'),
      '--ca', join(pkiDir, 'ca.pem'),
      '--jwks-file', issuer.jwksPath,
    ], withTimeout);
    const base = new URL(await child.listening());
    const tStarted = performance.now();
    if (options.signal?.aborted) throw runtimeError('interrupted');

    // Honest client: one HTTP/2 connection, three users' tokens, N requests each.
    const tokens = USERS.map((sub) => mintDevToken({ privateKey: issuer.privateKey, kid: issuer.kid, certificate: agentX509, sub, scope: 'demo.read' }));
    const honest = new SessionBoundClient({ cert: agent.cert, key: agent.key, ca, protocol: 'h2', timeoutMs: TIMEOUT_MS });
    clients.push(honest);
    const statuses: Record<string, number> = {};
    let succeeded = 0;
    await Promise.all(
      USERS.map(async (user, u) => {
        for (let i = 0; i < perUser; i++) {
          const response = await honest.request(new URL(`/users/${user}/items/${i}`, base), { token: tokens[u] as string });
          statuses[response.status] = (statuses[response.status] ?? 0) + 1;
          if (response.status === 200) {
            const echoed = JSON.parse(response.body.toString('utf8')) as { principal?: { sub?: string } };
            if (echoed.principal?.sub === user) succeeded++;
          }
        }
      }),
    );
    const tHonest = performance.now();
    const afterHonest = await child.stats();
    const honestStats = { ...honest.stats };
    await honest.close();

    // The agent's token and a proof for it, as an attacker would capture them on the wire or from a log.
    const stolenToken = tokens[0] as string;
    const path = new URL('/users/alice/items/0', base);
    const victim = await RawConnection.open(base, agent.cert, agent.key, ca);
    clients.push(victim);
    const capturedProof = await createSessionBindingProof({
      privateKey: createPrivateKey(agent.key),
      certificate: agentX509,
      accessToken: stolenToken,
      ekm: victim.ekm,
    });
    const control = await victim.send(path, stolenToken, capturedProof);
    if (control.status !== 200) throw runtimeError(`the captured proof was refused on its own connection (${control.status} ${control.error ?? ''})`);
    victim.close();

    const attacks: AttackResult[] = [];
    // T1: same certificate, new connection: only the exporter differs.
    const replay = await RawConnection.open(base, agent.cert, agent.key, ca);
    clients.push(replay);
    attacks.push(
      attack('T1', 'cross-connection token replay', 'captured token + proof, new connection, same certificate', { status: 401, error: 'invalid_proof' }, await replay.send(path, stolenToken, capturedProof)),
    );
    replay.close();

    // T2: the attacker's own certificate and its own, correctly signed proof.
    const thief = new SessionBoundClient({ cert: attacker.cert, key: attacker.key, ca, protocol: 'h2', timeoutMs: TIMEOUT_MS });
    clients.push(thief);
    const t2 = await thief.request(path, { token: stolenToken });
    const t2challenge = parseWwwAuthenticate(t2.headers['www-authenticate']).find((c) => c.scheme === 'bearer');
    attacks.push(
      attack('T2', 'cross-host token replay', 'stolen token, attacker certificate, attacker\'s own proof', { status: 401, error: 'invalid_token' }, {
        status: t2.status,
        error: t2challenge?.params.error ?? null,
        description: t2challenge?.params.error_description ?? null,
      }),
    );
    await thief.close();

    // T4: token and proof both stolen, sent on the attacker's own connection.
    const exfil = await RawConnection.open(base, attacker.cert, attacker.key, ca);
    clients.push(exfil);
    attacks.push(
      attack('T4', 'token + proof exfiltration', 'stolen token + captured proof, attacker connection', { status: 401, error: 'invalid_token' }, await exfil.send(path, stolenToken, capturedProof)),
    );
    exfil.close();

    const tAttacks = performance.now();
    const server = await child.stats();
    const resourceExitCode = await child.stop();
    const tEnd = performance.now();
    const total = USERS.length * perUser;
    return {
      ok: succeeded === total && attacks.every((a) => a.blocked && a.asExpected),
      durationMs: Math.round(tEnd - started),
      phasesMs: {
        setup: Math.round(tStarted - started),
        honest: Math.round(tHonest - tStarted),
        attacks: Math.round(tAttacks - tHonest),
        shutdown: Math.round(tEnd - tAttacks),
      },
      keyType,
      resource: base.origin,
      honest: {
        users: USERS.length,
        requestsPerUser: perUser,
        requests: total,
        succeeded,
        statuses,
        clientConnections: honestStats.connectionsOpened,
        proofsSigned: honestStats.proofsSigned,
        retries: honestStats.retries,
        server: {
          requests: afterHonest.requests,
          accepted: afterHonest.accepted,
          proofVerifications: afterHonest.proofVerifications,
          cacheHits: afterHonest.cacheHits,
        },
      },
      attacks,
      server,
      resourceExitCode,
    };
  } catch (error) {
    if (options.signal?.aborted) throw runtimeError('interrupted', error);
    if (isCliError(error)) throw error;
    throw runtimeError(`demo failed: ${describeError(error)}`, error);
  } finally {
    options.signal?.removeEventListener('abort', onAbort);
    for (const c of clients) {
      try {
        await c.close();
      } catch {
        // already closed
      }
    }
    await child?.stop();
    rmSync(dir, { recursive: true, force: true });
  }
}

function pad(value: string | number, width: number): string {
  return String(value).padEnd(width);
}

/** The report as a table. */
export function formatDemoReport(r: DemoReport): string {
  const h = r.honest;
  const rows = [
    ['requests sent', h.requests],
    ['succeeded (200, right principal)', h.succeeded],
    ['client TLS connections', h.clientConnections],
    ['proofs signed (client)', h.proofsSigned],
    ['proof verifications (resource)', h.server.proofVerifications],
    ['binding cache hits (resource)', h.server.cacheHits],
    ['signatures per request', (h.proofsSigned / Math.max(1, h.requests)).toFixed(3)],
  ] as const;
  const width = Math.max(8, ...r.attacks.map((a) => a.attempt.length)) + 2;
  const lines = [
    'tether demo: TLS-session-bound access tokens (draft-mw-oauth-tls-session-bound-tokens)',
    `resource ${r.resource} (child process), ${r.keyType} PKI`,
    '',
    `Honest client: ${h.clientConnections} HTTP/2 connection${h.clientConnections === 1 ? '' : 's'}, ${h.users} users x ${h.requestsPerUser} requests`,
    ...rows.map(([label, value]) => `  ${pad(label, 34)}${String(value).padStart(8)}`),
    '',
    'Attacks',
    `  ${pad('id', 4)}${pad('attempt', width)}${pad('expected', 20)}${pad('got', 20)}result`,
    ...r.attacks.map(
      (a) =>
        `  ${pad(a.id, 4)}${pad(a.attempt, width)}${pad(`${a.expected.status} ${a.expected.error}`, 20)}${pad(`${a.status} ${a.error ?? '-'}`, 20)}${a.asExpected ? 'blocked' : a.blocked ? 'blocked (unexpected code)' : 'NOT BLOCKED'}`,
    ),
    ...r.attacks.filter((a) => a.description !== null).map((a) => `  ${a.id} refused: ${a.description}`),
    '',
    r.ok
      ? `PASS: every honest request succeeded and every attack was refused as expected (${(r.durationMs / 1000).toFixed(1)} s)`
      : `FAIL: ${h.succeeded}/${h.requests} honest requests succeeded; ${r.attacks.filter((a) => a.asExpected).length}/${r.attacks.length} attacks refused as expected`,
  ];
  return `${lines.join('\n')}\n`;
}
