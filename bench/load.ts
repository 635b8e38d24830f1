/**
 * Load generator for the benchmark matrix (bench/matrix.ts). A small raw client so every mode uses
 * the same transport code and only the credentials differ:
 *
 * - HTTP/2: `tls.connect` + `http2.connect({ createConnection })`, so the client knows the TLS
 *   socket (for the exporter) under every stream, as `SessionBoundClient` does.
 * - HTTP/1.1: written by hand over `tls.connect` (keep-alive, or `Connection: close` for a new
 *   connection per request), with optional TLS 1.3 session resumption (`session` ticket).
 *
 * Credentials per mode, signed with the library's public functions:
 * - `bearer`: `Authorization: Bearer` over mTLS, token without `cnf` (the reference).
 * - `certificate`: RFC 8705 certificate-bound token (`cnf.x5t#S256`), Bearer, no proof.
 * - `session`: session-bound token; one Session-Binding-Proof per (token, connection), cached on
 *   the connection exactly as `SessionBoundClient` caches it (createSessionBindingProof +
 *   deriveSessionExporter).
 * - `session-per-request`: session-bound token with `jti`/`htm`/`htu` in every proof
 *   (`perRequestClaims` of `SessionBoundClient`): one signature per request.
 * - `dpop`: `Authorization: DPoP` with a fresh createDpopProof per request (as `DpopClient`).
 * - `dpop-jose`: the same DPoP requests, to the RS's `/jose/` paths, where they are verified by the
 *   jose-only reference (bench/jose-dpop.ts) instead of the library.
 *
 * `signatures` counts proofs signed by this process; it is the client-side figure of the matrix.
 *
 * Deadlines: a TLS handshake or a request without a complete answer after `REQUEST_TIMEOUT_MS` is
 * cancelled and counts as a failure (status 0); every request in flight is registered in the run's
 * `Outstanding`, which bench/matrix.ts names when a whole cell misses its deadline.
 */
import { randomUUID, type KeyObject, type X509Certificate } from 'node:crypto';
import { request as httpRequest } from 'node:http';
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { connect as tlsConnect, type TLSSocket } from 'node:tls';
import { createSessionBindingProof, deriveSessionExporter, PROOF_HEADER } from '@tether/core';
import { createDpopProof, type DpopPublicJwk } from '@tether/core/dpop';
import { Outstanding, REQUEST_TIMEOUT_MS, cancelAfter } from './deadline.js';

export const MODES = ['bearer', 'certificate', 'session', 'session-per-request', 'dpop', 'dpop-jose'] as const;
export type Mode = (typeof MODES)[number];

export interface LoadCredentials {
  /** Client certificate and key (PEM) for mTLS, and the same as objects for signing. */
  certPem: string;
  keyPem: string;
  caPem: string;
  privateKey: KeyObject;
  certificate: X509Certificate;
  dpopKey: KeyObject;
  dpopJwk: DpopPublicJwk;
}

export interface Target {
  host: string;
  port: number;
  path: string;
}

/** Raw measurements of one timed cell. */
export interface CellMeasurement {
  requests: number;
  failures: number;
  /** Timed (active) seconds. */
  seconds: number;
  clientCpuMicros: number;
  signatures: number;
  connectionsOpened: number;
  p50Ms: number;
  p99Ms: number;
  /** CPU of a sidecar in the path during the timed window (egress-churn), µs. */
  sidecarCpuMicros?: number;
}

const PROOF = PROOF_HEADER.toLowerCase();

/** Per-connection state: exporter and the (token -> proof) cache of the `session` mode. */
interface ConnState {
  socket: TLSSocket;
  ekm: Buffer | undefined;
  proofs: Map<string, Promise<string>>;
}

/** Builds the credential headers of one request and counts signatures. */
export class Signer {
  signatures = 0;
  constructor(
    private readonly creds: LoadCredentials,
    private readonly mode: Mode,
    private readonly htu: string,
  ) {}

  /**
   * Sign the session proofs of `tokens` on `conn` now, before a timed window: the RS then receives
   * the same bytes as in a signed-as-you-go cell, at the pace of a client that does not sign.
   */
  async presign(conn: ConnState, tokens: readonly string[]): Promise<void> {
    if (this.mode === 'session') for (const token of tokens) await this.headers(conn, token, 'GET');
  }

  async headers(conn: ConnState, token: string, method: string): Promise<Record<string, string>> {
    switch (this.mode) {
      case 'bearer':
      case 'certificate':
        return { authorization: `Bearer ${token}` };
      case 'session': {
        let proof = conn.proofs.get(token);
        if (proof === undefined) {
          this.signatures++;
          conn.ekm ??= deriveSessionExporter(conn.socket);
          proof = createSessionBindingProof({ privateKey: this.creds.privateKey, certificate: this.creds.certificate, accessToken: token, ekm: conn.ekm });
          conn.proofs.set(token, proof);
        }
        return { authorization: `Bearer ${token}`, [PROOF]: await proof };
      }
      case 'session-per-request': {
        this.signatures++;
        conn.ekm ??= deriveSessionExporter(conn.socket);
        const proof = await createSessionBindingProof({
          privateKey: this.creds.privateKey,
          certificate: this.creds.certificate,
          accessToken: token,
          ekm: conn.ekm,
          jti: randomUUID(),
          htm: method,
          htu: this.htu,
        });
        return { authorization: `Bearer ${token}`, [PROOF]: proof };
      }
      case 'dpop':
      case 'dpop-jose': {
        this.signatures++;
        const proof = await createDpopProof({ privateKey: this.creds.dpopKey, publicJwk: this.creds.dpopJwk, htm: method, htu: this.htu, accessToken: token });
        return { authorization: `DPoP ${token}`, dpop: proof };
      }
    }
  }
}

function tlsOptions(creds: LoadCredentials, target: Target, alpn: string, session: Buffer | undefined) {
  return {
    host: target.host,
    port: target.port,
    ca: creds.caPem,
    cert: creds.certPem,
    key: creds.keyPem,
    minVersion: 'TLSv1.3' as const,
    maxVersion: 'TLSv1.3' as const,
    ALPNProtocols: [alpn],
    // Requests are written in one go; without this, Nagle + delayed ACK can stall a request whose
    // headers span two segments (large proofs) by ~40 ms on loopback.
    noDelay: true,
    ...(session === undefined ? {} : { session }),
  };
}

// ---------------------------------------------------------------------------------------------
// HTTP/2

export interface H2Conn extends ConnState {
  session: ClientHttp2Session;
  /** Latest TLS session ticket received on this connection. */
  ticket: Buffer | undefined;
  closed: Promise<void>;
}

export function openH2(creds: LoadCredentials, target: Target, resume?: Buffer): Promise<H2Conn> {
  const socket = tlsConnect(tlsOptions(creds, target, 'h2', resume));
  socket.setNoDelay(true);
  const session = http2Connect(`https://${target.host}:${target.port}`, { createConnection: () => socket, ...(process.env.TETHER_BENCH_HPACK === undefined ? {} : { maxDeflateDynamicTableSize: Number(process.env.TETHER_BENCH_HPACK) }) });
  const conn: H2Conn = {
    socket,
    session,
    ekm: undefined,
    proofs: new Map(),
    ticket: undefined,
    closed: new Promise((resolve) => session.once('close', () => resolve())),
  };
  socket.on('session', (t: Buffer) => (conn.ticket = t));
  session.on('error', () => undefined);
  const handshake = new Promise<H2Conn>((resolve, reject) => {
    socket.once('secureConnect', () => resolve(conn));
    socket.once('error', reject);
  });
  return cancelAfter(handshake, REQUEST_TIMEOUT_MS, () => socket.destroy(new Error(`no TLS handshake within ${REQUEST_TIMEOUT_MS} ms`)));
}

/** Close gracefully; a session that has not closed after REQUEST_TIMEOUT_MS is destroyed. */
export function closeH2(conn: H2Conn): Promise<void> {
  if (!conn.session.closed && !conn.session.destroyed) conn.session.close();
  return cancelAfter(conn.closed, REQUEST_TIMEOUT_MS, () => conn.session.destroy());
}

/** One GET on an HTTP/2 connection; resolves the status (0 on a stream error or after `timeoutMs`, when the stream is cancelled). */
export function h2Get(conn: H2Conn, target: Target, headers: Record<string, string>, timeoutMs = REQUEST_TIMEOUT_MS): Promise<number> {
  if (conn.session.closed || conn.session.destroyed) return Promise.resolve(0);
  const stream = conn.session.request(
    { ...headers, [h2.HTTP2_HEADER_METHOD]: 'GET', [h2.HTTP2_HEADER_PATH]: target.path, [h2.HTTP2_HEADER_AUTHORITY]: `${target.host}:${target.port}` },
    { endStream: true },
  );
  let status = 0;
  let timedOut = false;
  const done = new Promise<number>((resolve) => {
    stream.on('response', (h) => (status = Number(h[h2.HTTP2_HEADER_STATUS])));
    stream.on('data', () => undefined);
    stream.on('error', () => undefined);
    stream.on('close', () => resolve(timedOut ? 0 : status));
  });
  return cancelAfter(done, timeoutMs, () => {
    timedOut = true;
    stream.close(h2.NGHTTP2_CANCEL);
  });
}

// ---------------------------------------------------------------------------------------------
// HTTP/1.1 by hand

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

// ---------------------------------------------------------------------------------------------
// Measurement helpers

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

class Recorder {
  constructor(private readonly outstanding: Outstanding) {}
  latencies: number[] = [];
  failures = 0;
  connections = 0;
  #cpu = process.cpuUsage();
  #t0 = process.hrtime.bigint();
  #activeNs = 0n;

  start(): void {
    this.#cpu = process.cpuUsage();
    this.#t0 = process.hrtime.bigint();
  }
  /** Close an active window (agent mix: windows exclude idle gaps). */
  pause(): void {
    this.#activeNs += process.hrtime.bigint() - this.#t0;
  }
  resume(): void {
    this.#t0 = process.hrtime.bigint();
  }
  /** Time one request; `what` names it while it is outstanding. */
  async time(what: string, fn: () => Promise<number>): Promise<void> {
    const id = this.outstanding.begin(what);
    const t = process.hrtime.bigint();
    let status: number;
    try {
      status = await fn();
    } finally {
      this.outstanding.end(id);
    }
    this.latencies.push(Number(process.hrtime.bigint() - t) / 1e6);
    if (status !== 200) this.failures++;
  }
  finish(signer: Signer): CellMeasurement {
    this.pause();
    const cpu = process.cpuUsage(this.#cpu);
    const sorted = [...this.latencies].sort((a, b) => a - b);
    return {
      requests: this.latencies.length,
      failures: this.failures,
      seconds: Number(this.#activeNs) / 1e9,
      clientCpuMicros: cpu.user + cpu.system,
      signatures: signer.signatures,
      connectionsOpened: this.connections,
      p50Ms: percentile(sorted, 0.5),
      p99Ms: percentile(sorted, 0.99),
    };
  }
}

async function pool(concurrency: number, jobs: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs) await fn(next++);
    }),
  );
}

export interface PatternContext {
  creds: LoadCredentials;
  target: Target;
  mode: Mode;
  /** Called once connections that exist before the timed window are open: resets the RS counters. */
  beforeTimed: () => Promise<void>;
  /** The run's requests in flight (named when the run misses its deadline). */
  outstanding: Outstanding;
}

const htuOf = (t: Target) => `https://${t.host}:${t.port}${t.path}`;

/**
 * One long-lived HTTP/2 connection carrying `tokens.length` tokens x `m` requests, `concurrency`
 * streams in flight. With `presign`, session proofs are signed before the timed window.
 */
export async function longLivedH2(ctx: PatternContext, tokens: string[], m: number, concurrency: number, presign = false): Promise<CellMeasurement> {
  const signer = new Signer(ctx.creds, ctx.mode, htuOf(ctx.target));
  const conn = await openH2(ctx.creds, ctx.target);
  if (presign) await signer.presign(conn, tokens);
  const jobs: string[] = [];
  for (let i = 0; i < m; i++) jobs.push(...tokens);
  await ctx.beforeTimed();
  const rec = new Recorder(ctx.outstanding);
  rec.connections = 1;
  rec.start();
  await pool(concurrency, jobs.length, (i) => rec.time(`h2 stream, request ${i} of ${jobs.length}`, async () => h2Get(conn, ctx.target, await signer.headers(conn, jobs[i] as string, 'GET'))));
  const result = rec.finish(signer);
  await closeH2(conn);
  return result;
}

/**
 * A new TLS connection per request (HTTP/1.1, `Connection: close`), `concurrency` workers. With
 * `resume`, each worker offers the ticket of its previous connection (TLS 1.3 PSK resumption);
 * a priming connection per worker, outside the timed window, provides the first ticket.
 */
export async function connectionPerRequest(ctx: PatternContext, tokens: string[], requests: number, concurrency: number, resume: boolean): Promise<CellMeasurement> {
  const signer = new Signer(ctx.creds, ctx.mode, htuOf(ctx.target));
  const tickets: Array<Buffer | undefined> = new Array<Buffer | undefined>(concurrency).fill(undefined);
  if (resume) {
    await Promise.all(
      tickets.map(async (_, w) => {
        const c = new H1Conn(ctx.creds, ctx.target);
        await c.ready();
        tickets[w] = await c.waitTicket();
        c.destroy();
      }),
    );
  }
  await ctx.beforeTimed();
  const rec = new Recorder(ctx.outstanding);
  rec.start();
  let next = 0;
  await Promise.all(
    tickets.map(async (_, w) => {
      while (next < requests) {
        const i = next++;
        await rec.time(`worker ${w}: new connection, request ${i} of ${requests}`, async () => {
          const c = new H1Conn(ctx.creds, ctx.target, resume ? tickets[w] : undefined);
          rec.connections++;
          try {
            await c.ready();
          } catch {
            return 0;
          }
          const status = await c.get(ctx.target, await signer.headers(c, tokens[i % tokens.length] as string, 'GET'), true);
          // The server sends its tickets right after the handshake, before the response.
          if (resume && c.ticket !== undefined) tickets[w] = c.ticket;
          c.destroy();
          return status;
        });
      }
    }),
  );
  return rec.finish(signer);
}

/** An HTTP/1.1 keep-alive pool of `poolSize` connections carrying `tokens.length` tokens x `m` requests. */
export async function keepAlivePool(ctx: PatternContext, tokens: string[], m: number, poolSize: number): Promise<CellMeasurement> {
  const signer = new Signer(ctx.creds, ctx.mode, htuOf(ctx.target));
  const conns = Array.from({ length: poolSize }, () => new H1Conn(ctx.creds, ctx.target));
  await Promise.all(conns.map((c) => c.ready()));
  const jobs: string[] = [];
  for (let i = 0; i < m; i++) jobs.push(...tokens);
  await ctx.beforeTimed();
  const rec = new Recorder(ctx.outstanding);
  rec.connections = poolSize;
  rec.start();
  let next = 0;
  await Promise.all(
    conns.map(async (c, w) => {
      while (next < jobs.length) {
        const i = next++;
        const token = jobs[i] as string;
        await rec.time(`keep-alive connection ${w}, request ${i} of ${jobs.length}`, async () => c.get(ctx.target, await signer.headers(c, token, 'GET'), false));
      }
    }),
  );
  const result = rec.finish(signer);
  for (const c of conns) c.destroy();
  return result;
}

export interface AgentMixShape {
  /** Connections (agent hosts) active at once. */
  connections: number;
  /** Users (tokens) multiplexed on each connection. */
  usersPerConnection: number;
  /** Tool calls per user per burst (sequential per user). */
  burst: number;
  /** Bursts per connection slot. */
  rounds: number;
  /** Idle gap after each burst, ms; longer than the RS idle timeout, so the RS drops the connection. */
  gapMs: number;
}

/**
 * Agent-like mix: each round, every connection slot opens an HTTP/2 connection (resuming with its
 * last ticket, as Node's https.Agent would), its users each fire a burst of sequential tool calls
 * concurrently, then the slot goes idle for longer than the RS keep-alive timeout; the RS closes
 * the connection and the next round starts on a new one (new exporter, so new proofs). Throughput
 * counts active time only (rounds, not the idle gaps).
 */
export async function agentMix(ctx: PatternContext, tokens: string[], shape: AgentMixShape): Promise<CellMeasurement> {
  const signer = new Signer(ctx.creds, ctx.mode, htuOf(ctx.target));
  const tickets: Array<Buffer | undefined> = new Array<Buffer | undefined>(shape.connections).fill(undefined);
  await ctx.beforeTimed();
  const rec = new Recorder(ctx.outstanding);
  rec.start();
  for (let r = 0; r < shape.rounds; r++) {
    if (r > 0) rec.resume();
    const opened: H2Conn[] = [];
    await Promise.all(
      tickets.map(async (_, slot) => {
        // The slot's current connection. If the RS drops it in the middle of a burst (a pause
        // longer than its idle timeout on a loaded machine), reconnect (resuming) and retry the
        // call once, as an agent's HTTP stack would; the new connection needs new proofs.
        let current: Promise<H2Conn> | undefined;
        const open = (): Promise<H2Conn> => {
          rec.connections++;
          const p = openH2(ctx.creds, ctx.target, tickets[slot]).then((c) => {
            opened.push(c);
            c.socket.on('session', (t: Buffer) => (tickets[slot] = t));
            return c;
          });
          current = p;
          return p;
        };
        const live = async (): Promise<H2Conn> => {
          const p = current ?? open();
          const c = await p;
          if (!c.session.closed && !c.session.destroyed) return c;
          return current === p ? open() : live(); // another user may have reconnected already
        };
        await Promise.all(
          Array.from({ length: shape.usersPerConnection }, async (_, u) => {
            const token = tokens[(slot * shape.usersPerConnection + u) % tokens.length] as string;
            for (let b = 0; b < shape.burst; b++) {
              await rec.time(`round ${r}, slot ${slot}, user ${u}, call ${b}`, async () => {
                const conn = await live();
                const status = await h2Get(conn, ctx.target, await signer.headers(conn, token, 'GET'));
                if (status !== 0) return status;
                const again = await live();
                return h2Get(again, ctx.target, await signer.headers(again, token, 'GET'));
              });
            }
          }),
        );
      }),
    );
    rec.pause();
    // Idle: the RS drops the connections after its idle timeout; wait for that, then the rest of the gap.
    const idleStart = Date.now();
    await Promise.race([Promise.all(opened.map((c) => c.closed)), new Promise((r2) => setTimeout(r2, shape.gapMs * 4))]);
    const rest = shape.gapMs - (Date.now() - idleStart);
    if (rest > 0) await new Promise((r2) => setTimeout(r2, rest));
    for (const c of opened) await closeH2(c);
  }
  // finish() closes a window: reopen a zero-length one so the last pause is not counted twice.
  rec.resume();
  return rec.finish(signer);
}

/**
 * Agent churn behind the egress: every request is a new plain HTTP/1.1 connection from the agent to
 * the egress sidecar (`Connection: close`, `/api/...`), which keeps its upstream connection to the
 * RS and adds Session-Binding Proofs for Bearer tokens (one per token and upstream connection).
 * `dpop`: the agent signs a DPoP proof per request for the RS's URI (`ctx.target`); the egress
 * forwards non-Bearer credentials unchanged.
 */
export async function churnBehindEgress(ctx: PatternContext, egress: { host: string; port: number }, tokens: string[], requests: number, concurrency: number): Promise<CellMeasurement> {
  const signer = new Signer(ctx.creds, ctx.mode, htuOf(ctx.target));
  const path = `/api${ctx.target.path}`;
  await ctx.beforeTimed();
  const rec = new Recorder(ctx.outstanding);
  rec.start();
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async (_, w) => {
      while (next < requests) {
        const i = next++;
        const token = tokens[i % tokens.length] as string;
        await rec.time(`agent ${w}: new connection to the egress, request ${i} of ${requests}`, async () => {
          rec.connections++;
          const headers = ctx.mode === 'dpop' ? await signer.headers(undefined as unknown as ConnState, token, 'GET') : { authorization: `Bearer ${token}` };
          return plainGet(egress, path, headers);
        });
      }
    }),
  );
  return rec.finish(signer);
}

/** One GET on a new plain HTTP/1.1 connection (`Connection: close`); 0 on an error or after REQUEST_TIMEOUT_MS. */
function plainGet(to: { host: string; port: number }, path: string, headers: Record<string, string>): Promise<number> {
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
