/** What the demo's roles share: local listeners, the token exchange through an egress, identity headers. */
import type { Server } from 'node:http';
import { TOKEN_EXCHANGE, TOKEN_TYPE_ACCESS_TOKEN } from '../protocol.js';

export const PRINCIPAL_HEADER = 'x-tether-principal';
const EXCHANGE_TIMEOUT_MS = 10_000;

export interface RoleHandlers {
  methods: Record<string, ((params: unknown) => unknown) | undefined>;
  close(): Promise<void>;
}

export function listenLocal(server: Server): Promise<string> {
  return new Promise((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const address = server.address();
      if (address === null || typeof address === 'string') reject(new Error('no TCP address'));
      else resolve(`http://127.0.0.1:${address.port}`);
    });
  });
}

export function closeHttp(server: Server | undefined): Promise<void> {
  if (server === undefined) return Promise.resolve();
  return new Promise((resolve) => {
    server.close(() => resolve());
    server.closeAllConnections();
  });
}


/** What a token exchange is for: an `audience` (RFC 8693) or a `resource` (RFC 8707). */
export type ExchangeTarget = { audience: string } | { resource: string };

/**
 * A token exchange (RFC 8693) sent as plain HTTP to the workload's own egress, which adds the mTLS
 * identity; `send` is a fetch that reaches the token endpoint (default: `tokenUrl` is the egress URL).
 */
export async function exchange(tokenUrl: string, clientId: string, subjectToken: string, target: ExchangeTarget, send: typeof fetch = fetch): Promise<string> {
  const response = await send(tokenUrl, {
    method: 'POST',
    headers: { 'content-type': 'application/x-www-form-urlencoded' },
    body: new URLSearchParams({ grant_type: TOKEN_EXCHANGE, client_id: clientId, subject_token: subjectToken, subject_token_type: TOKEN_TYPE_ACCESS_TOKEN, ...target }).toString(),
    signal: AbortSignal.timeout(EXCHANGE_TIMEOUT_MS),
  });
  const body = (await response.json()) as { access_token?: string; error?: string; error_description?: string };
  if (response.status !== 200 || typeof body.access_token !== 'string') throw new Error(`token exchange refused: ${response.status} ${body.error ?? ''} ${body.error_description ?? ''}`.trimEnd());
  return body.access_token;
}

export function bearer(headers: Record<string, string | string[] | undefined> | undefined): string | undefined {
  const value = headers?.authorization;
  const v = Array.isArray(value) ? value[0] : value;
  return v !== undefined && /^Bearer /i.test(v) ? v.slice(7) : undefined;
}

export function principalOf(headers: Record<string, string | string[] | undefined> | undefined): unknown {
  const value = headers?.[PRINCIPAL_HEADER];
  return typeof value === 'string' ? (JSON.parse(Buffer.from(value, 'base64url').toString('utf8')) as unknown) : null;
}
