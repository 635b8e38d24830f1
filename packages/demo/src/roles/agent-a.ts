/** Agent A: the MCP client (official SDK) that holds tokens but no key. */
import { readFileSync } from 'node:fs';
import { request as httpsRequest } from 'node:https';
import type { AgentDiscovery, AgentRunParams, AgentRunResult } from '../protocol.js';
import { discoverTokenEndpoint, type DiscoveredTarget } from './agent-a-discovery.js';
import { exchange, type RoleHandlers } from './shared.js';

interface TextResult {
  content?: Array<{ type: string; text?: string }>;
  isError?: boolean;
}

function textOf(result: unknown): string {
  const r = result as TextResult;
  return (r.content ?? []).map((c) => c.text ?? '').join('');
}

/** What A reports of its discovery (the target without its fetch). */
function discoveryOf(target: DiscoveredTarget): AgentDiscovery {
  const { fetch: _fetch, ...discovery } = target;
  return discovery;
}

/**
 * Agent A: the official MCP client, unmodified, over plain HTTP to its egress. It holds its users'
 * tokens (their identity provider's tokens, exchanged for its own at the AS it discovered from B,
 * through the egress) but never a key.
 */
export function agentRole(): RoleHandlers {
  const held: string[] = [];
  let target: DiscoveredTarget | undefined;
  return {
    methods: {
      /** Where B's tokens come from is discovered, not configured (MCP authorization, RFC 9728). */
      async discover(params): Promise<AgentDiscovery> {
        const egress = (params as { egress: AgentRunParams['egress'] }).egress;
        target = await discoverTokenEndpoint(new URL(`${egress.mcp}/b/mcp`), egress);
        return discoveryOf(target);
      },
      async run(params): Promise<AgentRunResult> {
        const p = params as AgentRunParams;
        const { Client } = await import('@modelcontextprotocol/sdk/client/index.js');
        const { StreamableHTTPClientTransport } = await import('@modelcontextprotocol/sdk/client/streamableHttp.js');
        const mcpUrl = new URL(`${p.egress.mcp}/b/mcp`);
        const result: AgentRunResult = { users: [], errors: [], tokens: 0 };
        const found = target;
        if (found === undefined) throw new Error('run before discover');
        result.discovery = discoveryOf(found);
        // Each user's IdP token exchanged for A's own token for B: RFC 8707 `resource` from the metadata.
        const tokens = await Promise.all(p.users.map((u) => exchange(found.tokenEndpoint, 'agent-a', u.token, { resource: found.resource }, found.fetch)));
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
            const summary = { user: u.user, calls: 0, ok: 0, progress: 0, streamed: false, sub: null as string | null, actChain: [] as string[], atBSub: null as string | null, atBActChain: [] as string[], atB: null as unknown, fromC: null as unknown };
            result.users.push(summary);
            try {
              const { client, transport } = await session(tokens[i] as string);
              for (let n = 0; n < p.callsPerUser; n++) {
                summary.calls++;
                const r = await client.callTool({ name: 'lookup', arguments: { item: `${u.user}-${n}` } });
                const parsed = JSON.parse(textOf(r)) as { atB: { sub?: string; act?: unknown }; fromC: { principal?: { sub?: string; act?: unknown } } };
                if (r.isError !== true && parsed.fromC.principal?.sub === u.user && parsed.atB.sub === u.user) summary.ok++;
                summary.atB = parsed.atB;
                summary.atBSub = parsed.atB.sub ?? null;
                summary.atBActChain = actChain(parsed.atB.act);
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
