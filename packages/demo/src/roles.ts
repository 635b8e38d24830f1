/**
 * What each demo process does (see child.ts). Everything listens on 127.0.0.1 with port 0.
 */
import { X509Certificate, randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import type { AuthorizationServer } from '@tether/as';
import type { EgressSidecar, IngressSidecar } from '@tether/sidecar';
import {
  TOKEN_EXCHANGE,
  TOKEN_TYPE_ACCESS_TOKEN,
  type AgentRunParams,
  type AgentRunResult,
  type EgressStartParams,
  type EgressStatsSnapshot,
  type IngressStartParams,
  type IngressStatsSnapshot,
} from './protocol.js';

// Each role imports what it uses when it starts (eight processes start at once on a small machine),
// so the modules above are types only and the SDK, AS and sidecar code load lazily.
const PRINCIPAL_HEADER = 'x-tether-principal';

export interface RoleHandlers {
  methods: Record<string, ((params: unknown) => unknown) | undefined>;
  close(): Promise<void>;
}

export function roleHandlers(role: string): RoleHandlers | undefined {
  switch (role) {
    case 'as':
      return asRole();
    case 'egress':
      return egressRole();
    case 'ingress':
      return ingressRole();
    case 'app-b':
      return appBRole();
    case 'app-c':
      return appCRole();
    case 'agent-a':
      return agentRole();
    default:
      return undefined;
  }
}

function listenLocal(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('no TCP address'));
      else resolve(`http://127.0.0.1:${address.port}`);
    });
  });
}

function closeHttp(server: Server | undefined): Promise<void> {
  if (server === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}

// ---------------------------------------------------------------------------------------------
// Authorization server

/** The `tether as --dev` configuration, plus: the users may bind tokens to agent A's sidecar key (`tmb`). */
function asRole(): RoleHandlers {
  let server: AuthorizationServer | undefined;
  return {
    methods: {
      async start(params) {
        const { pkiDir, dataDir, tmbUsers, tmbHolder } = params as { pkiDir: string; dataDir: string; tmbUsers: string[]; tmbHolder: string };
        const { devConfig, startAuthorizationServer } = await import('@tether/as');
        const { certificateThumbprint } = await import('@tether/core');
        const config = devConfig({ pkiDir, host: '127.0.0.1', port: 0, dataDir, logLevel: 'silent' });
        const holderThumbprint = certificateThumbprint(new X509Certificate(readFileSync(join(pkiDir, `${tmbHolder}.pem`))));
        config.clients = (config.clients ?? []).map((c) => {
          if (c.client_id === tmbHolder) return { ...c, certificate_thumbprints: [holderThumbprint] };
          if (tmbUsers.includes(c.client_id)) return { ...c, tmb: { thumbprints: [], clients: [tmbHolder] } };
          return c;
        });
        server = await startAuthorizationServer(config, { defaultMetrics: false });
        return { issuer: server.issuer, url: server.url, tokenEndpoint: server.tokenEndpoint, jwksUri: server.jwksUri };
      },
    },
    async close() {
      await server?.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Sidecars

function egressRole(): RoleHandlers {
  const listeners = new Map<string, EgressSidecar>();
  return {
    methods: {
      async start(params) {
        const p = params as EgressStartParams;
        const cert = readFileSync(p.certFile);
        const key = readFileSync(p.keyFile);
        const ca = readFileSync(p.caFile);
        const { startEgress } = await import('@tether/sidecar');
        const urls: Record<string, string> = {};
        for (const l of p.listeners) {
          const egress = await startEgress({ listen: '127.0.0.1:0', cert, key, ca, routes: l.routes, log: { level: 'silent' } });
          listeners.set(l.name, egress);
          urls[l.name] = egress.url;
        }
        return urls;
      },
      stats(): Record<string, EgressStatsSnapshot> {
        const out: Record<string, EgressStatsSnapshot> = {};
        for (const [name, e] of listeners) {
          const s = e.stats;
          out[name] = { requests: s.requests, proofsSigned: s.proofsSigned, proofCacheHits: s.proofCacheHits, retries: s.retries, upstreamConnectionsOpened: s.upstreamConnectionsOpened, failures: { ...s.failures } };
        }
        return out;
      },
    },
    async close() {
      await Promise.all([...listeners.values()].map((e) => e.close()));
    },
  };
}

function ingressRole(): RoleHandlers {
  let ingress: IngressSidecar | undefined;
  return {
    methods: {
      async start(params) {
        const p = params as IngressStartParams;
        const ca = readFileSync(p.caFile);
        const { startIngress } = await import('@tether/sidecar');
        const { jwtAccessTokenValidator, remoteJwks } = await import('@tether/core');
        ingress = await startIngress({
          listen: '127.0.0.1:0',
          cert: readFileSync(p.certFile),
          key: readFileSync(p.keyFile),
          ca,
          upstream: p.upstream,
          tokens: jwtAccessTokenValidator({ keys: remoteJwks(p.jwksUri, { ca }), issuer: p.issuer, audience: p.audience }),
          authorizationServers: [p.issuer],
          log: { level: 'silent' },
        });
        return ingress.url;
      },
      stats(): IngressStatsSnapshot {
        const v = (ingress as IngressSidecar).verifier.stats;
        return { requests: v.requests, accepted: v.accepted, proofVerifications: v.proofVerifications, cacheHits: v.cacheHits, failures: { ...v.failures }, connectionsOpen: (ingress as IngressSidecar).state().connections };
      },
    },
    async close() {
      await ingress?.close();
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Applications

/** A token exchange (RFC 8693) sent as plain HTTP to the workload's own egress, which adds the mTLS identity. */
async function exchange(tokenUrl: string, clientId: string, subjectToken: string, audience: string): Promise<string> {
  const response = await fetch(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, client_id: clientId, subject_token: subjectToken, subject_token_type: TOKEN_TYPE_ACCESS_TOKEN, audience }).toString(),
  });
  const body = (await response.json()) as { access_token?: string; error?: string };
  if (response.status !== 200 || typeof body.access_token !== 'string') throw new Error(`token exchange refused: ${response.status} ${body.error ?? ''}`);
  return body.access_token;
}

function bearer(headers: Record<string, string | string[] | undefined> | undefined): string | undefined {
  const value = headers?.authorization;
  const v = Array.isArray(value) ? value[0] : value;
  return v !== undefined && /^Bearer /i.test(v) ? v.slice(7) : undefined;
}

function principalOf(headers: Record<string, string | string[] | undefined> | undefined): unknown {
  const value = headers?.[PRINCIPAL_HEADER];
  return typeof value === 'string' ? (JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as unknown) : null;
}

/** Agent B: an MCP server behind its ingress; it calls service C through its own egress. */
function appBRole(): RoleHandlers {
  let server: Server | undefined;
  const sessions = new Map<string, StreamableHTTPServerTransport>();
  /** Successor tokens for C, by A's token: one exchange per incoming token. */
  const successors = new Map<string, Promise<string>>();
  const stats = { toolCalls: 0, exchanges: 0, callsToC: 0, progressSent: 0, sessions: 0 };
  let lastSuccessor: string | undefined;
  let config: { egressUrl: string; tokenUrl: string; audienceC: string };

  let sdk: { McpServer: typeof McpServer; StreamableHTTPServerTransport: typeof StreamableHTTPServerTransport; z: typeof import('zod').z };

  function mcpServer(): McpServer {
    const { z } = sdk;
    const mcp = new sdk.McpServer({ name: 'agent-b', version: '0.1.0' });
    mcp.registerTool('whoami', { description: 'The principal agent B sees (verified by its ingress)' }, (extra) => {
      stats.toolCalls++;
      return { content: [{ type: 'text', text: JSON.stringify({ principal: principalOf(extra.requestInfo?.headers) }) }] };
    });
    mcp.registerTool(
      'lookup',
      { description: 'Look an item up at service C on behalf of the caller (token exchange + call through B\'s egress)', inputSchema: { item: z.string() } },
      async ({ item }, extra) => {
        stats.toolCalls++;
        const token = bearer(extra.requestInfo?.headers);
        if (token === undefined) throw new Error('no token');
        let successor = successors.get(token);
        if (successor === undefined) {
          stats.exchanges++;
          successor = exchange(config.tokenUrl, 'agent-b', token, config.audienceC);
          successors.set(token, successor);
          successor.catch(() => successors.delete(token));
        }
        const cToken = await successor;
        lastSuccessor = cToken;
        stats.callsToC++;
        const response = await fetch(`${config.egressUrl}/c/items/${encodeURIComponent(item)}`, { headers: { authorization: `Bearer ${cToken}` } });
        const body = await response.text();
        if (response.status !== 200) throw new Error(`service C answered ${response.status}: ${body}`);
        return { content: [{ type: 'text', text: JSON.stringify({ atB: principalOf(extra.requestInfo?.headers), fromC: JSON.parse(body) as unknown }) }] };
      },
    );
    mcp.registerTool('report', { description: 'A streamed result: progress notifications, then the summary', inputSchema: { steps: z.number().int().min(1).max(50) } }, async ({ steps }, extra) => {
      stats.toolCalls++;
      const progressToken = extra._meta?.progressToken;
      for (let i = 1; i <= steps; i++) {
        await new Promise((r) => setTimeout(r, 5));
        if (progressToken !== undefined) {
          await extra.sendNotification({ method: 'notifications/progress', params: { progressToken, progress: i, total: steps, message: `step ${i}/${steps}` } });
          stats.progressSent++;
        }
      }
      return { content: [{ type: 'text', text: `report done in ${steps} steps` }] };
    });
    return mcp;
  }

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    if (!(req.url ?? '/').startsWith('/mcp')) {
      res.writeHead(404, { 'content-type': 'application/json' }).end('{"error":"not_found"}');
      return;
    }
    const sid = req.headers['mcp-session-id'];
    let transport = typeof sid === 'string' ? sessions.get(sid) : undefined;
    if (transport === undefined) {
      if (req.method !== 'POST' || sid !== undefined) {
        res.writeHead(404, { 'content-type': 'application/json' }).end(JSON.stringify({ jsonrpc: '2.0', error: { code: -32001, message: 'Session not found' }, id: null }));
        return;
      }
      const t: StreamableHTTPServerTransport = new sdk.StreamableHTTPServerTransport({
        sessionIdGenerator: () => randomUUID(),
        onsessioninitialized: (id) => {
          sessions.set(id, t);
          stats.sessions++;
        },
      });
      t.onclose = () => {
        if (t.sessionId !== undefined) sessions.delete(t.sessionId);
      };
      await mcpServer().connect(t);
      transport = t;
    }
    await transport.handleRequest(req, res);
  }

  return {
    methods: {
      async start(params) {
        config = params as typeof config;
        sdk = {
          McpServer: (await import('@modelcontextprotocol/sdk/server/mcp.js')).McpServer,
          StreamableHTTPServerTransport: (await import('@modelcontextprotocol/sdk/server/streamableHttp.js')).StreamableHTTPServerTransport,
          z: (await import('zod')).z,
        };
        server = createServer((req, res) => {
          handle(req, res).catch((error: unknown) => {
            if (!res.headersSent) res.writeHead(500, { 'content-type': 'application/json' }).end(JSON.stringify({ error: String(error) }));
          });
        });
        return listenLocal(server);
      },
      stats: () => ({ ...stats }),
      /** For the T5 attack: the last B->C token, as malware in B's process would find it. */
      lastSuccessor: () => lastSuccessor,
    },
    async close() {
      await Promise.all([...sessions.values()].map((t) => t.close()));
      await closeHttp(server);
    },
  };
}

/** Service C: an ordinary HTTP API behind its ingress; answers with the principal it was given. */
function appCRole(): RoleHandlers {
  let server: Server | undefined;
  let requests = 0;
  return {
    methods: {
      start() {
        server = createServer((req, res) => {
          requests++;
          const body = JSON.stringify({ service: 'service-c', path: req.url, principal: principalOf(req.headers) });
          res.writeHead(200, { 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) }).end(body);
        });
        return listenLocal(server);
      },
      stats: () => ({ requests }),
    },
    async close() {
      await closeHttp(server);
    },
  };
}

// ---------------------------------------------------------------------------------------------
// Agent A

interface TextResult {
  content?: Array<{ type: string; text?: string }>;
  isError?: boolean;
}

function textOf(result: unknown): string {
  const r = result as TextResult;
  return (r.content ?? []).map((c) => c.text ?? '').join('');
}

/**
 * Agent A: the official MCP client, unmodified, over plain HTTP to its egress. It holds its users'
 * tokens (exchanged at the AS through the egress) but never a key.
 */
function agentRole(): RoleHandlers {
  const held: string[] = [];
  return {
    methods: {
      async run(params): Promise<AgentRunResult> {
        const p = params as AgentRunParams;
        const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
        const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
        const mcpUrl = new URL(`${p.egressUrl}/b/mcp`);
        const result: AgentRunResult = { users: [], errors: [], tokens: 0 };
        const tokens = await Promise.all(p.users.map((u) => exchange(p.tokenUrl, 'agent-a', u.token, p.audienceB)));
        held.push(...tokens);
        result.tokens = tokens.length;
        const session = async (token: string) => {
          const transport = new StreamableHTTPClientTransport(mcpUrl, { requestInit: { headers: { authorization: `Bearer ${token}` } } });
          const client = new Client({ name: 'agent-a', version: '0.1.0' });
          await client.connect(transport);
          return { client, transport };
        };
        await Promise.all(
          p.users.map(async (u, i) => {
            const summary = { user: u.user, calls: 0, ok: 0, progress: 0, streamed: false, sub: null as string | null, actChain: [] as string[], atB: null as unknown, fromC: null as unknown };
            result.users.push(summary);
            try {
              const { client, transport } = await session(tokens[i] as string);
              for (let n = 0; n < p.callsPerUser; n++) {
                summary.calls++;
                const r = await client.callTool({ name: 'lookup', arguments: { item: `${u.user}-${n}` } });
                const parsed = JSON.parse(textOf(r)) as { atB: { sub?: string }; fromC: { principal?: { sub?: string; act?: unknown } } };
                if (r.isError !== true && parsed.fromC.principal?.sub === u.user && parsed.atB.sub === u.user) summary.ok++;
                summary.atB = parsed.atB;
                summary.fromC = parsed.fromC;
                summary.sub = parsed.fromC.principal?.sub ?? null;
                summary.actChain = actChain(parsed.fromC.principal?.act);
              }
              summary.calls++;
              const r = await client.callTool({ name: 'report', arguments: { steps: p.progressSteps } }, undefined, { onprogress: () => summary.progress++ });
              summary.streamed = r.isError !== true && summary.progress === p.progressSteps;
              if (summary.streamed) summary.ok++;
              await transport.terminateSession();
              await client.close();
            } catch (error) {
              result.errors.push(`${u.user}: ${error instanceof Error ? error.message : String(error)}`);
            }
          }),
        );
        if (p.tmbToken !== undefined) {
          // Deferred key binding: a token the user bound to A's sidecar key; A only has the token.
          try {
            const { client, transport } = await session(p.tmbToken);
            const r = await client.callTool({ name: 'whoami', arguments: {} });
            const principal = (JSON.parse(textOf(r)) as { principal: { sub?: string; binding?: string } | null }).principal;
            result.tmbViaSidecar = { ok: r.isError !== true && principal?.sub === p.tmbUser, principal };
            await transport.terminateSession();
            await client.close();
          } catch (error) {
            result.tmbViaSidecar = { ok: false, principal: null, error: error instanceof Error ? error.message : String(error) };
          }
          result.tmbDirect = await direct(p.ingressBUrl, p.caFile, p.tmbToken);
        }
        return result;
      },
      /** T3: what a prompt injection makes the agent reveal (its tokens; it has no key to reveal). */
      exfiltrate: () => held[0],
    },
    async close() {},
  };
}

function actChain(act: unknown): string[] {
  const chain: string[] = [];
  let a = act as { sub?: string; act?: unknown } | undefined;
  while (a !== undefined && a !== null && typeof a.sub === 'string') {
    chain.push(a.sub);
    a = a.act as typeof a;
  }
  return chain;
}

/** A sends the token to B's ingress itself: it has no client certificate, because it has no key. */
function direct(url: string, caFile: string, token: string): Promise<{ status: number; error: string | null }> {
  return new Promise((resolve) => {
    const req = httpsRequest(new URL('/mcp', url), { method: 'GET', ca: readFileSync(caFile), headers: { authorization: `Bearer ${token}` }, timeout: 5000 });
    req.on('response', (res) => {
      res.resume();
      const challenge = String(res.headers['www-authenticate'] ?? '');
      resolve({ status: res.statusCode ?? 0, error: /error="([^"]+)"/.exec(challenge)?.[1] ?? null });
    });
    req.on('timeout', () => req.destroy(new Error('timeout')));
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ status: 0, error: error.code ?? error.message }));
    req.end();
  });
}
