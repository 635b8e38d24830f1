/** Sending one request on the keep-alive HTTP/1.1 pool of a server that does not speak h2. */
import { request as httpsRequest, type Agent as HttpsAgent } from 'node:https';
import type { ClientRequest } from 'node:http';
import type { TLSSocket } from 'node:tls';
import { PROOF_HEADER, type ConnectionProofSigner } from '@tether/core';
import { pipeBody } from '../../servers.js';
import { AgentGoneError, connectFailure, IDEMPOTENT_METHODS, LostError, unprocessed } from '../retry.js';
import { responseTimer, type Outbound, type SendContext, type UpstreamResponse } from './exchange.js';

/** What the HTTP/1.1 transport needs of its pool. */
export interface H1Target {
  readonly origin: URL;
  readonly host: string;
  agent(): HttpsAgent;
  /** Resolves once `socket` is secured and registered with the proof signer. */
  ready(socket: TLSSocket): Promise<void>;
}

/** Classify a request error before the response: see README "Connection-level retry". */
function failure(req: ClientRequest, error: NodeJS.ErrnoException, secured: boolean, method: string): Error {
  if (!secured) return connectFailure(error); // the connection never came up: nothing was sent
  // A kept-alive socket the server closed meanwhile: the request never reached it.
  if (req.reusedSocket && error.code === 'ECONNRESET' && IDEMPOTENT_METHODS.has(method)) return unprocessed(error);
  return new LostError(error.message, { cause: error });
}

/** Send `outbound`; resolves with the response headers (the body streams). */
export function sendH1(target: H1Target, outbound: Outbound, signer: ConnectionProofSigner, context: SendContext): Promise<UpstreamResponse> {
  const { method, path, headers, body, token, rejected, agent } = outbound;
  return new Promise((resolve, reject) => {
    let sentProof: string | undefined;
    let secured = false;
    let settled = false;
    let disarm = () => undefined as void;
    let release = () => undefined as void;
    const settle = (error: Error | undefined, value?: UpstreamResponse) => {
      if (settled) return;
      settled = true;
      disarm();
      release();
      if (error === undefined) resolve(value as UpstreamResponse);
      else reject(error);
    };
    const req = httpsRequest({ protocol: 'https:', host: target.host, port: Number(target.origin.port || 443), method, path, headers: { ...headers, host: target.origin.host }, agent: target.agent() });
    const cancel = () => req.destroy(new AgentGoneError('the agent went away'));
    // The agent leaving before the response cancels the request (the relay takes over afterwards).
    if (agent !== undefined) {
      release = agent.onGone(cancel);
      req.once('close', release);
    }
    req.on('error', (error: NodeJS.ErrnoException) => settle(failure(req, error, secured, method)));
    req.once('socket', (raw) => {
      const socket = raw as TLSSocket;
      target
        .ready(socket)
        .then(async () => {
          secured = true;
          if (token !== undefined) {
            sentProof = await signer.proofFor(socket, token, rejected);
            req.setHeader(PROOF_HEADER, sentProof);
          }
          if (settled) return;
          // Sent from here on: no response headers in time destroys the socket (the agent gets a 504).
          disarm = responseTimer(context.upstreamTimeoutMs, (timeout) => {
            settle(timeout);
            req.destroy();
          });
          if (body.kind === 'buffered') req.end(body.data);
          else pipeBody(body.source, req, cancel);
        })
        .catch((error: unknown) => req.destroy(error instanceof Error ? error : new Error(String(error))));
    });
    req.once('response', (res) => {
      res.on('error', () => undefined);
      settle(undefined, { status: res.statusCode ?? 502, headers: res.headers, body: res, sentProof, abort: () => req.destroy() });
    });
  });
}
