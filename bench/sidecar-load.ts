/**
 * The load generator of the sidecar benchmark (runs in the `load` child of bench/sidecar.ts).
 *
 * One run: `concurrency` workers, each with at most one request in flight, first one warm-up
 * request each (opens the connections), then `tokens x perToken` timed requests. Every request has
 * its own timeout (`requestTimeoutMs`: a request without a complete response by then is aborted
 * and counted as a failure), and the whole run has a deadline (`deadlineMs`): when it passes, the
 * run stops and replies with the requests still outstanding (worker, URL, how long waiting), which
 * the bench reports before it fails.
 *
 * Transports per path:
 *   direct, sidecar-h1   HTTP/1.1 keep-alive (http.Agent, one socket per worker), plain
 *   sidecar-h2c          h2c, one session
 *   rs-mtls              HTTP/2 over mTLS (client certificate), one session
 *   nginx-h1             HTTPS/1.1 keep-alive (https.Agent, one socket per worker), TLS 1.3
 *   nginx-h2             HTTP/2 over TLS 1.3, one session
 *   ingress              SessionBoundClient (HTTP/2 over mTLS, one proof per token and connection)
 */
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { Agent as HttpsAgent, request as httpsRequest } from 'node:https';
import { connect as http2Connect, constants as h2, type ClientHttp2Session } from 'node:http2';
import { SessionBoundClient } from '@tether/core';

export const MODES = ['direct', 'rs-mtls', 'nginx-h1', 'nginx-h2', 'ingress', 'sidecar-h1', 'sidecar-h2c'] as const;
export type Mode = (typeof MODES)[number];

export interface ClientMaterial {
  ca: string;
  clientCert: string;
  clientKey: string;
}

export interface RunRequest {
  cmd: 'run';
  mode: Mode;
  /** Origin of the first hop, e.g. `http://127.0.0.1:1234`. */
  url: string;
  path: string;
  tokens: string[];
  perToken: number;
  concurrency: number;
  requestTimeoutMs: number;
  /** Deadline of the whole run (warm-up included), ms. */
  deadlineMs: number;
  material: ClientMaterial;
}

export interface RunResult {
  kind: 'done';
  requests: number;
  /** Responses other than 200, timed-out and failed requests (warm-up included). */
  failures: number;
  timeouts: number;
  /** Up to 5 failure descriptions. */
  failureSamples: string[];
  seconds: number;
  throughput: number;
  p50Ms: number;
  p99Ms: number;
  /** Wall time of the whole run (warm-up included), against `deadlineMs`. */
  elapsedMs: number;
  deadlineMs: number;
  loadCpuMicros: number;
  /** Proofs signed by the load generator itself (ingress path). */
  proofsSigned: number;
}

export interface Outstanding {
  worker: number;
  phase: 'warm-up' | 'timed';
  url: string;
  waitingMs: number;
}

export interface DeadlineMissed {
  kind: 'deadline';
  mode: Mode;
  deadlineMs: number;
  elapsedMs: number;
  /** Timed requests completed, of `total` (warm-up requests not counted). */
  completed: number;
  total: number;
  outstanding: Outstanding[];
  failureSamples: string[];
}

export type RunReply = RunResult | DeadlineMissed;

interface Outcome {
  status: number;
  error?: string;
}

interface Transport {
  one(token: string): Promise<Outcome>;
  close(): Promise<void>;
  proofsSigned(): number;
}

function h1Transport(msg: RunRequest, secure: boolean): Transport {
  const target = new URL(msg.path, msg.url);
  const agent = secure
    ? new HttpsAgent({ keepAlive: true, maxSockets: msg.concurrency, ca: msg.material.ca, minVersion: 'TLSv1.3' })
    : new HttpAgent({ keepAlive: true, maxSockets: msg.concurrency });
  const send = secure ? httpsRequest : httpRequest;
  const one = (token: string) =>
    new Promise<Outcome>((resolve) => {
      let done = false;
      const finish = (o: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(o);
      };
      const req = send({ host: target.hostname, port: target.port, path: target.pathname, agent, headers: { authorization: `Bearer ${token}` } }, (res) => {
        res.on('error', (e) => finish({ status: 0, error: e.message }));
        res.on('end', () => finish({ status: res.statusCode ?? 0 }));
        res.resume();
      });
      const timer = setTimeout(() => {
        finish({ status: 0, error: `no response within ${msg.requestTimeoutMs} ms` });
        req.destroy();
      }, msg.requestTimeoutMs);
      req.on('error', (e) => finish({ status: 0, error: e.message }));
      req.end();
    });
  return { one, close: async () => agent.destroy(), proofsSigned: () => 0 };
}

function h2Transport(msg: RunRequest, session: ClientHttp2Session): Transport {
  session.on('error', () => undefined);
  const one = (token: string) =>
    new Promise<Outcome>((resolve) => {
      if (session.closed || session.destroyed) return resolve({ status: 0, error: 'session closed' });
      let done = false;
      let status = 0;
      const finish = (o: Outcome) => {
        if (done) return;
        done = true;
        clearTimeout(timer);
        resolve(o);
      };
      const stream = session.request({ ':path': msg.path, authorization: `Bearer ${token}` }, { endStream: true });
      const timer = setTimeout(() => {
        finish({ status: 0, error: `no response within ${msg.requestTimeoutMs} ms` });
        stream.close(h2.NGHTTP2_CANCEL);
      }, msg.requestTimeoutMs);
      stream.on('response', (h) => (status = Number(h[':status'])));
      stream.on('error', (e: Error) => finish({ status: 0, error: e.message }));
      stream.on('close', () => finish(status === 0 ? { status: 0, error: `stream closed without a response (code ${stream.rstCode})` } : { status }));
      stream.resume();
    });
  const close = () =>
    new Promise<void>((resolve) => {
      if (session.closed || session.destroyed) return resolve();
      const timer = setTimeout(() => {
        session.destroy();
        resolve();
      }, 2000);
      session.close(() => {
        clearTimeout(timer);
        resolve();
      });
    });
  return { one, close, proofsSigned: () => 0 };
}

function sessionBoundTransport(msg: RunRequest): Transport {
  const m = msg.material;
  const client = new SessionBoundClient({ cert: m.clientCert, key: m.clientKey, ca: m.ca, timeoutMs: msg.requestTimeoutMs });
  const target = new URL(msg.path, msg.url);
  return {
    one: (token) => client.request(target, { token }).then((r) => ({ status: r.status }), (e: unknown) => ({ status: 0, error: e instanceof Error ? e.message : String(e) })),
    close: () => Promise.race([client.close(), new Promise<void>((r) => setTimeout(r, 2000))]),
    proofsSigned: () => client.stats.proofsSigned,
  };
}

function openTransport(msg: RunRequest): Transport {
  const m = msg.material;
  switch (msg.mode) {
    case 'direct':
    case 'sidecar-h1':
      return h1Transport(msg, false);
    case 'nginx-h1':
      return h1Transport(msg, true);
    case 'sidecar-h2c':
      return h2Transport(msg, http2Connect(msg.url));
    case 'rs-mtls':
      return h2Transport(msg, http2Connect(msg.url, { cert: m.clientCert, key: m.clientKey, ca: m.ca, minVersion: 'TLSv1.3' }));
    case 'nginx-h2':
      return h2Transport(msg, http2Connect(msg.url, { ca: m.ca, minVersion: 'TLSv1.3' }));
    case 'ingress':
      return sessionBoundTransport(msg);
  }
}

function percentile(sorted: Float64Array, p: number): number {
  return sorted.length === 0 ? 0 : (sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number);
}

/** One run; see the file comment. Never waits past `deadlineMs` (+ the transport's close, bounded). */
export async function runLoad(msg: RunRequest): Promise<RunReply> {
  const transport = openTransport(msg);
  const startedAt = Date.now();
  const inflight = new Map<number, { since: number; phase: Outstanding['phase'] }>();
  const samples: string[] = [];
  const jobs: string[] = [];
  for (let m = 0; m < msg.perToken; m++) jobs.push(...msg.tokens);
  const latencies = new Float64Array(jobs.length);
  let failures = 0;
  let timeouts = 0;
  let completed = 0;
  let stopped = false;
  const call = async (worker: number, phase: Outstanding['phase'], token: string): Promise<void> => {
    inflight.set(worker, { since: Date.now(), phase });
    // The transports time their requests out themselves; this only guards against one that does not.
    let guard: NodeJS.Timeout | undefined;
    const o = await Promise.race([
      transport.one(token),
      new Promise<Outcome>((r) => (guard = setTimeout(() => r({ status: 0, error: `transport ignored its ${msg.requestTimeoutMs} ms timeout` }), msg.requestTimeoutMs + 2000))),
    ]);
    clearTimeout(guard);
    inflight.delete(worker);
    if (o.status !== 200) {
      failures++;
      if (o.error?.startsWith('no response within') === true) timeouts++;
      if (samples.length < 5) samples.push(`worker ${worker} ${phase}: ${o.error ?? `status ${o.status}`}`);
    }
  };
  const workers = Array.from({ length: msg.concurrency }, (_, w) => w);
  let t0 = 0n;
  let cpu = process.cpuUsage();
  const work = (async () => {
    // Open the connection(s) outside the timed window. The first token is used only here.
    await Promise.all(workers.map((w) => call(w, 'warm-up', msg.tokens[0] as string)));
    cpu = process.cpuUsage();
    t0 = process.hrtime.bigint();
    let next = 0;
    await Promise.all(
      workers.map(async (w) => {
        while (!stopped && next < jobs.length) {
          const i = next++;
          const started = process.hrtime.bigint();
          await call(w, 'timed', jobs[i] as string);
          latencies[i] = Number(process.hrtime.bigint() - started) / 1e6;
          completed++;
        }
      }),
    );
    return Number(process.hrtime.bigint() - t0) / 1e9;
  })();
  let deadline: NodeJS.Timeout | undefined;
  const seconds = await Promise.race([work, new Promise<'deadline'>((r) => (deadline = setTimeout(() => r('deadline'), msg.deadlineMs)))]);
  clearTimeout(deadline);
  if (seconds === 'deadline') {
    stopped = true;
    const now = Date.now();
    const url = new URL(msg.path, msg.url).href;
    const outstanding = [...inflight].map(([worker, r]) => ({ worker, phase: r.phase, url, waitingMs: now - r.since }));
    void transport.close();
    return { kind: 'deadline', mode: msg.mode, deadlineMs: msg.deadlineMs, elapsedMs: now - startedAt, completed, total: jobs.length, outstanding, failureSamples: samples };
  }
  const used = process.cpuUsage(cpu);
  await transport.close();
  const sorted = latencies.slice().sort();
  return {
    kind: 'done',
    requests: jobs.length,
    failures,
    timeouts,
    failureSamples: samples,
    seconds,
    throughput: jobs.length / seconds,
    p50Ms: percentile(sorted, 50),
    p99Ms: percentile(sorted, 99),
    elapsedMs: Date.now() - startedAt,
    deadlineMs: msg.deadlineMs,
    loadCpuMicros: used.user + used.system,
    proofsSigned: transport.proofsSigned(),
  };
}
