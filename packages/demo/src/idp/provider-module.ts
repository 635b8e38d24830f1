/** oidc-provider, typed by the declarations next to this file (the package ships none). */
// The test program compiles these sources too, so the ambient declaration joins by reference, not by tsconfig.
// eslint-disable-next-line @typescript-eslint/triple-slash-reference
/// <reference path="./oidc-provider.d.ts" />
export { Provider, errors } from 'oidc-provider';
export type { Account, InteractionDetails } from 'oidc-provider';
