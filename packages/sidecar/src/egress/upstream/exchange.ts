/** What one request to an upstream is made of and what comes back, for both HTTP/2 and HTTP/1.1. */
import type { IncomingHttpHeaders, IncomingMessage, OutgoingHttpHeaders } from 'node:http';
import type { Http2ServerRequest } from 'node:http2';
import type { Readable } from 'node:stream';

export type AgentRequest = IncomingMessage | Http2ServerRequest;

/** A request body: buffered (small, declared length: can be sent again) or streamed from the agent. */
export type RequestBody = { kind: 'buffered'; data: Buffer } | { kind: 'stream'; source: AgentRequest };

/** One request to send upstream; `rejected` names a proof the upstream refused (never reused). */
export interface Outbound {
  method: string;
  path: string;
  headers: OutgoingHttpHeaders;
  body: RequestBody;
  token: string | undefined;
  rejected?: string | undefined;
  /** The agent's side: when it goes away, an upstream request still waiting for its response is cancelled. */
  agent?: AgentLink | undefined;
}

/**
 * Whether the agent of one request went away, and the cancel of the upstream request in progress,
 * run when it does. One per agent request: lighter than an AbortController and its listeners.
 * At most one upstream request is in progress at a time (retries are sequential), so there is one
 * cancel slot: the transport holds it while waiting for the response, the relay while streaming.
 */
export class AgentLink {
  #gone = false;
  #complete = false;
  #cancel: (() => void) | undefined;

  /** The agent went away before its response was relayed in full. */
  get gone(): boolean {
    return this.#gone;
  }

  /**
   * `cancel` cancels the upstream request in progress when the agent goes away (at once if it
   * already has). Returns the function that releases the slot (only if it still holds `cancel`).
   */
  onGone(cancel: () => void): () => void {
    if (this.#gone) {
      cancel();
      return noop;
    }
    this.#cancel = cancel;
    return () => {
      if (this.#cancel === cancel) this.#cancel = undefined;
    };
  }

  /** The response was relayed in full: from now on the agent's leaving is no going away and cancels nothing. */
  complete(): void {
    this.#complete = true;
    this.#cancel = undefined;
  }

  /** The agent's response closed: if that was before the response was relayed in full, the agent went away; cancel what is in progress (once). */
  leave(): void {
    if (this.#gone || this.#complete) return;
    this.#gone = true;
    const cancel = this.#cancel;
    this.#cancel = undefined;
    cancel?.();
  }
}

const noop = (): void => undefined;

export interface UpstreamResponse {
  status: number;
  headers: IncomingHttpHeaders;
  body: Readable;
  /** The proof sent with the request (undefined without a bearer token). */
  sentProof: string | undefined;
  /** Cancel the upstream request (h2: RST_STREAM CANCEL; h1: socket destroyed). */
  abort(): void;
}

/** How each transport sends, with what. */
export interface SendContext {
  /** Longest wait from sending until the response headers, ms (0 = none). */
  upstreamTimeoutMs: number;
}

/** The upstream sent no response headers within `upstreamTimeoutMs`; the request was cancelled. */
export class UpstreamTimeoutError extends Error {
  constructor(readonly timeoutMs: number) {
    super(`no upstream response headers within ${timeoutMs} ms`);
  }
}

/**
 * Arm the upstream response timeout: after `ms` (0 = never), `expire` runs once. Returns the
 * function that disarms it (call it when the response headers arrive or the request ends).
 */
export function responseTimer(ms: number, expire: (error: UpstreamTimeoutError) => void): () => void {
  if (ms === 0) return () => undefined;
  const timer = setTimeout(() => expire(new UpstreamTimeoutError(ms)), ms);
  return () => clearTimeout(timer);
}
