/**
 * T6 (NOTES decision 4): who may exchange a subject token. A pure function of the subject
 * token's binding, the requester and its connection; no I/O.
 *
 * | subject binding        | requester                                              | decision                          |
 * |------------------------|--------------------------------------------------------|-----------------------------------|
 * | dpop (`cnf.jkt`)       | no DPoP proof on the request                           | refused `dpop_subject_without_proof` |
 * | dpop                   | DPoP proof made with another key                       | refused `dpop_subject_key_mismatch` |
 * | dpop                   | DPoP proof made with the `cnf.jkt` key                 | holder (successor bound to it)    |
 * | certificate / session  | certificate on this connection = `cnf.x5t#S256`        | holder (session: must also send a Session-Binding-Proof on this connection) |
 * | certificate / session  | another client, an intended recipient, mTLS-authenticated | recipient                      |
 * | certificate / session  | another client, an intended recipient, not mTLS        | refused `recipient_not_mtls`      |
 * | certificate / session  | another client, not an intended recipient              | refused `not_holder_nor_recipient` |
 * | none (bearer)          | an intended recipient, or the client it was issued to  | recipient                         |
 * | none (bearer)          | anyone else                                            | refused `not_recipient`           |
 *
 * An intended recipient is named in the token's `aud` or `may_act`, or trusted for the token's
 * client by `token_exchange.subject_clients` (token-exchange.ts decides that).
 *
 * A subject token from a trusted external issuer (`trustedIssuers`, an IdP's token for a person)
 * carries no binding tether can check, so who holds it proves nothing: only the clients the
 * issuer's entry names may exchange it, and only over mTLS, so that the successor is bound to
 * their certificate. A stolen browser token is useless to anyone else.
 *
 * | external subject       | requester                                              | decision                          |
 * |------------------------|--------------------------------------------------------|-----------------------------------|
 * | any                    | not in the issuer's `clients`                          | refused `external_client_not_allowed` |
 * | any                    | in `clients`, not mTLS-authenticated or no certificate on the connection | refused `external_not_mtls` |
 * | any                    | in `clients`, mTLS-authenticated on this connection    | requester (successor bound to its certificate) |
 */
import type { BindingRequirement } from '@tether/core';

/** The subject token's binding, as core's `bindingRequirement(cnf)` reports it (`invalid` refused before). */
export type SubjectBinding = Exclude<BindingRequirement, { kind: 'invalid' }>;

export interface ExchangeRequester {
  /** `x5t#S256` of the certificate on this connection (mTLS listener only). */
  connectionThumbprint: string | undefined;
  /** `jkt` of the request's verified DPoP proof. */
  dpopJkt: string | undefined;
  /** Authenticated with mutual TLS. */
  mtls: boolean;
  /** Named in `aud` or `may_act`, or trusted by policy for the token's client. */
  intendedRecipient: boolean;
  /** The subject token was issued to this client. */
  ownsToken: boolean;
}

export type T6Decision =
  | { allowed: true; role: 'holder'; mustProveSession: boolean }
  | { allowed: true; role: 'recipient' }
  | { allowed: false; reason: string; description: string };

const refused = (reason: string, description = 'The client may not exchange this subject_token'): T6Decision => ({ allowed: false, reason, description });

export function decideExchange(subject: SubjectBinding, requester: ExchangeRequester): T6Decision {
  if (subject.kind === 'dpop') {
    if (requester.dpopJkt === undefined) return refused('dpop_subject_without_proof', 'A DPoP-bound subject_token can only be exchanged with a DPoP proof of its key');
    if (requester.dpopJkt !== subject.jkt) return refused('dpop_subject_key_mismatch', 'The DPoP proof is not made with the key the subject_token is bound to');
    return { allowed: true, role: 'holder', mustProveSession: false };
  }
  if (subject.kind === 'none') {
    return requester.intendedRecipient || requester.ownsToken ? { allowed: true, role: 'recipient' } : refused('not_recipient');
  }
  if (requester.connectionThumbprint !== undefined && requester.connectionThumbprint === subject.thumbprint) {
    return { allowed: true, role: 'holder', mustProveSession: subject.kind === 'session' };
  }
  if (!requester.intendedRecipient) return refused('not_holder_nor_recipient');
  if (!requester.mtls) return refused('recipient_not_mtls');
  return { allowed: true, role: 'recipient' };
}

export interface ExternalExchangeRequester {
  /** Named in the issuer's `clients`. */
  listed: boolean;
  /** Authenticated with mutual TLS. */
  mtls: boolean;
  /** `x5t#S256` of the certificate on this connection (mTLS listener only). */
  connectionThumbprint: string | undefined;
}

/** Who may exchange a subject token issued by a trusted external issuer (second table above). */
export function decideExternalExchange(requester: ExternalExchangeRequester): { allowed: true } | { allowed: false; reason: string; description: string } {
  if (!requester.listed) return { allowed: false, reason: 'external_client_not_allowed', description: 'The client may not exchange tokens of this issuer' };
  if (!requester.mtls || requester.connectionThumbprint === undefined) {
    return { allowed: false, reason: 'external_not_mtls', description: 'Tokens of this issuer can only be exchanged by a client authenticated with mutual TLS' };
  }
  return { allowed: true };
}
