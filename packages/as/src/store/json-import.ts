/**
 * Upgrade from the JSON state file of earlier versions (`<dataDir>/state.json`): keys,
 * revocations, registered clients, seen identifiers and observed certificates move into the store
 * on the first start, then the file is renamed `state.json.imported` (kept, never read again).
 * Every step is idempotent and the keys go last, so a start interrupted mid-import imports again.
 */
import { readFile, rename } from 'node:fs/promises';
import { join } from 'node:path';
import type { ClientMetadata } from '../config.js';
import { StoreError, type Store, type StoredKey } from './contract.js';

interface StateV1 {
  version: 1;
  keys: StoredKey[];
  revocations: Record<string, number>;
  clients: ClientMetadata[];
  seen: Record<string, number>;
  certificates: Record<string, Record<string, number>>;
}

function isRecord(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

async function readState(path: string): Promise<StateV1 | undefined> {
  let text: string;
  try {
    text = await readFile(path, 'utf8');
  } catch (error) {
    if ((error as { code?: string }).code === 'ENOENT') return undefined;
    throw new StoreError('import_failed', `cannot read ${path}`, { cause: error });
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (cause) {
    throw new StoreError('import_failed', `${path} is not valid JSON; refusing to start without its keys and revocations`, { cause });
  }
  if (!isRecord(parsed) || parsed.version !== 1 || !Array.isArray(parsed.keys) || !isRecord(parsed.revocations)) {
    throw new StoreError('import_failed', `${path} is not a tether state file (version 1)`);
  }
  return { revocations: {}, clients: [], seen: {}, certificates: {}, ...(parsed as Partial<StateV1>) } as StateV1;
}

/** Import `<dataDir>/state.json` into `store` when it is there; resolves whether it was. */
export async function importJsonState(store: Store, dataDir: string): Promise<boolean> {
  const path = join(dataDir, 'state.json');
  const state = await readState(path);
  if (state === undefined) return false;
  for (const [jti, exp] of Object.entries(state.revocations)) await store.revoke(jti, exp);
  for (const client of state.clients) await store.putClient(client);
  for (const [key, exp] of Object.entries(state.seen)) {
    const space = key.indexOf(' ');
    await store.rememberOnce(key.slice(0, space), key.slice(space + 1), exp);
  }
  for (const [clientId, certs] of Object.entries(state.certificates)) {
    for (const [thumbprint, exp] of Object.entries(certs)) await store.observeCertificate(clientId, thumbprint, exp);
  }
  await store.updateKeys(async (stored) => (stored.length === 0 ? state.keys : undefined));
  await rename(path, `${path}.imported`);
  return true;
}
