/**
 * HTTP/1.1 transport of the matrix load generator, written by hand over `tls.connect` (keep-alive,
 * or `Connection: close` for a new connection per request), with optional TLS 1.3 session
 * resumption (`session` ticket); and one plain (no TLS) request, the agent's side of the egress.
 *
 * Deadlines: a TLS handshake or a request without a complete answer after `REQUEST_TIMEOUT_MS` is
 * cancelled and counts as a failure (status 0).
 */
import { request as httpRequest } from 'node:http';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { REQUEST_TIMEOUT_MS, cancelAfter } from '../deadline.js';
import { tlsOptions, type ConnState, type LoadCredentials, type Target } from './connection.js';

export class H1Conn implements ConnState {
  readonly socket: TLSSocket;
  ekm: Buffer | undefined;
  readonly proofs = new Map<string, Promise<string>>();
  ticket: Buffer | undefined;
  #buf: Buffer = Buffer.alloc(0);
  #pending: ((status: number) => void) | undefined;
  #ready: Promise<void>;

  constructor(creds: LoadCredentials, target: Target, resume?: Buffer) {
    this.socket = tlsConnect(tlsOptions(creds, target, 'http/1.1', resume));
    this.socket.setNoDelay(true);
    this.socket.on('session', (t: Buffer) => (this.ticket = t));
    this.socket.on('data', (d: Buffer) => this.#onData(d));
    this.socket.on('error', () => this.#finish(0));
    this.socket.on('close', () => this.#finish(0));
    const ready = new Promise<void>((resolve, reject) => {
      this.socket.once('secureConnect', () => resolve());
      this.socket.once('error', reject);
    });
    this.#ready = cancelAfter(ready, REQUEST_TIMEOUT_MS, () => this.socket.destroy(new Error(`no TLS handshake within ${REQUEST_TIMEOUT_MS} ms`)));
  }

  ready(): Promise<void> {
    return this.#ready;
  }

  /** Wait for a session ticket (TLS 1.3 sends them after the handshake). */
  async waitTicket(timeoutMs = 2000): Promise<Buffer | undefined> {
    if (this.ticket !== undefined) return this.ticket;
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, timeoutMs);
      this.socket.once('session', () => {
        clearTimeout(t);
        resolve();
      });
    });
    return this.ticket;
  }

  /**
   * One GET; resolves the status (0 when the connection failed, or after `timeoutMs`, when
   * the connection is destroyed). One request in flight at a time.
   */
  get(target: Target, headers: Record<string, string>, close: boolean, timeoutMs = REQUEST_TIMEOUT_MS): Promise<number> {
    const lines = [`GET ${target.path} HTTP/1.1`, `host: ${target.host}:${target.port}`];
    for (const [k, v] of Object.entries(headers)) lines.push(`${k}: ${v}`);
    lines.push(close ? 'connection: close' : 'connection: keep-alive', '', '');
    const answered = new Promise<number>((resolve) => {
      this.#pending = resolve;
      this.socket.write(lines.join('\r\n'));
    });
    return cancelAfter(answered, timeoutMs, () => this.socket.destroy());
  }

  destroy(): void {
    this.socket.destroy();
  }

  #finish(status: number): void {
    const p = this.#pending;
    this.#pending = undefined;
    p?.(status);
  }

  #onData(d: Buffer): void {
    this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
    const end = this.#buf.indexOf('\r\n\r\n');
    if (end < 0) return;
    const head = this.#buf.subarray(0, end).toString('latin1');
    const status = Number(head.slice(9, 12));
    const cl = /\r\ncontent-length:\s*(\d+)/i.exec(head);
    let total: number;
    if (cl !== null) total = end + 4 + Number(cl[1]);
    else if (/\r\ntransfer-encoding:\s*chunked/i.test(head)) {
      const term = this.#buf.indexOf('\r\n0\r\n\r\n', end);
      if (term < 0) return;
      total = term + 7;
    } else total = end + 4;
    if (this.#buf.length < total) return;
    this.#buf = this.#buf.subarray(total);
    this.#finish(status);
  }
}

/** One GET on a new plain HTTP/1.1 connection (`Connection: close`); 0 on an error or after REQUEST_TIMEOUT_MS. */
export function plainGet(to: { host: string; port: number }, path: string, headers: Record<string, string>): Promise<number> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: to.host, port: to.port, path, agent: false, headers: { ...headers, connection: 'close' }, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      res.resume();
      res.on('end', () => resolve(res.statusCode ?? 0));
      res.on('error', () => resolve(0));
    });
    req.on('timeout', () => req.destroy(new Error(`no response within ${REQUEST_TIMEOUT_MS} ms`)));
    req.on('error', () => resolve(0));
    req.end();
  });
}
