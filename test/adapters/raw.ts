/**
 * Raw mTLS connections for attack tests: the test holds the TLS socket, derives its exporter,
 * signs whatever proof it wants and sends header lists the session-bound client would never
 * produce (duplicate Authorization or Session-Binding-Proof fields).
 *
 * HTTP/1.1: requests are written on the TLS socket by hand. HTTP/2: `node:http2` drives the
 * socket; because it refuses to send two `authorization` fields (a single-value header), the
 * session runs over a pass-through stream that can append literal HPACK fields to the next
 * HEADERS frame it writes.
 */
import { once } from 'node:events';
import { createPrivateKey, X509Certificate } from 'node:crypto';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders } from 'node:http2';
import { FRAME_HEADER, OutgoingFrameFilter } from '../helpers/h2-frames.js';
import { connect as tlsConnect, type SecureVersion, type TLSSocket } from 'node:tls';
import { createSessionBindingProof, deriveSessionExporter } from '@tether/core';

export interface Identity {
  cert: string;
  key: string;
}

export interface RawResponse {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: string;
}

export interface RawRequest {
  method?: string;
  path?: string;
  /** Field lines in order; a name may repeat. */
  headers: Array<[string, string]>;
  /**
   * Leave the request body open and unsent (default false: the request ends after its headers).
   * With a `content-length` header this announces a body the server must not wait for.
   */
  bodyPending?: boolean;
  /** HTTP/2 only: aborting resets the stream (RST_STREAM CANCEL). */
  signal?: AbortSignal;
}

export interface ProofClaims {
  iat?: number;
  jti?: string;
  htm?: string;
  htu?: string;
}

export interface RawConnection {
  socket: TLSSocket;
  /** This connection's exporter value (derived by the client side). */
  ekm: Buffer;
  /** Sign a Session-Binding Proof for `token` over this connection with the connection's key. */
  proof(token: string, claims?: ProofClaims): Promise<string>;
  request(request: RawRequest): Promise<RawResponse>;
  /** The latest TLS session (ticket) the server sent, for resumption. */
  session(): Buffer | undefined;
  close(): Promise<void>;
}

export interface RawConnectionOptions {
  protocol: 'h2' | 'http/1.1';
  ca: string;
  maxVersion?: SecureVersion;
  /** Resume this TLS session. */
  session?: Buffer;
  /** Send the identity's certificate in the handshake (default true). `proof()` signs with its key either way. */
  presentCertificate?: boolean;
}

export async function openRawConnection(url: string, identity: Identity, options: RawConnectionOptions): Promise<RawConnection> {
  const target = new URL(url);
  const socket = tlsConnect({
    host: target.hostname,
    port: Number(target.port),
    ...(options.presentCertificate === false ? {} : { cert: identity.cert, key: identity.key }),
    ca: options.ca,
    ALPNProtocols: [options.protocol],
    minVersion: 'TLSv1.2',
    maxVersion: options.maxVersion ?? 'TLSv1.3',
    ...(options.session === undefined ? {} : { session: options.session }),
  });
  let ticket: Buffer | undefined;
  socket.on('session', (session: Buffer) => (ticket = session));
  await once(socket, 'secureConnect');
  const ekm = deriveSessionExporter(socket, ['TLSv1.3', 'TLSv1.2']);
  const privateKey = createPrivateKey(identity.key);
  const certificate = new X509Certificate(identity.cert);
  const proof = (token: string, claims: ProofClaims = {}) => createSessionBindingProof({ privateKey, certificate, accessToken: token, ekm, ...claims });
  const transport = options.protocol === 'h2' ? h2Transport(target, socket) : h1Transport(target, socket);
  return { socket, ekm, proof, session: () => ticket, ...transport };
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 by hand

function h1Transport(target: URL, socket: TLSSocket): Pick<RawConnection, 'request' | 'close'> {
  let buffered = Buffer.alloc(0);
  let waiter: (() => void) | undefined;
  let ended = false;
  socket.on('data', (chunk: Buffer) => {
    buffered = Buffer.concat([buffered, chunk]);
    waiter?.();
  });
  socket.on('close', () => {
    ended = true;
    waiter?.();
  });
  socket.on('error', () => undefined);

  async function more(): Promise<void> {
    if (ended) throw new Error('connection closed before the response was complete');
    await new Promise<void>((resolve) => (waiter = resolve));
    waiter = undefined;
  }

  async function take(n: number): Promise<Buffer> {
    while (buffered.length < n) await more();
    const out = buffered.subarray(0, n);
    buffered = buffered.subarray(n);
    return out;
  }

  async function line(): Promise<string> {
    let i: number;
    while ((i = buffered.indexOf('\r\n')) < 0) await more();
    const out = buffered.subarray(0, i).toString('latin1');
    buffered = buffered.subarray(i + 2);
    return out;
  }

  async function request(req: RawRequest): Promise<RawResponse> {
    const lines = [`${req.method ?? 'GET'} ${req.path ?? '/'} HTTP/1.1`, `host: ${target.host}`, ...req.headers.map(([k, v]) => `${k}: ${v}`)];
    socket.write(`${lines.join('\r\n')}\r\n\r\n`);
    const statusLine = await line();
    const status = Number(/^HTTP\/1\.1 (\d{3})/.exec(statusLine)?.[1] ?? 0);
    const headers: Record<string, string | string[] | undefined> = {};
    for (let l = await line(); l !== ''; l = await line()) {
      const colon = l.indexOf(':');
      const name = l.slice(0, colon).trim().toLowerCase();
      const value = l.slice(colon + 1).trim();
      const existing = headers[name];
      headers[name] = existing === undefined ? value : [...(Array.isArray(existing) ? existing : [existing]), value];
    }
    let body: Buffer;
    if (headers['transfer-encoding'] === 'chunked') {
      const parts: Buffer[] = [];
      for (;;) {
        const size = parseInt(await line(), 16);
        if (size === 0) {
          while ((await line()) !== '');
          break;
        }
        parts.push(await take(size));
        await take(2);
      }
      body = Buffer.concat(parts);
    } else {
      body = await take(Number(headers['content-length'] ?? 0));
    }
    return { status, headers, body: body.toString('utf8') };
  }

  async function close(): Promise<void> {
    if (socket.destroyed) return;
    const closed = once(socket, 'close');
    socket.end();
    socket.destroySoon();
    await closed;
  }

  return { request, close };
}

// ---------------------------------------------------------------------------------------------
// HTTP/2 through node:http2, with HPACK splicing for duplicate single-value fields

/** HPACK integer with an N-bit prefix (RFC 7541 section 5.1). */
function hpackInteger(value: number, prefixBits: number, flags: number): number[] {
  const max = (1 << prefixBits) - 1;
  if (value < max) return [flags | value];
  const out = [flags | max];
  let rest = value - max;
  while (rest >= 128) {
    out.push((rest & 0x7f) | 0x80);
    rest >>= 7;
  }
  out.push(rest);
  return out;
}

/** "Literal Header Field without Indexing -- New Name", no Huffman (RFC 7541 section 6.2.2). */
function hpackLiteral(name: string, value: string): Buffer {
  const n = Buffer.from(name, 'latin1');
  const v = Buffer.from(value, 'latin1');
  return Buffer.concat([Buffer.from([0x00, ...hpackInteger(n.length, 7, 0)]), n, Buffer.from(hpackInteger(v.length, 7, 0)), v]);
}

const TYPE_HEADERS = 0x1;
const FLAG_END_HEADERS = 0x4;
const FLAG_PADDED = 0x8;

/**
 * Appends literal header fields, when asked, to the client's next complete, unpadded HEADERS
 * frame (the literals reference no table state, so the rest of the HPACK block is unaffected).
 */
class SplicingStream extends OutgoingFrameFilter {
  #splice: Buffer | undefined;

  spliceIntoNextHeaders(fields: Array<[string, string]>): void {
    this.#splice = Buffer.concat(fields.map(([k, v]) => hpackLiteral(k, v)));
  }

  protected rewriteFrame(frame: Buffer): Buffer {
    const flags = frame[4] as number;
    if (this.#splice === undefined || frame[3] !== TYPE_HEADERS || (flags & FLAG_END_HEADERS) === 0 || (flags & FLAG_PADDED) !== 0) return frame;
    const spliced = Buffer.concat([frame, this.#splice]);
    spliced.writeUIntBE(frame.length - FRAME_HEADER + this.#splice.length, 0, 3);
    this.#splice = undefined;
    return spliced;
  }
}

/** Node's HTTP/2 client refuses to repeat these fields; they are spliced in raw instead. */
const SINGLE_VALUE = new Set(['authorization']);

function h2Transport(target: URL, socket: TLSSocket): Pick<RawConnection, 'request' | 'close'> {
  const stream = new SplicingStream(socket);
  const session: ClientHttp2Session = http2Connect(target.origin, { createConnection: () => stream });
  session.on('error', () => undefined);

  async function request(req: RawRequest): Promise<RawResponse> {
    const headers: Record<string, string | string[]> = { ':method': req.method ?? 'GET', ':path': req.path ?? '/' };
    const spliced: Array<[string, string]> = [];
    for (const [rawName, value] of req.headers) {
      const name = rawName.toLowerCase();
      const existing = headers[name];
      if (existing === undefined) headers[name] = value;
      else if (SINGLE_VALUE.has(name)) spliced.push([name, value]);
      else headers[name] = [...(Array.isArray(existing) ? existing : [existing]), value];
    }
    if (spliced.length > 0) stream.spliceIntoNextHeaders(spliced);
    const h2stream = session.request(headers, { endStream: req.bodyPending !== true, ...(req.signal === undefined ? {} : { signal: req.signal }) });
    const response = await new Promise<IncomingHttpHeaders>((resolve, reject) => {
      // A stream closed without an error (session destroyed, RST NO_ERROR) never sends 'error',
      // and a stream opened on a dying session may send nothing at all: watch the session too.
      const sessionClosed = () => reject(new Error('connection closed before a response'));
      session.once('close', sessionClosed);
      h2stream.once('response', (headers: IncomingHttpHeaders) => {
        session.off('close', sessionClosed);
        resolve(headers);
      });
      h2stream.once('error', reject);
      h2stream.once('close', () => reject(new Error(`stream closed before a response (code ${h2stream.rstCode ?? 'none'})`)));
    });
    const chunks: Buffer[] = [];
    h2stream.on('data', (c: Buffer) => chunks.push(c));
    await once(h2stream, 'end');
    // A body announced but never sent: cancel our half so the session can close.
    if (req.bodyPending === true) h2stream.close();
    const out: Record<string, string | string[] | undefined> = {};
    for (const [k, v] of Object.entries(response)) if (!k.startsWith(':')) out[k] = v;
    return { status: Number(response[':status']), headers: out, body: Buffer.concat(chunks).toString('utf8') };
  }

  async function close(): Promise<void> {
    if (!session.destroyed) {
      // A graceful close waits for open streams and never finishes if the socket died under the
      // session (e.g. the server's TLS alert): then destroy it.
      if (socket.destroyed) session.destroy();
      else
        await new Promise<void>((resolve) => {
          session.close(() => resolve());
          socket.once('close', () => {
            session.destroy();
            resolve();
          });
        });
    }
    if (!socket.destroyed) {
      const closed = once(socket, 'close');
      socket.destroy();
      await closed;
    }
  }

  return { request, close };
}
