/** Sending one request as a stream of an upstream HTTP/2 session. */
import type { OutgoingHttpHeaders } from 'node:http';
import { constants as h2, type ClientHttp2Session, type ClientHttp2Stream, type IncomingHttpHeaders as H2Headers } from 'node:http2';
import { addAbortSignal } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import { PROOF_HEADER, type ConnectionProofSigner } from '@tether/core';
import { pipeBody } from '../../servers.js';
import { LostError, unprocessed } from '../retry.js';
import { responseTimer, type Outbound, type SendContext, type UpstreamResponse } from './exchange.js';

export interface H2Connection {
  kind: 'h2';
  session: ClientHttp2Session;
  socket: TLSSocket;
}

const PROOF_HEADER_LOWER = PROOF_HEADER.toLowerCase();
const COLON = 0x3a;

/** The proof for `token` on this connection; a connection that closed first means nothing was sent. */
async function proofFor(conn: H2Connection, signer: ConnectionProofSigner, token: string | undefined, rejected: string | undefined): Promise<string | undefined> {
  if (token === undefined) return undefined;
  try {
    return await signer.proofFor(conn.socket, token, rejected);
  } catch (error) {
    // The connection closed before its exporter could be read: nothing was sent.
    if (conn.socket.destroyed || conn.session.closed || conn.session.destroyed) throw unprocessed(error);
    throw error;
  }
}

function openStream(conn: H2Connection, authority: string, outbound: Outbound, proof: string | undefined, endStream: boolean): ClientHttp2Stream {
  const all: OutgoingHttpHeaders = { ':method': outbound.method, ':path': outbound.path, ':scheme': 'https', ':authority': authority };
  const headers = outbound.headers;
  for (const name of Object.keys(headers)) if (name.charCodeAt(0) !== COLON) all[name] = headers[name];
  if (proof !== undefined) all[PROOF_HEADER_LOWER] = proof;
  try {
    return conn.session.request(all, { endStream });
  } catch (error) {
    // The session was closing (GOAWAY) or gone: nothing was sent.
    throw unprocessed(error);
  }
}

/**
 * Reset `stream` with CANCEL (the ingress then cancels the application's request) without sending
 * END_STREAM first, as an aborted `signal` of `session.request()` would: Node resets a stream it
 * destroys with its AbortError with CANCEL (any other error: INTERNAL_ERROR). Unlike
 * stream.close(CANCEL), which ends the writable side first and would deliver a cut-off request
 * body upstream as a complete one.
 */
function cancelStream(stream: ClientHttp2Stream): void {
  if (!stream.destroyed) addAbortSignal(AbortSignal.abort(), stream);
}

/** A stream that ended before its response: REFUSED_STREAM (RFC 9113 section 8.7) proves it unprocessed. */
function lost(stream: ClientHttp2Stream, error: Error): Error {
  return stream.rstCode === h2.NGHTTP2_REFUSED_STREAM ? unprocessed(error) : new LostError(error.message, { cause: error });
}

/** The response; its headers as received (`:status` included: relaying copies end-to-end fields only). */
function response(stream: ClientHttp2Stream, h: H2Headers, sentProof: string | undefined): UpstreamResponse {
  return { status: Number(h[h2.HTTP2_HEADER_STATUS]), headers: h, body: stream, sentProof, abort: () => cancelStream(stream) };
}

/** Send `outbound` on `conn`; resolves with the response headers (the body streams). */
export async function sendH2(conn: H2Connection, authority: string, outbound: Outbound, signer: ConnectionProofSigner, context: SendContext): Promise<UpstreamResponse> {
  const sentProof = await proofFor(conn, signer, outbound.token, outbound.rejected);
  const body = outbound.body;
  const empty = body.kind === 'buffered' && body.data.length === 0;
  const stream = openStream(conn, authority, outbound, sentProof, empty);
  // The agent leaving cancels the stream, until it closes (the relay takes over the cancel once it streams the response).
  const agent = outbound.agent;
  if (agent !== undefined) stream.once('close', agent.onGone(() => cancelStream(stream)));
  return new Promise((resolve, reject) => {
    let settled = false;
    const settle = (error: Error | undefined, value?: UpstreamResponse) => {
      if (settled) return;
      settled = true;
      disarm();
      if (error === undefined) resolve(value as UpstreamResponse);
      else reject(error);
    };
    // No response headers in time: cancel the stream (RST_STREAM CANCEL), the agent gets a 504.
    const disarm = responseTimer(context.upstreamTimeoutMs, (timeout) => {
      settle(timeout);
      if (!stream.destroyed) stream.close(h2.NGHTTP2_CANCEL);
    });
    // The 'error' comes before 'close': REFUSED_STREAM (also how a GOAWAY's unprocessed streams
    // end) must be told from other resets here too.
    stream.on('error', (error) => {
      if (!settled) settle(lost(stream, error));
    });
    stream.once('close', () => {
      if (!settled) settle(lost(stream, new Error(`upstream stream closed before a response (code ${stream.rstCode})`)));
    });
    stream.once('response', (h) => settle(undefined, response(stream, h, sentProof)));
    if (!empty) {
      // The agent's body failed: reset the stream without END_STREAM (INTERNAL_ERROR).
      if (body.kind === 'buffered') stream.end(body.data);
      else pipeBody(body.source, stream, () => stream.destroy(new Error("the agent's request body was interrupted")));
    }
  });
}
