/** `typ` header value of a DPoP proof (RFC 9449 section 4.2). */
export const DPOP_TYP = 'dpop+jwt';
/** HTTP header field carrying the proof (RFC 9449 section 4.1). */
export const DPOP_HEADER = 'DPoP';
/** HTTP response header field carrying a server-provided nonce (RFC 9449 sections 8 and 9). */
export const DPOP_NONCE_HEADER = 'DPoP-Nonce';
/** Largest proof accepted before any parsing work, in characters (an RSA-4096 JWK fits easily). */
export const MAX_DPOP_PROOF_LENGTH = 8192;
/** Longest `jti` accepted (RFC 9449 section 11.1: refuse unnecessarily large values). */
export const MAX_JTI_LENGTH = 256;
/** Longest `nonce` claim accepted. */
export const MAX_NONCE_LENGTH = 1024;
