/**
 * A stand-in identity provider for external-issuer tests: a real HTTPS server on 127.0.0.1:0
 * (its own development CA, written to a file for `caFiles`) answering JSON documents by path
 * (discovery documents, JWK Sets), and signing keys to mint its tokens with jose.
 */
import { createServer, type Server } from 'node:https';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { generateKeyPairSync, randomUUID, type KeyObject } from 'node:crypto';
import { SignJWT, exportJWK, type JWK, type JWTPayload } from 'jose';
import { createDevPki } from '@tether/pki';

export interface IdpKey {
  kid: string;
  alg: string;
  privateKey: KeyObject;
  jwk: JWK;
}

export async function idpKey(kid: string, alg: 'ES256' | 'ES384' | 'RS256' = 'ES256'): Promise<IdpKey> {
  const { privateKey, publicKey } =
    alg === 'RS256' ? generateKeyPairSync('rsa', { modulusLength: 2048 }) : generateKeyPairSync('ec', { namedCurve: alg === 'ES256' ? 'P-256' : 'P-384' });
  return { kid, alg, privateKey, jwk: { ...(await exportJWK(publicKey)), kid, alg, use: 'sig' } };
}

export interface MintOptions {
  key: IdpKey;
  typ?: string | undefined;
  /** Header `kid` (default the key's). */
  kid?: string;
}

/** A JWT over exactly `claims`, signed by `key` (header alg, kid, typ). */
export function mintIdpToken(claims: JWTPayload & Record<string, unknown>, options: MintOptions): Promise<string> {
  const header: Record<string, unknown> = { alg: options.key.alg, kid: options.kid ?? options.key.kid };
  if (options.typ !== undefined) header.typ = options.typ;
  return new SignJWT({ jti: randomUUID(), ...claims }).setProtectedHeader(header as { alg: string }).sign(options.key.privateKey);
}

export interface TestIdp {
  /** https://127.0.0.1:PORT */
  url: string;
  /** PEM file of the CA that issued the server's certificate. */
  caFile: string;
  /** JSON documents served by path. */
  documents: Map<string, unknown>;
  /** GET requests per path. */
  hits: Map<string, number>;
  close(): Promise<void>;
}

export async function startTestIdp(dir: string): Promise<TestIdp> {
  const pki = await createDevPki({ clients: [] });
  const caFile = join(dir, 'idp-ca.pem');
  writeFileSync(caFile, pki.ca.cert);
  const documents = new Map<string, unknown>();
  const hits = new Map<string, number>();
  const server: Server = createServer({ cert: pki.server.cert, key: pki.server.key }, (req, res) => {
    const path = new URL(req.url ?? '/', 'https://idp').pathname;
    hits.set(path, (hits.get(path) ?? 0) + 1);
    const doc = documents.get(path);
    req.resume();
    if (req.method !== 'GET' || doc === undefined) {
      res.writeHead(404).end();
      return;
    }
    res.writeHead(200, { 'content-type': 'application/json' }).end(JSON.stringify(doc));
  });
  server.headersTimeout = 5000;
  server.requestTimeout = 5000;
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as { port: number };
  return {
    url: `https://127.0.0.1:${port}`,
    caFile,
    documents,
    hits,
    async close() {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A port that was just listened on and closed: connections to it are refused. */
export async function closedPort(): Promise<number> {
  const { createServer: createTcp } = await import('node:net');
  const s = createTcp();
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  const { port } = s.address() as { port: number };
  await new Promise<void>((resolve) => s.close(() => resolve()));
  return port;
}

export interface SilentServer {
  port: number;
  /** Connections accepted so far. */
  connections(): number;
  close(): Promise<void>;
}

/** A TCP server that accepts connections and never answers (a hung IdP). */
export async function silentServer(): Promise<SilentServer> {
  const { createServer: createTcp } = await import('node:net');
  const sockets = new Set<import('node:net').Socket>();
  let count = 0;
  const s = createTcp((socket) => {
    count++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  s.listen(0, '127.0.0.1');
  await once(s, 'listening');
  return {
    port: (s.address() as { port: number }).port,
    connections: () => count,
    async close() {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => s.close(() => resolve()));
    },
  };
}
