/**
 * The soak's resource server (bench/soak.ts), a child process with IPC, started with --expose-gc so
 * that every sample is taken after a full GC. Built from the public entry points:
 * createSessionBoundVerifier + jwtAccessTokenValidator + sessionBoundHandler over node:http2 with
 * HTTP/1.1 allowed.
 *
 * Argument: a directory holding ca.pem, server.pem, server.key, jwks.json and config.json
 * ({cachePerConnection, cacheMax}). First message: {port}. Messages: {cmd:'sample'} -> RsSample,
 * {cmd:'exit'}. Exits when the IPC channel closes.
 */
import { readFileSync } from 'node:fs';
import { createSecureServer } from 'node:http2';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import type { TLSSocket } from 'node:tls';
import { getHeapSpaceStatistics } from 'node:v8';
import { MemoryReplayStore, createSessionBoundVerifier, jwtAccessTokenValidator, localJwks } from '@tether/core';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';
import { AUDIENCE, ISSUER } from '../test/helpers/issuer.js';

/** One sample of the resource server, after a full GC. Memory in bytes. */
export interface RsSample {
  rss: number;
  /** Anonymous resident memory (Linux `RssAnon`): the V8 heap and malloc, without mapped files. */
  rssAnon: number;
  heapUsed: number;
  heapTotal: number;
  /** Committed bytes of V8's new space (the two semi-spaces). */
  newSpace: number;
  external: number;
  arrayBuffers: number;
  cacheSize: number;
  cacheConnections: number;
  replayStoreSize: number;
  openConnections: number;
  connectionsAccepted: number;
  peakCacheSize: number;
  peakCacheRatio: number;
  requests: number;
  accepted: number;
  failures: Record<string, number>;
}

/** `RssAnon` from /proc/self/status in bytes (0 where there is no /proc). */
function rssAnon(): number {
  try {
    const m = /RssAnon:\s+(\d+) kB/.exec(readFileSync('/proc/self/status', 'utf8'));
    return m === null ? 0 : Number(m[1]) * 1024;
  } catch {
    return 0;
  }
}

const [dir] = process.argv.slice(2);
const send = process.send?.bind(process);
const gc = (globalThis as { gc?: () => void }).gc;
if (dir === undefined || send === undefined) throw new Error('usage: soak-rs.ts DIR (forked with IPC)');
if (gc === undefined) throw new Error('the soak resource server needs --expose-gc');
const read = (name: string) => readFileSync(join(dir, name), 'utf8');
const config = JSON.parse(read('config.json')) as { cachePerConnection: number; cacheMax: number };
const replayStore = new MemoryReplayStore();
const verifier = createSessionBoundVerifier({
  tokens: jwtAccessTokenValidator({ keys: localJwks(JSON.parse(read('jwks.json'))), issuer: ISSUER, audience: AUDIENCE }),
  replayStore,
  cache: { maxEntriesPerConnection: config.cachePerConnection, maxEntries: config.cacheMax },
});
let peakCacheSize = 0;
// Per-connection limit, observed from outside: entries per connection holding any never exceed it.
let peakCacheRatio = 0;
const body = Buffer.from('{"ok":true}');
const server = createSecureServer(
  { ...sessionBoundTlsOptions({ cert: read('server.pem'), key: read('server.key'), ca: read('ca.pem') }), allowHTTP1: true },
  sessionBoundHandler(verifier, (_req, res) => {
    peakCacheSize = Math.max(peakCacheSize, verifier.cache.size);
    if (verifier.cache.connections > 0) peakCacheRatio = Math.max(peakCacheRatio, verifier.cache.size / verifier.cache.connections);
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  }),
);
const open = new Set<TLSSocket>();
let connectionsAccepted = 0;
server.on('secureConnection', (socket: TLSSocket) => {
  connectionsAccepted++;
  open.add(socket);
  socket.once('close', () => open.delete(socket));
});
server.listen(0, '127.0.0.1', () => send({ port: (server.address() as AddressInfo).port }));

function sample(): RsSample {
  gc?.();
  const mem = process.memoryUsage();
  return {
    rss: mem.rss,
    rssAnon: rssAnon(),
    heapUsed: mem.heapUsed,
    heapTotal: mem.heapTotal,
    newSpace: getHeapSpaceStatistics().find((x) => x.space_name === 'new_space')?.physical_space_size ?? 0,
    external: mem.external,
    arrayBuffers: mem.arrayBuffers,
    cacheSize: verifier.cache.size,
    cacheConnections: verifier.cache.connections,
    replayStoreSize: replayStore.size,
    openConnections: open.size,
    connectionsAccepted,
    peakCacheSize,
    peakCacheRatio,
    requests: verifier.stats.requests,
    accepted: verifier.stats.accepted,
    failures: { ...verifier.stats.failures },
  };
}

process.on('message', (msg: { cmd: string }) => {
  if (msg.cmd === 'sample') send(sample());
  else if (msg.cmd === 'exit') {
    server.close();
    process.exit(0);
  }
});
process.on('disconnect', () => process.exit(0));
