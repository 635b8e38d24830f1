import { createDevPki, type DevPki, type KeyType } from '@tether/pki';

const cache = new Map<string, Promise<DevPki>>();

/** A development PKI per key type, shared by the tests of one process. */
export function testPki(keyType: KeyType = 'p256'): Promise<DevPki> {
  let pki = cache.get(keyType);
  if (pki === undefined) {
    pki = createDevPki({ keyType, clients: ['client', 'attacker', 'other'] });
    cache.set(keyType, pki);
  }
  return pki;
}
