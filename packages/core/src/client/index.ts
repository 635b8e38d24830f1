export {
  SessionBoundClient,
  type SessionBoundClientOptions,
  type SessionBoundRequest,
  type SessionBoundResponse,
  type SessionBoundClientStats,
} from './session-bound-client.js';
export { ConnectionProofSigner, type ConnectionProofSignerOptions, type ProofConnectionState } from './connection-proofs.js';
export {
  openClientKey,
  buildWithClientKey,
  pkcs11OptionsFromFlags,
  isPkcs11Uri,
  isExternalClientKey,
  tlsKeyOptions,
  type ClientKeyInput,
  type ExternalClientKey,
  type Pkcs11KeyOptions,
} from './client-key.js';
