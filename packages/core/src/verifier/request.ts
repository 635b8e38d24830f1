import type { ConnectionContext } from './connection.js';

/**
 * A request as the verifier sees it: header strings and the connection, nothing from `node:http`.
 * Header lists hold every field line received, so duplicates can be refused.
 */
export interface RequestInput {
  method: string;
  /** `https` for TLS connections. */
  scheme: string;
  /** Host and optional port the request was sent to (`:authority` or `Host`). */
  authority: string;
  /** request-target in origin form: path and optional query. */
  path: string;
  /** Every `Authorization` field value, in order. */
  authorization: readonly string[];
  /** Every `Session-Binding-Proof` field value, in order. */
  sessionBindingProof: readonly string[];
  /** Every `DPoP` field value, in order (RFC 9449 section 4.1). Absent means none. */
  dpop?: readonly string[];
  connection: ConnectionContext;
}
