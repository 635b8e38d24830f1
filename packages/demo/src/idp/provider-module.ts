/** oidc-provider, typed by the declarations next to this file (the package ships none). */
// The test program compiles these sources too, so the ambient declaration joins by reference, not by tsconfig.
// eslint-disable-next-line @typescript-eslint/triple-slash-reference
/// <reference path="./oidc-provider.d.ts" />
import type { Provider as ProviderClass, errors as providerErrors } from 'oidc-provider';

export type { Account, InteractionDetails } from 'oidc-provider';

const UNSUPPORTED_RUNTIME = 'oidc-provider WARNING: Unsupported runtime';

/**
 * oidc-provider warns on import on every runtime but an even-numbered LTS from 22 on, so on
 * Node 20 (LTS before 22) and 26 (not yet LTS), which tether supports and tests it on (README,
 * "Node.js lines"). That one line would be noise in every demo run; any other warning passes.
 */
async function importQuietly(): Promise<typeof import('oidc-provider')> {
  const warn = console.warn;
  console.warn = (...args: unknown[]) => {
    if (!String(args[0]).startsWith(UNSUPPORTED_RUNTIME)) warn(...args);
  };
  try {
    return await import('oidc-provider');
  } finally {
    console.warn = warn;
  }
}

const oidcProvider = await importQuietly();
export type Provider = ProviderClass;
export const Provider: typeof ProviderClass = oidcProvider.Provider;
export const errors: typeof providerErrors = oidcProvider.errors;
