/**
 * The egress's certificate generations. Each certificate / key the credentials accept becomes a
 * generation with its own upstream TLS options (secure context built once) and its own proof
 * signer: an upstream connection is opened with one generation and every proof on it is signed
 * with that generation's key, whatever happens to the files afterwards. Tokens the egress obtains
 * are fetched per generation too (token-source.ts), so a token always travels on a connection made
 * with the certificate it is bound to.
 *
 * A reload is applied in order: build the generation (a key the signer cannot use keeps the
 * current one), let the targets prepare (fetch tokens with the new certificate), then switch
 * (pools stop giving out connections of older generations, which finish what they carry and close).
 */
import { createSecureContext, type ConnectionOptions } from 'node:tls';
import { ConnectionProofSigner, certificateThumbprint, tlsKeyOptions } from '@tether/core';
import { SidecarConfigError } from '../config.js';
import type { ActiveCredentials, CredentialsSource } from '../credentials/source.js';
import { errorMessage } from '../shared/errors.js';
import type { Logger } from '../log.js';

export interface Generation {
  /** The credentials generation (1 at start). */
  readonly number: number;
  readonly credentials: ActiveCredentials;
  /** `x5t#S256` of the certificate: what tokens fetched with it are bound to. */
  readonly thumbprint: string;
  /**
   * Options for `tls.connect` and https agents: the prebuilt secure context, plus cert / key / ca,
   * which keep the pools of different generations apart in Node's agents (they key by them).
   */
  readonly tls: ConnectionOptions;
  readonly signer: ConnectionProofSigner;
}

export interface GenerationSettings {
  allowTls12: boolean;
  preferRs256: boolean;
  proofRefreshAfter: number;
  onSign(): void;
  onHit(): void;
}

/** Throws when OpenSSL refuses the pair or the key cannot sign proofs. */
export function buildGeneration(credentials: ActiveCredentials, settings: GenerationSettings): Generation {
  const { cert, key, ca } = credentials;
  const versions = { minVersion: settings.allowTls12 ? 'TLSv1.2' : 'TLSv1.3', maxVersion: 'TLSv1.3' } as const;
  // A token-held key enters the handshake as the engine key (privateKeyEngine / privateKeyIdentifier).
  const pem = { cert, ...tlsKeyOptions(key), ...(ca === undefined ? {} : { ca }) };
  const signer = new ConnectionProofSigner({
    cert,
    key,
    preferRs256: settings.preferRs256,
    tlsVersions: settings.allowTls12 ? ['TLSv1.3', 'TLSv1.2'] : ['TLSv1.3'],
    refreshAfter: settings.proofRefreshAfter,
    onSign: settings.onSign,
    onHit: settings.onHit,
  });
  return {
    number: credentials.generation,
    credentials,
    thumbprint: certificateThumbprint(signer.certificate),
    tls: { ...pem, ...versions, secureContext: createSecureContext({ ...pem, ...versions }) },
    signer,
  };
}

/** What follows the generations. */
export interface RotationTargets {
  /** Before `next` becomes current (e.g. fetch tokens with it). Failures are logged, the switch goes on. */
  prepare(next: Generation): Promise<void>;
  /** `next` is current now; `previous` only finishes what it carries. */
  switched(next: Generation, previous: Generation): void;
}

export class Generations {
  #current: Generation;
  /** Earlier generations, while they may still hold connections (for state and metrics). */
  readonly #older = new Set<Generation>();
  #queue: Promise<void> = Promise.resolve();
  #unsubscribe: (() => void) | undefined;
  #closed = false;

  /** Throws {@link SidecarConfigError} when the initial pair cannot be used. */
  constructor(
    private readonly source: CredentialsSource,
    private readonly settings: GenerationSettings,
    private readonly log: Logger,
  ) {
    try {
      this.#current = buildGeneration(source.current(), settings);
    } catch (error) {
      throw new SidecarConfigError(errorMessage(error), { cause: error });
    }
  }

  current(): Generation {
    return this.#current;
  }

  /** The current generation and the earlier ones that still have upstream connections. */
  live(): Generation[] {
    for (const g of this.#older) if (g.signer.live.size === 0) this.#older.delete(g);
    return [this.#current, ...this.#older];
  }

  /** Follow reloads from now on, one at a time, in order. */
  follow(targets: RotationTargets): void {
    this.#unsubscribe ??= this.source.subscribe((credentials, trigger) => {
      // A failure is logged and does not stop the reloads after it (nor reach the process as an unhandled rejection).
      this.#queue = this.#queue
        .then(() => this.#apply(credentials, trigger, targets))
        .catch((error: unknown) => this.log.error({ generation: credentials.generation, trigger, err: errorMessage(error) }, 'egress certificate switch failed'));
    });
  }

  /** Stop following reloads; resolves once a switch in progress is done. */
  close(): Promise<void> {
    this.#closed = true;
    this.#unsubscribe?.();
    return this.#queue;
  }

  async #apply(credentials: ActiveCredentials, trigger: string, targets: RotationTargets): Promise<void> {
    // A newer pair is already queued behind this one: go straight to it.
    if (this.#closed || credentials.generation <= this.#current.number || this.source.current().generation > credentials.generation) return;
    let next: Generation;
    try {
      next = buildGeneration(credentials, this.settings);
    } catch (error) {
      this.log.error({ generation: credentials.generation, trigger, err: errorMessage(error) }, 'egress certificate not applied; the current one stays in use');
      return;
    }
    try {
      await targets.prepare(next);
    } catch (error) {
      this.log.warn({ generation: next.number, err: errorMessage(error) }, 'could not prepare tokens for the new certificate; they are fetched on first use');
    }
    if (this.#closed) return;
    const previous = this.#current;
    this.#current = next;
    this.#older.add(previous);
    targets.switched(next, previous);
    this.log.info(
      { generation: next.number, fingerprint: credentials.fingerprint, previousGeneration: previous.number, notAfter: credentials.notAfter.toISOString(), trigger },
      'egress certificate switched: new upstream connections and tokens use it',
    );
  }
}
