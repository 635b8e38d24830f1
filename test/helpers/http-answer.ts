/** One node:http(s) request read to its end, with a deadline: the tests' way to see status, headers and body. */
import type { ClientRequest, IncomingHttpHeaders, IncomingMessage } from 'node:http';
import { withTimeout } from './wait.js';

export interface HttpAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

/**
 * `start` creates the request with the response callback it is given; this ends it and resolves the status, headers
 * and whole body (UTF-8). After `timeoutMs` the request is destroyed and the promise rejects naming `what`.
 */
export function httpAnswer(what: string, start: (onResponse: (res: IncomingMessage) => void) => ClientRequest, timeoutMs = 10_000): Promise<HttpAnswer> {
  let req: ClientRequest | undefined;
  const answered = new Promise<HttpAnswer>((resolve, reject) => {
    req = start((res) => {
      let body = '';
      res.setEncoding('utf8').on('data', (c: string) => (body += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, headers: res.headers, body }));
      res.on('error', reject);
    });
    req.on('error', reject);
    req.end();
  });
  return withTimeout(answered, timeoutMs, `${what}: no complete response`, () => req?.destroy());
}
