import { once } from 'node:events';
import { connect as http2Connect, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { deriveSessionExporter, parseWwwAuthenticate } from '@tether/core';

const TIMEOUT_MS = 10_000;

/** Reject with "`what` timed out" unless `promise` settles within `ms`. */
export function withTimeout<T>(promise: Promise<T>, what: string, ms = TIMEOUT_MS): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} timed out`)), ms);
  });
  return Promise.race([promise, timeout]).finally(() => clearTimeout(timer));
}

/** Status and Bearer challenge of a hand-made request. */
export interface RawAnswer {
  status: number;
  error: string | null;
  description: string | null;
}

/**
 * A bare HTTP/2 connection over our own TLS socket, for hand-made requests: the demos' attacks
 * sign "captured" proofs with this connection's exporter or replay them on another.
 */
export class RawConnection {
  private constructor(
    readonly socket: TLSSocket,
    readonly session: ClientHttp2Session,
  ) {}

  static async open(url: URL, cert: Buffer, key: Buffer, ca: Buffer): Promise<RawConnection> {
    const socket = tlsConnect({ host: url.hostname.replace(/^\[|\]$/g, ''), port: Number(url.port), cert, key, ca, ALPNProtocols: ['h2'], minVersion: 'TLSv1.3' });
    socket.on('error', () => undefined);
    await withTimeout(
      Promise.race([once(socket, 'secureConnect'), once(socket, 'error').then(([e]) => Promise.reject(e as Error))]),
      'TLS handshake',
    );
    const session = http2Connect(url.origin, { createConnection: () => socket });
    session.on('error', () => undefined);
    return new RawConnection(socket, session);
  }

  get ekm(): Buffer {
    return deriveSessionExporter(this.socket);
  }

  send(url: URL, token: string, proof: string): Promise<RawAnswer> {
    const stream = this.session.request({ ':method': 'GET', ':path': url.pathname, authorization: `Bearer ${token}`, 'session-binding-proof': proof });
    stream.resume();
    return withTimeout(
      new Promise<RawAnswer>((resolve, reject) => {
        stream.once('response', (headers) => {
          const challenge = parseWwwAuthenticate(headers['www-authenticate'] as string | undefined).find((c) => c.scheme === 'bearer');
          resolve({ status: Number(headers[':status']), error: challenge?.params.error ?? null, description: challenge?.params.error_description ?? null });
        });
        stream.once('error', reject);
        stream.once('close', () => reject(new Error('stream closed without a response')));
      }),
      'request',
    );
  }

  close(): void {
    this.session.close();
    this.socket.end();
  }
}
