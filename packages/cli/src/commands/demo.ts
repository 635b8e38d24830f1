import { spawn, type ChildProcess } from 'node:child_process';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { extname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { createSessionBindingProof, parseWwwAuthenticate, SessionBoundClient } from '@tether/core';
import { KEY_TYPES, writeDevPki, type KeyType } from '@tether/pki';
import { integer, oneOf, parseCommandArgs, wantsHelp } from '../util/args.js';
import { resolveContext, shutdownSignal, type CommandContext } from '../util/context.js';
import { describeError, isCliError, runtimeError, usageError } from '../util/errors.js';
import { writeDevIssuer } from './dev-issuer.js';
import { mintDevToken } from './dev-token.js';
import type { ResourceStats } from './resource.js';
import type { RawAnswer } from '@tether/demo';

export const demoHelp = `Usage: tether demo [--json] [--calls N] [--keep-running]
       tether demo --basic [--json] [--requests N] [--key-type TYPE]

The agent delegation chain over MCP, every box a separate process on loopback:

  agent A (MCP client, official SDK; holds tokens, no key) -> A's egress sidecar (A's key)
    ==mTLS==> B's ingress -> agent B (MCP server) -> token exchange at the AS (through B's
    egress, as agent-b) -> B's egress (B's key) ==mTLS==> C's ingress -> service C

In a temporary directory it creates a development PKI (agent-a, agent-b, service-c, users
alice/bob/carol, thief), starts the authorization server (dev mode, plus a tmb policy), the
sidecars, B, C and A. Each user gets a token for A; A exchanges it for a B token through its
egress; each user's MCP session makes N lookups (B exchanges the token for a C token and calls
C, which returns sub and act chain) and one streamed tool call (progress notifications). A
token alice bound to A's sidecar key (tmb) is used through the sidecar. Then the attacks:
  T3   A's token, exfiltrated from A's process, replayed with the thief's certificate
  T4   token + captured proof replayed on a new connection (thief certificate)
  T1   the same with A's own certificate (exporter mismatch)
  T5a  B's token for C presented at B's ingress by A;  T5b: at C's ingress by A
  T6   the stolen token taken to the AS for exchange by the thief
  TMB  A presenting its tmb-bound token directly (it has no key, so no client certificate)
The report shows per hop: requests, connections, tokens, proofs signed, full verifications,
signatures per request; per attack: status, error code, expected, result; and the time taken.

Options:
  --json            print the report as one JSON document
  --calls N         lookups per user (default 20)
  --keep-running    leave the stack up after the report and print its URLs, CA and a token
                    until SIGINT/SIGTERM
  --basic           the earlier single-resource demo (T1, T2, T4 against 'tether resource'),
                    with --requests N (default 100) and --key-type p256|p384|ed25519|rsa
  -h, --help        show this help

Exit status: 0 when every honest call succeeded and every attack was refused with the
expected status and error code; 1 otherwise; 2 on bad arguments.
`;

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


type DemoPackage = typeof import('@tether/demo');

/**
 * The demo's MCP stack lives in `@tether/demo`, an optional peer dependency of the CLI, so that installing the CLI for
 * the sidecars or a verifier does not pull in the MCP SDK; `tether demo` loads it here and says how to add it if missing.
 */
async function loadDemoPackage(): Promise<DemoPackage> {
  try {
    return await import('@tether/demo');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && describeError(error).includes('@tether/demo')) {
      throw runtimeError("'tether demo' needs the @tether/demo package: npm install @tether/demo", error);
    }
    throw error;
  }
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

/** `tether demo`. */
export async function demoCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(demoHelp);
    return 0;
  }
  const { values } = parseCommandArgs({
    args,
    options: { json: { type: 'boolean' }, basic: { type: 'boolean' }, requests: { type: 'string' }, 'key-type': { type: 'string' }, calls: { type: 'string' }, 'keep-running': { type: 'boolean' } },
  });
  if (values.basic === true) {
    if (values.calls !== undefined || values['keep-running'] === true) throw usageError('--calls and --keep-running are options of the MCP demo, not of --basic');
    const requestsPerUser = integer(values.requests, '--requests', 1, 10_000, 100);
    const keyType = oneOf<KeyType>(values['key-type'], '--key-type', KEY_TYPES, 'p256');
    const shutdown = shutdownSignal(ctx);
    try {
      const report = await runDemo({ requestsPerUser, keyType, signal: shutdown.signal });
      ctx.stdout.write(values.json === true ? `${JSON.stringify(report)}\n` : formatDemoReport(report));
      return report.ok ? 0 : 1;
    } finally {
      shutdown.dispose();
    }
  }
  if (values.requests !== undefined || values['key-type'] !== undefined) throw usageError('--requests and --key-type need --basic');
  const callsPerUser = integer(values.calls, '--calls', 1, 1000, 20);
  const keepRunning = values['keep-running'] === true;
  const json = values.json === true;
  const { runAgentChainDemo, formatDemoReport: formatChain, formatStack } = await loadDemoPackage();
  const shutdown = shutdownSignal(ctx);
  try {
    const report = await runAgentChainDemo({
      callsPerUser,
      signal: shutdown.signal,
      ...(keepRunning
        ? {
            hold: async (stack, early) => {
              ctx.stdout.write(json ? `${JSON.stringify({ report: early, stack })}\n` : formatChain(early) + formatStack(stack));
              if (!shutdown.signal.aborted) await once(shutdown.signal, 'abort');
            },
          }
        : {}),
    });
    if (!keepRunning) ctx.stdout.write(json ? `${JSON.stringify(report)}\n` : formatChain(report));
    return report.ok ? 0 : 1;
  } catch (error) {
    if (shutdown.signal.aborted) throw runtimeError('interrupted', error);
    throw runtimeError(`demo failed: ${describeError(error)}`, error);
  } finally {
    shutdown.dispose();
  }
}
