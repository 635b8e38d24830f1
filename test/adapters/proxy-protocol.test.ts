/**
 * PROXY protocol v2 in front of a TLS server (`proxyProtocolListener`, `parseProxyHeaderV2`): the header's source
 * address becomes the TLS socket's remote address, the TLS bytes that follow the header in the same segment reach
 * the handshake, and connections without a valid header are closed before any TLS byte is read.
 */
import { after, before, describe, it } from 'node:test';
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as netConnect, type AddressInfo, type Server as NetServer } from 'node:net';
import { connect as tlsConnect, createServer as createTlsServer, type Server as TlsServer } from 'node:tls';
import { parseProxyHeaderV2, proxyProtocolListener } from '@tether/core/node';
import type { DevPki } from '@tether/pki';
import { testPki } from '../helpers/pki.js';
import { withTimeout } from '../helpers/wait.js';

const SIGNATURE = Buffer.from('0d0a0d0a000d0a515549540a', 'hex');

/** A v2 header: `command` 1 = PROXY, 0 = LOCAL; family/transport byte; address block; optional TLV bytes. */
function header(o: { versionCommand?: number; familyTransport?: number; addresses?: Buffer; tlvs?: Buffer; declaredLength?: number }): Buffer {
  const body = Buffer.concat([o.addresses ?? Buffer.alloc(0), o.tlvs ?? Buffer.alloc(0)]);
  const fixed = Buffer.alloc(4);
  fixed[0] = o.versionCommand ?? 0x21;
  fixed[1] = o.familyTransport ?? 0x11;
  fixed.writeUInt16BE(o.declaredLength ?? body.length, 2);
  return Buffer.concat([SIGNATURE, fixed, body]);
}

function ipv4Addresses(src: number[], srcPort: number): Buffer {
  const b = Buffer.alloc(12);
  Buffer.from(src).copy(b, 0);
  Buffer.from([127, 0, 0, 1]).copy(b, 4);
  b.writeUInt16BE(srcPort, 8);
  b.writeUInt16BE(443, 10);
  return b;
}

function ipv6Addresses(src: Buffer, srcPort: number): Buffer {
  const b = Buffer.alloc(36);
  src.copy(b, 0);
  b.writeUInt16BE(srcPort, 32);
  b.writeUInt16BE(443, 34);
  return b;
}

const LOOPBACK6 = Buffer.from('00000000000000000000000000000001', 'hex');

describe('parseProxyHeaderV2', () => {
  it('reads IPv4 and IPv6 sources, skips TLVs, and gives LOCAL no source', () => {
    const v4 = header({ addresses: ipv4Addresses([192, 0, 2, 7], 56324), tlvs: Buffer.from([0x01, 0x00, 0x02, 0x68, 0x32]) });
    assert.deepEqual(parseProxyHeaderV2(Buffer.concat([v4, Buffer.from([0x16, 0x03, 0x01])])), {
      kind: 'complete',
      length: v4.length,
      source: { address: '192.0.2.7', port: 56324, family: 'IPv4' },
    });
    const v6 = header({ familyTransport: 0x21, addresses: ipv6Addresses(LOOPBACK6, 1234) });
    assert.deepEqual(parseProxyHeaderV2(v6), { kind: 'complete', length: v6.length, source: { address: '::1', port: 1234, family: 'IPv6' } });
    const local = header({ versionCommand: 0x20, familyTransport: 0x00 });
    assert.deepEqual(parseProxyHeaderV2(local), { kind: 'complete', length: 16 });
  });

  it('asks for more bytes until the header is complete', () => {
    const v4 = header({ addresses: ipv4Addresses([10, 1, 2, 3], 1) });
    for (let n = 0; n < v4.length; n++) assert.deepEqual(parseProxyHeaderV2(v4.subarray(0, n)), { kind: 'incomplete' }, `${n} bytes`);
  });

  it('refuses what is not a v2 PROXY header on a stream, with a reason', () => {
    const cases: Array<[Buffer, string]> = [
      [Buffer.from('PROXY TCP4 192.0.2.1 127.0.0.1 5000 443\r\n'), 'proxy_v1_not_accepted'],
      [Buffer.from([0x16, 0x03, 0x01, 0x02, 0x00]), 'no_proxy_header'],
      [header({ versionCommand: 0x11, addresses: ipv4Addresses([1, 2, 3, 4], 1) }), 'unsupported_version'],
      [header({ versionCommand: 0x22, addresses: ipv4Addresses([1, 2, 3, 4], 1) }), 'unsupported_command'],
      [header({ declaredLength: 5000 }), 'header_too_large'],
      [header({ familyTransport: 0x12, addresses: ipv4Addresses([1, 2, 3, 4], 1) }), 'not_a_stream'],
      [header({ familyTransport: 0x11, addresses: Buffer.alloc(4) }), 'malformed_addresses'],
    ];
    for (const [bytes, reason] of cases) assert.deepEqual(parseProxyHeaderV2(bytes), { kind: 'invalid', reason }, reason);
  });
});

describe('proxyProtocolListener in front of a TLS server', () => {
  let pki: DevPki;
  let tls: TlsServer;
  let front: NetServer;
  let port: number;
  const refused: string[] = [];
  before(async () => {
    pki = await testPki();
    tls = createTlsServer({ cert: pki.server.cert, key: pki.server.key }, (socket) => socket.end(`${socket.remoteAddress} ${socket.remotePort}`));
    front = proxyProtocolListener(tls, { headerTimeoutMs: 300, onRefused: (reason) => refused.push(reason) });
    front.listen(0, '127.0.0.1');
    await once(front, 'listening');
    port = (front.address() as AddressInfo).port;
  });
  after(() => front.close());

  /** Write `prefix` on a fresh TCP connection, then run TLS over it; resolves what the server answered. */
  async function viaHeader(prefix: Buffer): Promise<string> {
    const raw = netConnect({ host: '127.0.0.1', port });
    await once(raw, 'connect');
    raw.write(prefix);
    const secure = tlsConnect({ socket: raw, ca: pki.ca.cert, servername: 'localhost' });
    let answer = '';
    secure.setEncoding('utf8').on('data', (c: string) => (answer += c));
    await withTimeout(once(secure, 'end'), 5000, 'the TLS answer');
    secure.destroy();
    return answer;
  }

  it('the header source is the connection remote address, IPv4 and IPv6', async () => {
    assert.equal(await viaHeader(header({ addresses: ipv4Addresses([198, 51, 100, 9], 40000) })), '198.51.100.9 40000');
    assert.equal(await viaHeader(header({ familyTransport: 0x21, addresses: ipv6Addresses(LOOPBACK6, 40001) })), '::1 40001');
  });

  it('LOCAL (a balancer health check) keeps the real peer address', async () => {
    assert.match(await viaHeader(header({ versionCommand: 0x20, familyTransport: 0x00 })), /^127\.0\.0\.1 \d+$/);
  });

  it('a direct TLS client and a silent connection are closed, each counted with its reason', async () => {
    refused.length = 0;
    const direct = tlsConnect({ host: '127.0.0.1', port, ca: pki.ca.cert, servername: 'localhost' });
    const [error] = (await withTimeout(once(direct, 'error'), 5000, 'the direct handshake to fail')) as [NodeJS.ErrnoException];
    assert.match(String(error.code), /ECONNRESET|EPIPE/);
    const silent = netConnect({ host: '127.0.0.1', port });
    const started = Date.now();
    await withTimeout(once(silent, 'close'), 5000, 'the silent connection to be closed');
    assert.ok(Date.now() - started >= 250, 'after the header deadline');
    assert.deepEqual(refused.sort(), ['header_timeout', 'no_proxy_header']);
  });
});
