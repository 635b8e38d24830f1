export {
  SessionBoundClient,
  type SessionBoundClientOptions,
  type SessionBoundRequest,
  type SessionBoundResponse,
  type SessionBoundClientStats,
} from './session-bound-client.js';
export { ConnectionProofSigner, type ConnectionProofSignerOptions, type ProofConnectionState } from './connection-proofs.js';
