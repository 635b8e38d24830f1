/**
 * A hand-written ConnectionContext: the verifier's view of a TLS connection as plain data. Used
 * where the test is about the protocol logic above TLS (binding cache, error mapping); tests of
 * the exporter itself run over real TLS sockets in test/tls.
 */
import { X509Certificate } from 'node:crypto';
import { certificateThumbprint, type ConnectionContext } from '@tether/core';

let nextId = 1_000_000;

export class FakeConnection implements ConnectionContext {
  readonly id = nextId++;
  readonly protocol: string | null;
  readonly authorized: boolean;
  readonly certificate: X509Certificate | undefined;
  readonly thumbprint: string | undefined;
  #closed = false;
  #listeners: Array<() => void> = [];
  /** How many listeners were registered through onClose (the cache must register one). */
  onCloseCalls = 0;
  exporterCalls = 0;

  constructor(
    private readonly ekm: Buffer = Buffer.alloc(32, 7),
    options: { certificate?: X509Certificate; protocol?: string | null; authorized?: boolean } = {},
  ) {
    this.protocol = options.protocol === undefined ? 'TLSv1.3' : options.protocol;
    this.authorized = options.authorized ?? true;
    this.certificate = options.certificate;
    this.thumbprint = options.certificate === undefined ? undefined : certificateThumbprint(options.certificate);
  }

  get closed(): boolean {
    return this.#closed;
  }

  exporter(): Buffer {
    this.exporterCalls++;
    return this.ekm;
  }

  onClose(listener: () => void): void {
    this.onCloseCalls++;
    if (this.#closed) listener();
    else this.#listeners.push(listener);
  }

  close(): void {
    if (this.#closed) return;
    this.#closed = true;
    const listeners = this.#listeners;
    this.#listeners = [];
    for (const l of listeners) l();
  }
}
