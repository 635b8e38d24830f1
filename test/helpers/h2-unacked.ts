/**
 * An HTTP/2 client that never acknowledges the server's SETTINGS: node:http2 drives the session
 * over a real TLS (or h2c TCP) connection through a pass-through stream that drops every
 * SETTINGS frame with the ACK flag on its way out. Node's server applies its `maxHeaderListSize`
 * setting only once the client has acknowledged it, so this is the client that sees what a
 * hostile one would: without an explicit check, no header-list limit at all.
 */
import { once } from 'node:events';
import { connect as http2Connect, type ClientHttp2Session, type IncomingHttpHeaders, type OutgoingHttpHeaders } from 'node:http2';
import { connect as netConnect, type Socket } from 'node:net';
import { OutgoingFrameFilter } from './h2-frames.js';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';

const TYPE_SETTINGS = 0x4;
const FLAG_ACK = 0x1;

/** Withholds every SETTINGS ACK frame the client sends. */
class SettingsAckDropper extends OutgoingFrameFilter {
  /** SETTINGS ACK frames withheld from the server. */
  dropped = 0;

  protected rewriteFrame(frame: Buffer): Buffer | undefined {
    if (frame[3] !== TYPE_SETTINGS || ((frame[4] as number) & FLAG_ACK) === 0) return frame;
    this.dropped++;
    return undefined;
  }
}

export interface UnackedResult {
  /** `:status`, or 0 when the stream was reset before a response. */
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
  /** The stream's close code (0 = NO_ERROR; 11 = ENHANCE_YOUR_CALM). */
  rstCode: number;
}

export interface UnackedConnection {
  session: ClientHttp2Session;
  socket: Socket;
  /** SETTINGS ACK frames withheld so far (at least 1 once the server's SETTINGS arrived). */
  withheld(): number;
  /** One request (with `body`, if given); resolves when its stream closes, whether answered or reset. */
  request(headers: OutgoingHttpHeaders, body?: string): Promise<UnackedResult>;
  close(): Promise<void>;
}

export interface UnackedOptions {
  /** TLS client credentials and trust (https: URLs). */
  cert?: string;
  key?: string;
  ca?: string;
}

/** Connect to `url` (`https:` over TLS with ALPN h2, `http:` as h2c). */
export async function connectWithoutSettingsAck(url: string, options: UnackedOptions = {}): Promise<UnackedConnection> {
  const target = new URL(url);
  let socket: Socket;
  if (target.protocol === 'https:') {
    const tls: TLSSocket = tlsConnect({ host: target.hostname, port: Number(target.port), cert: options.cert, key: options.key, ca: options.ca, ALPNProtocols: ['h2'] });
    await once(tls, 'secureConnect');
    socket = tls;
  } else {
    socket = netConnect({ host: target.hostname, port: Number(target.port) });
    await once(socket, 'connect');
  }
  const dropper = new SettingsAckDropper(socket);
  // Header blocks over node's default 64000-byte sending limit are part of the point.
  const session = http2Connect(target.origin, { createConnection: () => dropper, maxSendHeaderBlockLength: 1 << 20 });
  session.on('error', () => undefined);

  async function request(headers: OutgoingHttpHeaders, body?: string): Promise<UnackedResult> {
    const stream = session.request({ ':method': 'GET', ':path': '/', ...headers }, { endStream: body === undefined });
    if (body !== undefined) stream.end(body);
    let response: IncomingHttpHeaders = {};
    const chunks: Buffer[] = [];
    stream.on('response', (h) => (response = h));
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined);
    await new Promise((resolve) => stream.once('close', resolve));
    return { status: Number(response[':status'] ?? 0), headers: response, body: Buffer.concat(chunks).toString('utf8'), rstCode: stream.rstCode ?? -1 };
  }

  async function close(): Promise<void> {
    if (!session.destroyed) session.destroy();
    if (!socket.destroyed) {
      const closed = once(socket, 'close');
      socket.destroy();
      await closed;
    }
  }

  return { session, socket, withheld: () => dropper.dropped, request, close };
}
