/**
 * Traffic patterns of the benchmark matrix (bench/matrix.ts). Every mode uses the same transport
 * code (bench/load/h2.ts, bench/load/h1.ts) and only the credentials differ (bench/load/signer.ts);
 * each pattern returns the measurement of its timed window (bench/load/recorder.ts).
 */
import type { Outstanding } from '../deadline.js';
import type { ConnState, LoadCredentials, Target } from './connection.js';
import { H1Conn, plainGet } from './h1.js';
import { closeH2, h2Get, openH2, type H2Conn } from './h2.js';
import { Recorder, pool, type CellMeasurement } from './recorder.js';
import { Signer, type Mode } from './signer.js';

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
