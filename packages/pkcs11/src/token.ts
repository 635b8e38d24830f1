/**
 * Finding what a URI names: the slot whose token matches the token attributes (exactly one), a
 * logged-in session on it, and the one private key that matches the object attributes.
 */
import { createHash, timingSafeEqual } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { ckr, Pkcs11KeyError } from './errors.js';
import type { LoadedModule } from './module.js';
import type { Pkcs11Uri } from './uri.js';

const PIN_REFUSED = new Set(['CKR_PIN_INCORRECT', 'CKR_PIN_INVALID', 'CKR_PIN_LEN_RANGE', 'CKR_PIN_LOCKED', 'CKR_PIN_EXPIRED']);

const trimmed = (value: string): string => value.replace(/[ \0]+$/, '');

/** The one slot whose token matches the URI's token and slot attributes. */
export function findSlot(api: pkcs11js.PKCS11, uri: Pkcs11Uri): Buffer {
  const slots = api.C_GetSlotList(true).filter((slot) => {
    if (uri.slotId !== undefined && slot.readBigUInt64LE(0) !== uri.slotId) return false;
    const slotInfo = uri.slotDescription !== undefined || uri.slotManufacturer !== undefined ? api.C_GetSlotInfo(slot) : undefined;
    if (uri.slotDescription !== undefined && trimmed(slotInfo?.slotDescription ?? '') !== uri.slotDescription) return false;
    if (uri.slotManufacturer !== undefined && trimmed(slotInfo?.manufacturerID ?? '') !== uri.slotManufacturer) return false;
    const info = api.C_GetTokenInfo(slot);
    return (
      (uri.token === undefined || trimmed(info.label) === uri.token) &&
      (uri.manufacturer === undefined || trimmed(info.manufacturerID) === uri.manufacturer) &&
      (uri.model === undefined || trimmed(info.model) === uri.model) &&
      (uri.serial === undefined || trimmed(info.serialNumber) === uri.serial)
    );
  });
  const [slot, ...others] = slots;
  const which = uri.token === undefined ? 'the URI' : `token=${uri.token}`;
  if (slot === undefined) throw new Pkcs11KeyError('ERR_PKCS11_TOKEN_NOT_FOUND', `no PKCS#11 token matches ${which}`);
  if (others.length > 0) throw new Pkcs11KeyError('ERR_PKCS11_TOKEN_NOT_FOUND', `${slots.length} PKCS#11 tokens match ${which}; add serial= or slot-id=`);
  return slot;
}

/**
 * Open a session on `slot` and log the user in. Closes the session again if the login fails.
 * Login state is per process: when the token is already logged in, the PIN must be the one it was
 * logged in with (a wrong PIN never passes because another key opened the token first).
 */
export function openSession(module: LoadedModule, slot: Buffer, pin: string): Buffer {
  const { api } = module;
  const session = api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
  const digest = createHash('sha256').update(pin).digest();
  const slotKey = slot.toString('hex');
  try {
    api.C_Login(session, pkcs11js.CKU_USER, pin);
    module.logins.set(slotKey, digest);
  } catch (cause) {
    const code = ckr(cause);
    const known = module.logins.get(slotKey);
    if (code === 'CKR_USER_ALREADY_LOGGED_IN' && known !== undefined && timingSafeEqual(known, digest)) return session;
    closeQuietly(api, session);
    if (code === 'CKR_USER_ALREADY_LOGGED_IN') {
      throw new Pkcs11KeyError('ERR_PKCS11_PIN', known === undefined ? 'the token is already logged in by another part of this process; the PIN cannot be checked' : 'the token refused the PIN');
    }
    if (code !== undefined && PIN_REFUSED.has(code)) throw new Pkcs11KeyError('ERR_PKCS11_PIN', `the token refused the PIN (${code})`);
    throw new Pkcs11KeyError('ERR_PKCS11_PIN', `login to the token failed (${code ?? 'error'})`, { cause });
  }
  return session;
}

export function closeQuietly(api: pkcs11js.PKCS11, session: Buffer): void {
  try {
    api.C_CloseSession(session);
  } catch {
    // Already closed (or the module is gone): nothing left to release.
  }
}

/** The one private key matching `object` (CKA_LABEL) and `id` (CKA_ID). */
export function findPrivateKey(api: pkcs11js.PKCS11, session: Buffer, uri: Pkcs11Uri): { handle: Buffer; keyType: number } {
  if (uri.type !== undefined && uri.type !== 'private') {
    throw new Pkcs11KeyError('ERR_PKCS11_URI', `invalid pkcs11: URI: a client key needs type=private (or no type), not type=${uri.type}`);
  }
  if (uri.object === undefined && uri.id === undefined) throw new Pkcs11KeyError('ERR_PKCS11_URI', 'invalid pkcs11: URI: name the key with object= or id=');
  const template: pkcs11js.Template = [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY }];
  if (uri.object !== undefined) template.push({ type: pkcs11js.CKA_LABEL, value: uri.object });
  if (uri.id !== undefined) template.push({ type: pkcs11js.CKA_ID, value: uri.id });
  api.C_FindObjectsInit(session, template);
  let found: Buffer[];
  try {
    found = api.C_FindObjects(session, 2);
  } finally {
    api.C_FindObjectsFinal(session);
  }
  const [handle, other] = found;
  const which = uri.object === undefined ? 'the id' : `object=${uri.object}`;
  if (handle === undefined) throw new Pkcs11KeyError('ERR_PKCS11_KEY_NOT_FOUND', `no private key matches ${which} on the token`);
  if (other !== undefined) throw new Pkcs11KeyError('ERR_PKCS11_KEY_NOT_FOUND', `several private keys match ${which}; add id=`);
  const [attribute] = api.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_KEY_TYPE }]);
  const value = attribute?.value;
  const keyType = Buffer.isBuffer(value) ? Number(value.readBigUInt64LE(0)) : Number(value);
  return { handle, keyType };
}
