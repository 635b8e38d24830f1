/**
 * Helpers for the request-limit tests (test/as/limits.test.ts, test/sidecar/limits.test.ts,
 * test/adapters/body-limits.test.ts): one HTTP/2 request whose body is sent whole, in part or
 * not at all, and waits on sockets.
 */
import type { ClientHttp2Session, IncomingHttpHeaders, OutgoingHttpHeaders } from 'node:http2';
import { constants as h2 } from 'node:http2';
import type { Socket } from 'node:net';
import { setTimeout as sleep } from 'node:timers/promises';

export type BodyPlan =
  /** No body: END_STREAM with the headers. */
  | { kind: 'none' }
  /** The whole body, then END_STREAM. */
  | { kind: 'full'; data: string | Buffer }
  /** These bytes and no END_STREAM: the rest of the body never comes. */
  | { kind: 'partial'; data: Buffer }
  /** Nothing after the headers, and no END_STREAM. */
  | { kind: 'pending' };

export interface H2Result {
  /** `:status`, or 0 when the stream was reset before a response. */
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The stream's close code (0 NO_ERROR, 11 ENHANCE_YOUR_CALM); -1 if it did not close by itself. */
  rstCode: number;
  /** Milliseconds from sending the headers to the response headers (or to the reset). */
  ms: number;
  /**
   * The stream closed within `closeWithinMs` without the client ending its side (for `partial`
   * and `pending`: the server answered and reset the stream instead of waiting for the body).
   */
  closedByServer: boolean;
}

/**
 * One request on `session`. Resolves when the stream closes, or `closeWithinMs` after the response
 * if it does not (then the client cancels it and `closedByServer` is false).
 */
export async function h2Call(session: ClientHttp2Session, headers: OutgoingHttpHeaders, plan: BodyPlan, closeWithinMs = 2000): Promise<H2Result> {
  const started = Date.now();
  const stream = session.request(headers, { endStream: plan.kind === 'none' });
  if (plan.kind === 'full') stream.end(plan.data);
  else if (plan.kind === 'partial') stream.write(plan.data);
  let response: IncomingHttpHeaders = {};
  let ms = -1;
  const chunks: Buffer[] = [];
  stream.on('response', (h) => {
    response = h;
    ms = Date.now() - started;
  });
  stream.on('data', (c: Buffer) => chunks.push(c));
  stream.on('error', () => undefined);
  const closed = new Promise<void>((resolve) => stream.once('close', () => resolve()));
  const ended = new Promise<void>((resolve) => {
    stream.once('end', () => resolve());
    stream.once('close', () => resolve());
  });
  await ended;
  const byServer = await Promise.race([closed.then(() => true), sleep(closeWithinMs).then(() => false)]);
  if (!byServer) {
    stream.close(h2.NGHTTP2_CANCEL);
    await closed;
  }
  if (ms < 0) ms = Date.now() - started;
  return {
    status: Number(response[':status'] ?? 0),
    headers: response,
    body: Buffer.concat(chunks).toString('utf8'),
    rstCode: byServer ? (stream.rstCode ?? -1) : -1,
    ms,
    closedByServer: byServer,
  };
}

/** Whether `socket` closes within `ms`. */
export async function closesWithin(socket: Socket, ms: number): Promise<boolean> {
  if (socket.destroyed) return true;
  return Promise.race([new Promise<boolean>((resolve) => socket.once('close', () => resolve(true))), sleep(ms).then(() => false)]);
}

/** A header value of `bytes` octets. */
export const padding = (bytes: number): string => 'a'.repeat(bytes);
