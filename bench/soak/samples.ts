/**
 * Sampling of the soak's resource server (bench/soak-rs.ts): one question at a time over IPC, each
 * with a deadline (a GC and a sample take milliseconds), every `sampleEvery` seconds while the
 * workers run, then once more after the clients have closed and the server has drained.
 */
import type { ForkedChild } from '../children.js';
import type { RsSample } from '../soak-rs.js';
import { attackSent, type Tally } from './run.js';

export const MiB = 1024 * 1024;

export type Phase = 'warmup' | 'run' | 'end';
export type SoakSample = { t: number; phase: Phase } & RsSample & { generatorHeapUsed: number; honestRequests: number; attackRequests: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

export class RsSampler {
  readonly samples: SoakSample[] = [];
  readonly #rs: ForkedChild;
  readonly #tally: Tally;
  /** The run's start (ms): sample times are seconds since then. */
  readonly #started: number;
  #sampling = Promise.resolve<RsSample | undefined>(undefined);

  constructor(rs: ForkedChild, tally: Tally, started: number) {
    this.#rs = rs;
    this.#tally = tally;
    this.#started = started;
  }

  /** The server's state after a full GC, asked after any question still pending. */
  sample(): Promise<RsSample> {
    const next = this.#sampling.then(() => this.#rs.ask<RsSample>({ cmd: 'sample' }, 60_000));
    this.#sampling = next.catch(() => undefined);
    return next;
  }

  /** Sample the server (and the generator's heap after its own GC), keep it and log a line to stderr. */
  async take(phase: Phase): Promise<void> {
    const s = await this.sample();
    (globalThis as { gc?: () => void }).gc?.();
    const honest = this.#tally.honest;
    const t = (Date.now() - this.#started) / 1000;
    this.samples.push({ t, phase, ...s, generatorHeapUsed: process.memoryUsage().heapUsed, honestRequests: honest.requests, attackRequests: attackSent(this.#tally) });
    console.error(
      `t=${t.toFixed(0).padStart(4)}s heap ${(s.heapUsed / MiB).toFixed(1)}/${(s.heapTotal / MiB).toFixed(1)} MiB ext ${(s.external / MiB).toFixed(1)} ab ${(s.arrayBuffers / MiB).toFixed(1)} new ${(s.newSpace / MiB).toFixed(1)} anon ${(s.rssAnon / MiB).toFixed(1)} rss ${(s.rss / MiB).toFixed(1)} MiB cache ${s.cacheSize}/${s.cacheConnections} conns replay ${s.replayStoreSize} open ${s.openConnections} honest ${honest.requests} (lost ${honest.lost}) attacks ${attackSent(this.#tally)}`,
    );
  }

  /** Sample every `everySeconds` until `allDone` settles or `running()` turns false; warm-up samples are marked. */
  async whileRunning(allDone: Promise<unknown>, running: () => boolean, everySeconds: number, warmupSeconds: number): Promise<void> {
    let done = false;
    void allDone.finally(() => (done = true));
    while (!done && running()) {
      await Promise.race([sleep(everySeconds * 1000), allDone]);
      if (done) break;
      await this.take((Date.now() - this.#started) / 1000 < warmupSeconds ? 'warmup' : 'run');
    }
  }

  /** Wait (up to 5 s) for the server to drain after every client closed, then take the end sample and return it. */
  async end(): Promise<SoakSample> {
    // The server's close events may trail the clients' by a moment.
    let end = await this.sample();
    for (let i = 0; i < 50 && (end.cacheSize > 0 || end.cacheConnections > 0 || end.openConnections > 0); i++) {
      await sleep(100);
      end = await this.sample();
    }
    await this.take('end');
    return this.samples[this.samples.length - 1]!;
  }
}
