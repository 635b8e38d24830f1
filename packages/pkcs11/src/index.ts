/**
 * @tether/pkcs11: client keys held in a PKCS#11 token (HSM, smart card, TPM through tpm2-pkcs11,
 * SoftHSM2, cloud KMS modules). `@tether/core` loads this package only for a `pkcs11:` key.
 */
export { openPkcs11Key, type OpenPkcs11KeyOptions } from './open.js';
export { Pkcs11Key } from './key.js';
export { Pkcs11KeyError, type Pkcs11ErrorCode } from './errors.js';
export { parsePkcs11Uri, type Pkcs11Uri } from './uri.js';
