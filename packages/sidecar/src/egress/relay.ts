/** Relaying an upstream response to the agent, with its end (complete or cut off) made visible. */
import type { ServerResponse } from 'node:http';
import { endToEndHeaders } from '../headers.js';
import type { Logger } from '../log.js';
import { abortResponse, type AnyResponse } from '../shared/respond.js';
import type { EgressMetrics } from './metrics.js';
import type { AgentLink, UpstreamResponse } from './upstream/exchange.js';

export interface RelayContext {
  route: string;
  method: string;
  /**
   * The agent's side: its going away before the response was relayed in full cancels the upstream
   * response, and a stream cut off then is not an upstream failure.
   */
  agent: AgentLink;
  /** The response was relayed in full (its 'end', with the declared length if any). */
  onComplete(): void;
  metrics: EgressMetrics;
  log: Logger;
}

/** The body length the response declares, or NaN when it has none (or no body). */
function declaredLength(upstream: UpstreamResponse, method: string): number {
  const bodiless = method === 'HEAD' || upstream.status === 204 || upstream.status === 304 || upstream.status < 200;
  return bodiless ? Number.NaN : Number(upstream.headers['content-length'] ?? Number.NaN);
}

function flushPendingHeaders(res: ServerResponse): void {
  if (!res.headersSent && !res.destroyed) res.flushHeaders();
}

/** Send the response headers (see below), then pipe the body with backpressure. */
export function relay(upstream: UpstreamResponse, res: AnyResponse, context: RelayContext): void {
  (res as ServerResponse).writeHead(upstream.status, endToEndHeaders(upstream.headers));
  // The headers go out even when no body follows yet (server-sent events pass): on h2c at once
  // (its frames are sent together anyway), on HTTP/1.1 at the end of this turn of the event loop
  // unless the first body bytes, which usually follow within it, took them along (one write, not two).
  if ('stream' in res) (res as unknown as { flushHeaders(): void }).flushHeaders(); // Node has it; @types/node does not declare it
  else setImmediate(flushPendingHeaders, res);
  // The response is relayed as complete only on its 'end' with the declared length, if any. A
  // reset HTTP/2 stream (RST_STREAM CANCEL / NO_ERROR raise no error) can close without 'end' or
  // 'end' early: the agent then sees the response cut off (HTTP/1.1 connection closed, h2c stream
  // reset), never complete.
  let complete = false;
  let failed = false;
  const interrupted = () => {
    if (complete || failed) return;
    failed = true;
    if (context.agent.gone) return; // the agent left and we cancelled the stream: not an upstream failure
    context.metrics.failure('upstream_reset');
    context.log.warn({ route: context.route }, 'upstream response interrupted');
    abortResponse(res);
  };
  const declared = declaredLength(upstream, context.method);
  let received = 0;
  if (Number.isSafeInteger(declared)) upstream.body.on('data', (chunk: Buffer) => (received += chunk.length));
  upstream.body.on('error', interrupted);
  upstream.body.once('close', interrupted);
  upstream.body.once('end', () => {
    if (Number.isSafeInteger(declared) && received !== declared) return interrupted();
    complete = true;
    context.onComplete();
    res.end();
  });
  // The agent went away before the upstream response was complete: cancel it upstream. (handle.ts
  // tells from the agent's response 'close', not 'finish' / writableFinished: Http2ServerResponse
  // reports those on a reset stream too.)
  context.agent.onGone(() => upstream.abort());
  upstream.body.pipe(res as NodeJS.WritableStream, { end: false });
}
