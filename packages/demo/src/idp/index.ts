/** The demo identity provider and the clients that sign in at it. */
export { startIdentityProvider, type IdentityProvider } from './server.js';
export type { IdentityProviderOptions, IdentityProviderUser, IdentityProviderClient } from './options.js';
export { loginWithForms, type LoginWithFormsOptions } from './login-forms.js';
export { startLoopbackRedirect, type LoopbackRedirect, type AuthorizationResponse } from './loopback.js';
export { discover, authorizationRequest, codeFrom, redeemCode, type ProviderMetadata, type AuthorizationRequest, type LoginTokens } from './oauth-client.js';
