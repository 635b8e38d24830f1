/**
 * Versioned schema migrations, applied in order on start inside one transaction under the
 * `schema` lock (two instances starting at once migrate once). The version lives in
 * `tether_schema`; a database at a version above {@link SCHEMA_VERSION} was written by a newer
 * tether and is refused rather than misread. Append migrations; never edit a released one.
 */
import { StoreError } from './contract.js';
import type { SqlDriver, SqlSession } from './driver.js';

const MIGRATIONS: ReadonlyArray<readonly string[]> = [
  // 1: everything the AS keeps.
  [
    'CREATE TABLE tether_signing_keys (kid TEXT PRIMARY KEY, record TEXT NOT NULL)',
    'CREATE TABLE tether_revocations (jti TEXT PRIMARY KEY, expires_at BIGINT NOT NULL)',
    'CREATE TABLE tether_exchanges (child_jti TEXT PRIMARY KEY, parent_jti TEXT NOT NULL, expires_at BIGINT NOT NULL)',
    'CREATE INDEX tether_exchanges_parent ON tether_exchanges (parent_jti)',
    'CREATE TABLE tether_seen (namespace TEXT NOT NULL, id TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (namespace, id))',
    'CREATE TABLE tether_clients (client_id TEXT PRIMARY KEY, metadata TEXT NOT NULL)',
    'CREATE TABLE tether_certificates (client_id TEXT NOT NULL, thumbprint TEXT NOT NULL, expires_at BIGINT NOT NULL, PRIMARY KEY (client_id, thumbprint))',
    'CREATE TABLE tether_secrets (name TEXT PRIMARY KEY, value TEXT NOT NULL)',
  ],
];

/** The schema version this code reads and writes. */
export const SCHEMA_VERSION = MIGRATIONS.length;

async function currentVersion(tx: SqlSession): Promise<number> {
  await tx.query('CREATE TABLE IF NOT EXISTS tether_schema (version INTEGER NOT NULL)');
  const rows = await tx.query('SELECT version FROM tether_schema');
  if (rows.length === 0) {
    await tx.query('INSERT INTO tether_schema (version) VALUES (0)');
    return 0;
  }
  return Number(rows[0]?.version);
}

/** Bring the schema to {@link SCHEMA_VERSION}; resolves the version found before. */
export async function migrate(driver: SqlDriver, target = SCHEMA_VERSION): Promise<number> {
  return driver.transaction(async (tx) => {
    const found = await currentVersion(tx);
    if (found > target) {
      throw new StoreError('schema_too_new', `the store's schema is version ${found}, newer than this tether knows (${target}); run a newer tether or another database`);
    }
    for (let version = found + 1; version <= target; version++) {
      for (const statement of MIGRATIONS[version - 1] ?? []) await tx.query(statement);
      await tx.query('UPDATE tether_schema SET version = $1', [version]);
    }
    return found;
  }, 'schema');
}
