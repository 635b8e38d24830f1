/**
 * Measurement of one timed cell of the matrix load generator: latencies, failures, connections and
 * the client's CPU over the active windows. Every request in flight is registered in the run's
 * `Outstanding`, which bench/matrix.ts names when a whole cell misses its deadline.
 */
import type { Outstanding } from '../deadline.js';
import type { Signer } from './signer.js';

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

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))] as number;
}

/** Times the requests of one cell; `finish` returns its measurement. */
export class Recorder {
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

/** Run jobs 0..`jobs`-1 through `fn` with `concurrency` in flight. */
export async function pool(concurrency: number, jobs: number, fn: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  await Promise.all(
    Array.from({ length: concurrency }, async () => {
      while (next < jobs) await fn(next++);
    }),
  );
}
