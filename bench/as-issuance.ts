/**
 * Token issuance throughput of the authorization server: client_credentials and token exchange
 * against @tether/as on its embedded SQLite store and on PostgreSQL (a real server started in a
 * temporary directory, test/helpers/postgres.ts), and client_credentials against oidc-provider
 * (tls_client_auth, certificate-bound ES256 JWT access tokens, its in-memory adapter) in the same
 * run. Then the latency of a revocation at one tether instance followed by introspection of the
 * token at a second instance on the same database. Each server runs in its own child
 * process (bench/as-process.ts); this process generates load over HTTP/1.1 keep-alive mTLS
 * connections. Scenarios alternate within each round; every figure is the median of the rounds,
 * with ratios computed against oidc-provider's client_credentials in the same run.
 *
 *   node --import tsx bench/as-issuance.ts            # full run
 *   node --import tsx bench/as-issuance.ts --quick    # smoke run
 *
 * Writes bench/results/as-issuance.{json,md} (as-issuance-quick.* for --quick).
 *
 * Deadlines: every request has TokenClient's (10 s); the server children are questioned with
 * ASK_TIMEOUT_MS and killed by PID on every exit path; a scenario whose workers have not finished
 * DRAIN_DEADLINE_MS after its measurement ends fails, naming the requests still outstanding.
 */
import { mkdtempSync, mkdirSync, rmSync, writeFileSync } from 'node:fs';
import { cpus, tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevPki } from '@tether/pki';
import { TokenClient } from '@tether/as';
import { startPostgres, type PostgresServer } from '../test/helpers/postgres.js';
import { ForkedChild, installExitGuards } from './children.js';
import { Outstanding, withRunDeadline } from './deadline.js';
import { median } from './median.js';
import { writeServerTlsFiles } from './server-tls-files.js';

const here = dirname(fileURLToPath(import.meta.url));
const quick = process.argv.includes('--quick');
const rounds = quick ? 1 : 3;
const warmupMs = quick ? 500 : 2000;
const measureMs = quick ? 1500 : 6000;
const concurrency = 16;
const connections = 8;
const TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
const ACCESS_TOKEN = 'urn:ietf:params:oauth:token-type:access_token';
/** Deadline of one question to a server child (its start included), ms. */
const ASK_TIMEOUT_MS = 60_000;
/** After a scenario's measurement: each worker has at most one request left, bounded by TokenClient's 10 s. */
const DRAIN_DEADLINE_MS = 30_000;

interface Server {
  child: ForkedChild;
  url: string;
}

let postgres: PostgresServer | undefined;

type ServerName = 'tether' | 'tetherPg' | 'tetherPg2' | 'oidc';

async function startServer(kind: 'tether' | 'oidc', dir: string, storeUrl?: string): Promise<Server> {
  const child = new ForkedChild(kind, join(here, 'as-process.ts'), ASK_TIMEOUT_MS, {
    args: [kind, dir, ...(storeUrl === undefined ? [] : [storeUrl])],
    execArgv: ['--conditions=tether-source', '--no-warnings', ...(process.env.AS_BENCH_PROFILE === kind ? ['--cpu-prof', `--cpu-prof-dir=${tmpdir()}/as-bench-prof`] : [])],
  });
  const ready = (await child.ready) as { url: string };
  return { child, url: ready.url };
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

interface Scenario {
  name: string;
  server: ServerName;
  client: string;
  /** Fresh parameters for each run (a subject token, for example). */
  prepare(): Promise<{ params: Record<string, string>; proveSubjectToken?: boolean }>;
}

interface RunResult {
  requests: number;
  failures: number;
  rps: number;
  p50ms: number;
  p99ms: number;
  serverCpuMicrosPerToken: number;
}

async function main(): Promise<void> {
  installExitGuards();
  const dir = mkdtempSync(join(tmpdir(), 'tether-as-bench-'));
  const pki = await createDevPki({ clients: ['a', 'b', 'cert'] });
  writeServerTlsFiles(dir, pki);
  postgres = await startPostgres();
  const pgUrl = await postgres.createDatabase('bench');
  const tetherPg = await startServer('tether', dir, pgUrl);
  const servers: Record<ServerName, Server> = {
    tether: await startServer('tether', dir),
    tetherPg,
    tetherPg2: await startServer('tether', dir, pgUrl),
    oidc: await startServer('oidc', dir),
  };
  const clientFor = (name: string) => new TokenClient({ cert: pki.clients[name]!.cert, key: pki.clients[name]!.key, ca: pki.ca.cert, maxSockets: connections });

  const subjectFor = async (holder: string, audience: string, server = servers.tether): Promise<string> => {
    const c = clientFor(holder);
    const r = await c.post(`${server.url}/token`, { grant_type: 'client_credentials', client_id: holder, audience });
    c.close();
    if (r.status !== 200) throw new Error(`subject token: ${r.text}`);
    return r.json?.access_token as string;
  };

  const scenarios: Scenario[] = [
    {
      name: 'oidc-provider client_credentials (tls_client_auth, certificate-bound)',
      server: 'oidc',
      client: 'cert',
      prepare: async () => ({ params: { grant_type: 'client_credentials', client_id: 'cert', scope: 'read' } }),
    },
    {
      name: 'tether client_credentials (tls_client_auth, certificate-bound)',
      server: 'tether',
      client: 'cert',
      prepare: async () => ({ params: { grant_type: 'client_credentials', client_id: 'cert', scope: 'read', audience: 'https://rs.example' } }),
    },
    {
      name: 'tether client_credentials (tls_client_auth, certificate-bound), PostgreSQL store',
      server: 'tetherPg',
      client: 'cert',
      prepare: async () => ({ params: { grant_type: 'client_credentials', client_id: 'cert', scope: 'read', audience: 'https://rs.example' } }),
    },
    {
      name: 'tether client_credentials (tls_client_auth, session-bound)',
      server: 'tether',
      client: 'a',
      prepare: async () => ({ params: { grant_type: 'client_credentials', client_id: 'a', scope: 'read', audience: 'spiffe://tether.local/b' } }),
    },
    {
      name: 'tether token exchange (recipient B exchanges A’s session-bound token)',
      server: 'tether',
      client: 'b',
      prepare: async () => ({
        params: {
          grant_type: TOKEN_EXCHANGE,
          client_id: 'b',
          subject_token: await subjectFor('a', 'spiffe://tether.local/b'),
          subject_token_type: ACCESS_TOKEN,
          audience: 'https://rs.example',
        },
      }),
    },
    {
      name: 'tether token exchange (recipient B exchanges A’s session-bound token), PostgreSQL store',
      server: 'tetherPg',
      client: 'b',
      prepare: async () => ({
        params: {
          grant_type: TOKEN_EXCHANGE,
          client_id: 'b',
          subject_token: await subjectFor('a', 'spiffe://tether.local/b', servers.tetherPg),
          subject_token_type: ACCESS_TOKEN,
          audience: 'https://rs.example',
        },
      }),
    },
    {
      name: 'tether token exchange (holder A with a Session-Binding-Proof per request)',
      server: 'tether',
      client: 'a',
      prepare: async () => ({
        params: {
          grant_type: TOKEN_EXCHANGE,
          client_id: 'a',
          subject_token: await subjectFor('a', 'spiffe://tether.local/b'),
          subject_token_type: ACCESS_TOKEN,
          audience: 'https://rs.example',
        },
        proveSubjectToken: true,
      }),
    },
  ];

  async function run(s: Scenario): Promise<RunResult> {
    const server = servers[s.server];
    const client = clientFor(s.client);
    const { params, proveSubjectToken } = await s.prepare();
    const url = `${server.url}/token`;
    const options = proveSubjectToken === true ? { proveSubjectToken: true } : {};
    const probe = await client.post(url, params, options);
    if (probe.status !== 200) throw new Error(`${s.name}: ${probe.status} ${probe.text}`);
    // Like for like: every scenario must issue a JWT bound to the client certificate.
    const sample = JSON.parse(Buffer.from(String(probe.json?.access_token).split('.')[1] ?? '', 'base64url').toString('utf8')) as { cnf?: Record<string, string> };
    if (typeof sample.cnf?.['x5t#S256'] !== 'string') throw new Error(`${s.name}: the token is not certificate-bound`);
    let phase: 'warmup' | 'measure' | 'done' = 'warmup';
    const latencies: number[] = [];
    let requests = 0;
    let failures = 0;
    const outstanding = new Outstanding();
    const workers = Array.from({ length: concurrency }, async () => {
      while (phase !== 'done') {
        const started = process.hrtime.bigint();
        const id = outstanding.begin(`${s.name} request`);
        const r = await client.post(url, params, options).finally(() => outstanding.end(id));
        if (phase === 'measure') {
          requests++;
          if (r.status !== 200) failures++;
          latencies.push(Number(process.hrtime.bigint() - started) / 1e6);
        }
      }
    });
    await new Promise((r) => setTimeout(r, warmupMs));
    await server.child.ask({ cmd: 'reset' }, ASK_TIMEOUT_MS);
    const t0 = process.hrtime.bigint();
    phase = 'measure';
    await new Promise((r) => setTimeout(r, measureMs));
    phase = 'done';
    const seconds = Number(process.hrtime.bigint() - t0) / 1e9;
    const cpuMicros = (await server.child.ask<{ cpuMicros: number }>({ cmd: 'report' }, ASK_TIMEOUT_MS)).cpuMicros;
    await withRunDeadline(`${s.name}: the workers' last requests`, DRAIN_DEADLINE_MS, outstanding, Promise.all(workers));
    client.close();
    latencies.sort((a, b) => a - b);
    return {
      requests,
      failures,
      rps: requests / seconds,
      p50ms: percentile(latencies, 50),
      p99ms: percentile(latencies, 99),
      serverCpuMicrosPerToken: cpuMicros / Math.max(1, requests),
    };
  }

  const results = new Map<string, RunResult[]>();
  for (let round = 0; round < rounds; round++) {
    for (const s of scenarios) {
      const r = await run(s);
      results.set(s.name, [...(results.get(s.name) ?? []), r]);
      console.error(`round ${round + 1}/${rounds}  ${s.name}: ${r.rps.toFixed(0)} tokens/s, p50 ${r.p50ms.toFixed(2)} ms, p99 ${r.p99ms.toFixed(2)} ms, ${r.serverCpuMicrosPerToken.toFixed(0)} µs CPU/token, ${r.failures} failures`);
    }
  }
  // Revocation at one instance, then introspection of the token at the other (same database).
  const revocationMs: number[] = [];
  {
    const client = clientFor('cert');
    const cc = { grant_type: 'client_credentials', client_id: 'cert', scope: 'read', audience: 'https://rs.example' };
    for (let i = 0; i < (quick ? 50 : 300); i++) {
      const token = (await client.post(`${servers.tetherPg.url}/token`, cc)).json?.access_token as string;
      const started = process.hrtime.bigint();
      const revoked = await client.post(`${servers.tetherPg.url}/revoke`, { client_id: 'cert', token });
      const seen = await client.post(`${servers.tetherPg2.url}/introspect`, { client_id: 'cert', token });
      if (revoked.status !== 200 || seen.text !== '{"active":false}') throw new Error(`revocation not seen at the other instance: ${revoked.status} ${seen.text}`);
      revocationMs.push(Number(process.hrtime.bigint() - started) / 1e6);
    }
    client.close();
    revocationMs.sort((a, b) => a - b);
  }
  const revocation = { samples: revocationMs.length, p50ms: Number(percentile(revocationMs, 50).toFixed(2)), p99ms: Number(percentile(revocationMs, 99).toFixed(2)) };
  console.error(`revoke at instance 1 + introspect at instance 2: p50 ${revocation.p50ms} ms, p99 ${revocation.p99ms} ms (${revocation.samples} sequential)`);

  await Promise.all(Object.values(servers).map((s) => s.child.exit(ASK_TIMEOUT_MS)));
  rmSync(dir, { recursive: true, force: true });
  await postgres.stop();
  postgres = undefined;

  const baseline = scenarios[0]?.name as string;
  const summary = scenarios.map((s) => {
    const rs = results.get(s.name) as RunResult[];
    return {
      scenario: s.name,
      server: s.server,
      tokensPerSecond: Math.round(median(rs.map((r) => r.rps))),
      min: Math.round(Math.min(...rs.map((r) => r.rps))),
      max: Math.round(Math.max(...rs.map((r) => r.rps))),
      p50ms: Number(median(rs.map((r) => r.p50ms)).toFixed(2)),
      p99ms: Number(median(rs.map((r) => r.p99ms)).toFixed(2)),
      serverCpuMicrosPerToken: Math.round(median(rs.map((r) => r.serverCpuMicrosPerToken))),
      failures: rs.reduce((n, r) => n + r.failures, 0),
    };
  });
  const base = summary.find((x) => x.scenario === baseline) as (typeof summary)[number];
  const withRatios = summary.map((x) => ({
    ...x,
    throughputVsOidcProvider: Number((x.tokensPerSecond / base.tokensPerSecond).toFixed(2)),
    cpuPerTokenVsOidcProvider: Number((x.serverCpuMicrosPerToken / base.serverCpuMicrosPerToken).toFixed(2)),
  }));
  const { default: oidcPackage } = (await import('oidc-provider/package.json', { with: { type: 'json' } })) as { default: { version: string } };
  const environment = {
    node: process.version,
    cpus: cpus().length,
    cpuModel: cpus()[0]?.model,
    oidcProvider: oidcPackage.version,
    quick,
    rounds,
    warmupMs,
    measureMs,
    concurrency,
    connections,
    transport: 'HTTP/1.1 keep-alive over TLS 1.3 with client certificates; load generator and each server in separate processes on one host',
  };
  const out = join(here, 'results');
  mkdirSync(out, { recursive: true });
  const base_ = quick ? 'as-issuance-quick' : 'as-issuance';
  writeFileSync(join(out, `${base_}.json`), `${JSON.stringify({ environment, results: withRatios, revocationAcrossInstances: revocation }, null, 2)}\n`);
  const md = [
    `# Authorization server: token issuance throughput${quick ? ' (quick run)' : ''}`,
    '',
    `Node ${environment.node}, ${environment.cpus} CPUs (${environment.cpuModel}), oidc-provider ${environment.oidcProvider}. ${environment.transport}.`,
    `${concurrency} requests in flight over ${connections} connections; ${rounds} round(s) of ${measureMs / 1000} s after ${warmupMs / 1000} s warm-up; medians over rounds.`,
    'Ratios are against oidc-provider client_credentials (tls_client_auth, certificate-bound ES256 JWT) measured in the same run.',
    '',
    '| scenario | tokens/s (min–max) | p50 ms | p99 ms | server CPU µs/token | throughput vs oidc-provider | CPU/token vs oidc-provider |',
    '| --- | --- | --- | --- | --- | --- | --- |',
    ...withRatios.map(
      (x) =>
        `| ${x.scenario} | ${x.tokensPerSecond} (${x.min}–${x.max}) | ${x.p50ms} | ${x.p99ms} | ${x.serverCpuMicrosPerToken} | ${x.throughputVsOidcProvider} | ${x.cpuPerTokenVsOidcProvider} |`,
    ),
    '',
    `Revocation at one tether instance followed by introspection of the token at a second instance on the same PostgreSQL database (two requests, sequential, ${revocation.samples} samples): p50 ${revocation.p50ms} ms, p99 ${revocation.p99ms} ms; every token was inactive at the second instance on the first try.`,
    '',
    'Stores: "tether" scenarios without a suffix use the embedded SQLite store (WAL, synchronous=FULL: a write is fsynced before the response); "PostgreSQL store" scenarios one PostgreSQL 15 server on the same host (started by the bench in a temporary directory, default durability). client_credentials writes nothing to the store; a token exchange records its lineage (for revocation cascades) before the token is issued, and reads the revocation state of the subject token and its ancestors.',
    '',
    'Every scenario authenticates the client with tls_client_auth (SPIFFE URI SAN, chain verified by OpenSSL) and issues an ES256-signed JWT access token whose cnf carries x5t#S256 (checked on a sample token); neither server stores JWT access tokens. Token exchange also verifies the subject token; the holder scenario also verifies a Session-Binding-Proof that the load generator signs per request on its connection. CPU µs/token is the server process’s user+system time divided by tokens issued; with 2 CPUs shared by the load generator and the server, it is steadier than tokens/s.',
    '',
  ].join('\n');
  writeFileSync(join(out, `${base_}.md`), md);
  console.log(md);
}

main().catch((error: unknown) => {
  console.error(error);
  // The server children are killed by the exit guards as the process exits.
  void (postgres?.stop() ?? Promise.resolve()).finally(() => process.exit(1));
});
