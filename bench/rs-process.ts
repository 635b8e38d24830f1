/**
 * Benchmark resource server, built from the published entry points the way a user would build it:
 * createSessionBoundVerifier + jwtAccessTokenValidator + sessionBoundHandler over node:http2.
 * Runs as a child process (IPC): the parent sends {cmd:'reset'|'report'|'exit'}.
 */
import { createSecureServer } from 'node:http2';
import { readFileSync } from 'node:fs';
import type { AddressInfo } from 'node:net';
import { createSessionBoundVerifier, jwtAccessTokenValidator, localJwks } from '@tether/core';
import { sessionBoundHandler, sessionBoundTlsOptions } from '@tether/core/node';

const [dir] = process.argv.slice(2);
if (dir === undefined || process.send === undefined) throw new Error('usage: rs-process.ts DIR (forked with IPC)');
const read = (name: string) => readFileSync(`${dir}/${name}`, 'utf8');

const verifier = createSessionBoundVerifier({
  tokens: jwtAccessTokenValidator({ keys: localJwks(JSON.parse(read('jwks.json'))), issuer: 'https://as.bench', audience: 'https://rs.bench' }),
  // Accept bearer tokens too, so the same server measures the baseline; bound tokens are still held to their binding.
  minimumBinding: 'none',
});
const body = Buffer.from('{"ok":true}');
const server = createSecureServer(
  { ...sessionBoundTlsOptions({ cert: read('server.pem'), key: read('server.key'), ca: read('ca.pem') }), allowHTTP1: true },
  sessionBoundHandler(verifier, (_req, res) => {
    res.writeHead(200, { 'content-type': 'application/json', 'content-length': body.length });
    res.end(body);
  }),
);
let cpu = process.cpuUsage();
server.listen(0, '127.0.0.1', () => process.send?.({ port: (server.address() as AddressInfo).port }));
process.on('message', (msg: { cmd: string }) => {
  if (msg.cmd === 'reset') {
    cpu = process.cpuUsage();
    Object.assign(verifier.stats, { requests: 0, accepted: 0, proofVerifications: 0, cacheHits: 0, failures: {} });
    process.send?.({ ok: true });
  } else if (msg.cmd === 'report') {
    const used = process.cpuUsage(cpu);
    process.send?.({ cpuMicros: used.user + used.system, stats: verifier.stats, cacheSize: verifier.cache.size });
  } else if (msg.cmd === 'exit') {
    server.close();
    process.exit(0);
  }
});
