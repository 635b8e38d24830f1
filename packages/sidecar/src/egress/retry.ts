/**
 * The egress retry rules (README "Retry" and "Connection-level retry"), in one place:
 *
 * 1. a refused / reset connection ATTEMPT (nothing sent) is tried again with backoff, 25 ms
 *    doubling to 250 ms, for up to `connectRetryMs`;
 * 2. a request whose connection went away before any response byte is sent ONCE more on a new
 *    connection when its body is buffered and it provably was not processed or is idempotent;
 * 3. a `401` whose `WWW-Authenticate` says `use_session_binding` / `invalid_proof` is sent once
 *    more with a freshly signed proof when its body is buffered.
 *
 * The transports (upstream/h1.ts, upstream/h2.ts) classify their failures with the error classes
 * below; nothing else decides what is retried.
 */
import { parseWwwAuthenticate } from '@tether/core';
import type { Outbound, UpstreamResponse } from './upstream/exchange.js';

/** Connection attempt failures worth trying again (the upstream restarting), unlike certificate or timeout errors. */
export const TRANSIENT_CONNECT_CODES: ReadonlySet<string> = new Set(['ECONNREFUSED', 'ECONNRESET', 'EPIPE', 'ECONNABORTED', 'EHOSTUNREACH', 'ENETUNREACH', 'EAI_AGAIN']);

/** Methods sent again after a connection died under them (RFC 9110 section 9.2.2). */
export const IDEMPOTENT_METHODS: ReadonlySet<string> = new Set(['GET', 'HEAD', 'OPTIONS', 'PUT', 'DELETE']);

/** `WWW-Authenticate` errors answered by one retry on a fresh proof. */
export const FRESH_PROOF_ERRORS: ReadonlySet<string> = new Set(['use_session_binding', 'invalid_proof']);

const BACKOFF_FIRST_MS = 25;
const BACKOFF_MAX_MS = 250;

/** An upstream failure where the request was certainly not processed, so it can be sent again. */
export class UnprocessedError extends Error {}

/** The upstream connection could not be opened (refused / reset before TLS completed): nothing was sent. */
export class ConnectError extends UnprocessedError {}

/** The connection died after the request was (maybe) sent but before any response byte: resent only when idempotent. */
export class LostError extends Error {}

/** The agent went away (hung up or reset its stream) before its request was answered. */
export class AgentGoneError extends Error {}

export function unprocessed(error: unknown): UnprocessedError {
  return new UnprocessedError(error instanceof Error ? error.message : String(error), { cause: error });
}

/** A failed connection attempt: a {@link ConnectError} when transient, else the error itself. */
export function connectFailure(error: Error): Error {
  const code = (error as NodeJS.ErrnoException).code;
  return code !== undefined && TRANSIENT_CONNECT_CODES.has(code) ? new ConnectError(error.message, { cause: error }) : error;
}

/** What the retry loop reports (counters and debug logs). */
export interface RetryEvents {
  connectRetry(error: Error, delayMs: number): void;
  connectionRetry(error: Error): void;
  freshProofRetry(error: string): void;
  /** A fresh-proof retry was due but the body had been streamed: the agent sees the 401. */
  freshProofImpossible(): void;
}

export type Send = (outbound: Outbound) => Promise<UpstreamResponse>;

/** Rule 2: may a request that failed with `error` be sent once more on a new connection? */
function mayResend(error: unknown, outbound: Outbound): boolean {
  if (outbound.body.kind !== 'buffered' || error instanceof ConnectError) return false;
  return error instanceof UnprocessedError || (error instanceof LostError && IDEMPOTENT_METHODS.has(outbound.method));
}

/** `send` under rules 1 and 2. Throws {@link AgentGoneError} once the agent left. */
export async function sendResilient(send: Send, outbound: Outbound, connectRetryMs: number, events: RetryEvents): Promise<UpstreamResponse> {
  const deadline = Date.now() + connectRetryMs;
  let delay = BACKOFF_FIRST_MS;
  let resent = false;
  const aborted = () => outbound.agent?.gone === true;
  for (;;) {
    if (aborted()) throw new AgentGoneError('the agent went away');
    try {
      return await send(outbound);
    } catch (error) {
      if (aborted()) throw new AgentGoneError('the agent went away', { cause: error });
      if (error instanceof ConnectError && Date.now() + delay <= deadline) {
        events.connectRetry(error, delay);
        await new Promise((r) => setTimeout(r, delay));
        delay = Math.min(delay * 2, BACKOFF_MAX_MS);
        continue;
      }
      if (resent || !mayResend(error, outbound)) throw error;
      resent = true;
      events.connectionRetry(error as Error);
    }
  }
}

/** Rule 3: the `WWW-Authenticate` error that asks for a fresh proof, if this response carries one. */
export function freshProofWanted(response: UpstreamResponse, token: string | undefined): string | undefined {
  if (response.status !== 401 || token === undefined || response.sentProof === undefined) return undefined;
  const error = parseWwwAuthenticate(response.headers['www-authenticate']).find((c) => c.scheme === 'bearer')?.params.error;
  return error !== undefined && FRESH_PROOF_ERRORS.has(error) ? error : undefined;
}

/** All three rules: the response the agent gets (or the failure). */
export async function sendWithRetries(send: Send, outbound: Outbound, connectRetryMs: number, events: RetryEvents): Promise<UpstreamResponse> {
  const first = await sendResilient(send, outbound, connectRetryMs, events);
  const error = freshProofWanted(first, outbound.token);
  if (error === undefined) return first;
  if (outbound.body.kind !== 'buffered') {
    events.freshProofImpossible();
    return first;
  }
  events.freshProofRetry(error);
  first.body.resume();
  return sendResilient(send, { ...outbound, rejected: first.sentProof }, connectRetryMs, events);
}
