/** Agent B: the MCP server (official SDK) whose tool calls service C. */
import { randomUUID } from 'node:crypto';
import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { StreamableHTTPServerTransport } from '@modelcontextprotocol/sdk/server/streamableHttp.js';
import type { McpServer } from '@modelcontextprotocol/sdk/server/mcp.js';
import { bearer, closeHttp, exchange, listenLocal, principalOf, type RoleHandlers } from './shared.js';

/** Agent B: an MCP server behind its ingress; it calls service C through its own egress. */
export function appBRole(): RoleHandlers {
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
          successor = exchange(config.tokenUrl, 'agent-b', token, { audience: config.audienceC });
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
