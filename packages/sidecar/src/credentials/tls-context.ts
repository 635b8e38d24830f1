/**
 * One `tls.SecureContext` per credentials generation, cached: a new connection made with
 * `tlsContextFor(credentials)` presents the newest certificate, while connections made earlier keep
 * the context (and certificate) they were made with until they close.
 */
import { createSecureContext, type SecureContext, type SecureContextOptions } from 'node:tls';
import { tlsKeyOptions } from '@tether/core';
import type { CredentialsSnapshot } from './reloadable.js';

/** Context settings other than the credentials themselves (e.g. `minVersion`, `maxVersion`, `ciphers`). */
export type TlsContextOptions = Omit<SecureContextOptions, 'cert' | 'key' | 'ca' | 'pfx' | 'passphrase'>;

/** Anything with a current snapshot (a ReloadableCredentials). */
export interface CredentialsHolder {
  current(): CredentialsSnapshot;
}

interface Cached {
  snapshot: CredentialsSnapshot;
  context: SecureContext;
}

const caches = new WeakMap<CredentialsHolder, Map<string, Cached>>();

/** A key for the options that does not depend on property order. */
function optionsKey(options: TlsContextOptions): string {
  const entries = Object.entries(options)
    .filter(([, value]) => value !== undefined)
    .sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  return JSON.stringify(entries);
}

/**
 * The secure context for `credentials`' current generation (cert, key, and `ca` when one was
 * given, otherwise Node's default roots) with `options` added. Built once per generation and
 * options; only the newest generation is kept here (older contexts live on in the connections that
 * use them). Throws only if OpenSSL refuses `options`.
 */
export function tlsContextFor(credentials: CredentialsHolder, options: TlsContextOptions = {}): SecureContext {
  const snapshot = credentials.current();
  let cache = caches.get(credentials);
  if (cache === undefined) {
    cache = new Map();
    caches.set(credentials, cache);
  }
  const key = optionsKey(options);
  const hit = cache.get(key);
  if (hit !== undefined && hit.snapshot === snapshot) return hit.context;
  const context = createSecureContext({
    ...options,
    cert: snapshot.cert,
    ...tlsKeyOptions(snapshot.key),
    ...(snapshot.ca === undefined ? {} : { ca: snapshot.ca }),
  });
  cache.set(key, { snapshot, context });
  return context;
}
