/** The agent's request body: buffered when small and of declared length (so it can be sent again), else streamed. */
import { constants as h2 } from 'node:http2';
import { AgentGoneError } from './retry.js';
import type { AgentRequest, RequestBody } from './upstream/exchange.js';

/** The body of bodiless requests (shared: a zero-length buffer holds nothing to change). */
const EMPTY: RequestBody = Object.freeze({ kind: 'buffered', data: Buffer.alloc(0) });

function hasNoBody(req: AgentRequest): boolean {
  const declared = req.headers['content-length'];
  if (declared === '0') return true;
  return 'stream' in req ? req.stream.endAfterHeaders : declared === undefined && req.headers['transfer-encoding'] === undefined;
}

/**
 * Buffer bodies with a Content-Length up to `retryBufferBytes`; stream everything else. A body known
 * at once (none, or streamed) is returned as it is, not as a promise. Throws {@link AgentGoneError}
 * on a cut-off body.
 */
export function readBody(req: AgentRequest, retryBufferBytes: number): RequestBody | Promise<RequestBody> {
  if (hasNoBody(req)) return EMPTY;
  const declared = req.headers['content-length'];
  if (declared === undefined || !/^\d+$/.test(declared) || Number(declared) > retryBufferBytes) return { kind: 'stream', source: req };
  return buffer(req, declared);
}

async function buffer(req: AgentRequest, declared: string): Promise<RequestBody> {
  const chunks: Buffer[] = [];
  try {
    for await (const chunk of req as AsyncIterable<Buffer>) chunks.push(chunk);
  } catch (error) {
    throw new AgentGoneError(`the agent's request body was interrupted: ${error instanceof Error ? error.message : String(error)}`, { cause: error });
  }
  // An h2c stream reset mid-body can end the request early instead of failing it.
  if ('stream' in req && req.stream.rstCode !== undefined && req.stream.rstCode !== h2.NGHTTP2_NO_ERROR) throw new AgentGoneError('the agent reset its stream');
  const data = Buffer.concat(chunks);
  if (data.length !== Number(declared)) throw new AgentGoneError(`the agent sent ${data.length} of ${declared} body bytes`);
  return { kind: 'buffered', data };
}
