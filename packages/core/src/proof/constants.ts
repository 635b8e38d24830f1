/** `typ` header value of a Session-Binding Proof (draft section 2.3.1). */
export const PROOF_TYP = 'tls-binding-proof+jwt';
/** HTTP header field carrying the proof (draft section 7.3.1). */
export const PROOF_HEADER = 'Session-Binding-Proof';
/** Largest proof accepted before any parsing work, in characters. */
export const MAX_PROOF_LENGTH = 8192;
