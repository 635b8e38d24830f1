/**
 * The demo identity provider: an OpenID Provider (oidc-provider) over HTTPS where people sign in
 * with a username and password, for native apps using a loopback redirect (RFC 8252).
 */
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { Provider } from './provider-module.js';
import { providerConfiguration } from './configuration.js';
import { handleInteraction, isInteractionRequest } from './interactions.js';
import { IDP_REQUEST_TIMEOUT_MS, type IdentityProviderOptions } from './options.js';

export interface IdentityProvider {
  /** The issuer identifier, `https://HOST:PORT` (discovery at `/.well-known/openid-configuration`). */
  issuer: string;
  /** The same as the issuer (the provider is mounted at the root). */
  url: string;
  /** Stops listening and ends every open connection. */
  close(): Promise<void>;
}

export async function startIdentityProvider(options: IdentityProviderOptions): Promise<IdentityProvider> {
  const host = options.host ?? '127.0.0.1';
  if (options.users.length === 0 || options.clients.length === 0) throw new TypeError('the identity provider needs at least one user and one client');
  const server = createServer({ cert: options.tls.cert, key: options.tls.key });
  server.requestTimeout = IDP_REQUEST_TIMEOUT_MS;
  server.headersTimeout = IDP_REQUEST_TIMEOUT_MS;
  server.keepAliveTimeout = 5_000;
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port ?? 0, host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const { port } = server.address() as AddressInfo;
  const issuer = `https://${host.includes(':') ? `[${host}]` : host}:${port}`;
  let provider: Provider;
  try {
    provider = new Provider(issuer, providerConfiguration(options));
  } catch (error) {
    server.close();
    throw error;
  }
  const callback = provider.callback();
  server.on('request', (req, res) => {
    const path = (req.url ?? '/').split('?')[0] ?? '/';
    if (isInteractionRequest(path)) void handleInteraction(provider, options.users, req, res);
    else callback(req, res);
  });
  return {
    issuer,
    url: issuer,
    close: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        server.closeAllConnections();
      }),
  };
}
