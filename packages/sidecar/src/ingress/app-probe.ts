/**
 * Whether the application behind the ingress accepts connections, for `/readyz`. A TCP (or Unix
 * socket) connect every few seconds while the ingress runs, each with a deadline; readiness reads
 * the last result and never waits for the network.
 */
import { connect, type Socket } from 'node:net';
import type { Endpoint } from '../config.js';

/** How often the application is probed, and how long one probe may take, ms. */
export const APP_PROBE_INTERVAL_MS = 5000;
export const APP_PROBE_TIMEOUT_MS = 1000;

export class AppProbe {
  #reachable: boolean | undefined;
  #timer: NodeJS.Timeout | undefined;

  constructor(private readonly app: Endpoint) {}

  /** `true` / `false` after the first probe; `undefined` before it. */
  get reachable(): boolean | undefined {
    return this.#reachable;
  }

  /** Probe once now, then every {@link APP_PROBE_INTERVAL_MS} until {@link stop}. */
  async start(): Promise<void> {
    await this.probe();
    this.#timer = setInterval(() => void this.probe(), APP_PROBE_INTERVAL_MS).unref();
  }

  stop(): void {
    clearInterval(this.#timer);
  }

  probe(): Promise<boolean> {
    return new Promise((resolve) => {
      const socket: Socket = this.app.kind === 'unix' ? connect({ path: this.app.path }) : connect({ host: this.app.host, port: this.app.port });
      const done = (ok: boolean) => {
        clearTimeout(timer);
        socket.destroy();
        this.#reachable = ok;
        resolve(ok);
      };
      const timer = setTimeout(() => done(false), APP_PROBE_TIMEOUT_MS);
      socket.once('connect', () => done(true));
      socket.once('error', () => done(false));
    });
  }
}
