/**
 * From a store URL to an open {@link Store}: `sqlite:PATH` (relative to the configuration's
 * directory), `postgres://…` / `postgresql://…`; without a URL, `sqlite:<dataDir>/tether.db`
 * (the embedded default, importing an earlier version's `state.json` there).
 */
import { join, resolve } from 'node:path';
import { StoreError, type Store } from './contract.js';
import { importJsonState } from './json-import.js';
import { PostgresDriver } from './postgres.js';
import type { KeyEncryptionKey } from './seal.js';
import { SqlStore } from './sql-store.js';
import { SqliteDriver } from './sqlite.js';
import { storeUrlProblem } from './url.js';

export interface StoreLocation {
  /** `sqlite:PATH` or `postgres://…`; default: SQLite in `dataDir`. */
  url?: string | undefined;
  dataDir?: string | undefined;
  kek?: KeyEncryptionKey | undefined;
}

/** Open (connect and migrate) the store; an embedded default in `dataDir` imports `state.json`. */
export async function openStore(location: StoreLocation): Promise<Store> {
  const { url, dataDir, kek } = location;
  const options = kek === undefined ? {} : { kek };
  let store: SqlStore;
  if (url !== undefined && /^postgres(ql)?:\/\//.test(url)) store = new SqlStore(new PostgresDriver(url), options);
  else if (url !== undefined && url.startsWith('sqlite:')) store = new SqlStore(new SqliteDriver(resolve(url.slice('sqlite:'.length))), options);
  else if (url !== undefined) throw new StoreError('store_url', `store ${storeUrlProblem(url) ?? 'is not supported'}`);
  else if (dataDir !== undefined) store = new SqlStore(new SqliteDriver(join(dataDir, 'tether.db')), options);
  else throw new StoreError('store_url', 'no store configured: set store (sqlite:PATH or postgres://...) or dataDir');
  await store.open();
  if (url === undefined && dataDir !== undefined) {
    try {
      await importJsonState(store, dataDir);
    } catch (error) {
      await store.close();
      throw error;
    }
  }
  return store;
}
