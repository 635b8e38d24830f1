/**
 * {@link Store} on a SQL engine (PostgreSQL or SQLite through a {@link SqlDriver}): one set of
 * statements for both. Every write is its own committed statement or transaction, so it is
 * durable when its promise resolves (PostgreSQL `synchronous_commit`, SQLite WAL with
 * `synchronous=FULL`). Nothing is cached here: two processes on one database see each other's
 * writes at once.
 *
 * Revocation cascades (RFC 7009 and RFC 8693 leave it to the AS): each exchanged token's parent
 * is recorded before the token is issued, and a token counts as revoked when it or any ancestor
 * is. Checking up the chain at read time, rather than copying the revocation down the chain at
 * revocation time, cannot miss a successor issued while the revocation runs.
 */
import type { ClientMetadata } from '../config.js';
import { StoreError, type KeySetChange, type Store, type StoredKey } from './contract.js';
import type { Row, SqlDriver, SqlSession } from './driver.js';
import { migrate } from './migrations.js';
import { isSealed, type KeyEncryptionKey } from './seal.js';

/** How a key is written: the private JWK as JSON text, sealed under the KEK when there is one. */
interface KeyRecord extends Omit<StoredKey, 'privateJwk'> {
  private: string;
}

const REVOKED_UP_THE_CHAIN = `
  WITH RECURSIVE chain (jti) AS (
    SELECT CAST($1 AS TEXT)
    UNION
    SELECT e.parent_jti FROM tether_exchanges e JOIN chain c ON e.child_jti = c.jti
  )
  SELECT 1 AS revoked FROM tether_revocations r JOIN chain c ON r.jti = c.jti LIMIT 1`;

export interface SqlStoreOptions {
  /** Seals private keys and shared secrets at rest. */
  kek?: KeyEncryptionKey;
}

export class SqlStore implements Store {
  readonly #db: SqlDriver;
  readonly #kek: KeyEncryptionKey | undefined;
  #opened = false;

  constructor(driver: SqlDriver, options: SqlStoreOptions = {}) {
    this.#db = driver;
    this.#kek = options.kek;
  }

  get description(): string {
    return this.#db.description;
  }

  get engine(): SqlDriver['engine'] {
    return this.#db.engine;
  }

  /** Migrate, then read every sealed value once: a wrong or missing KEK fails here, at start. */
  async open(): Promise<void> {
    if (this.#opened) return;
    try {
      await migrate(this.#db);
      await this.#checkSealing();
    } catch (error) {
      await this.#db.close().catch(() => undefined);
      throw error;
    }
    this.#opened = true;
  }

  async close(): Promise<void> {
    this.#opened = false;
    await this.#db.close();
  }

  /** Values written before a KEK was configured are sealed now. */
  async #checkSealing(): Promise<void> {
    const rows = await this.#db.query('SELECT kid, record FROM tether_signing_keys');
    const plain = rows.filter((r) => !isSealed((JSON.parse(String(r.record)) as KeyRecord).private));
    for (const row of rows) this.#toKey(row);
    for (const row of await this.#db.query('SELECT name, value FROM tether_secrets')) this.#unseal(String(row.value), `secret ${String(row.name)}`);
    if (this.#kek !== undefined && plain.length > 0) await this.updateKeys(async (keys) => keys);
  }

  #seal(text: string, name: string): string {
    return this.#kek === undefined ? text : this.#kek.seal(text, name);
  }

  #unseal(text: string, name: string): string {
    if (!isSealed(text)) return text;
    if (this.#kek === undefined) throw new StoreError('kek_missing', `the store holds values sealed under a key-encryption key (${name}); configure keyEncryption`);
    return this.#kek.open(text, name);
  }

  #toKey(row: Row): StoredKey {
    const { private: sealed, ...rest } = JSON.parse(String(row.record)) as KeyRecord;
    return { ...rest, privateJwk: JSON.parse(this.#unseal(sealed, `signing key ${rest.kid}`)) as StoredKey['privateJwk'] };
  }

  async #readKeys(session: SqlSession): Promise<StoredKey[]> {
    return (await session.query('SELECT record FROM tether_signing_keys ORDER BY kid')).map((row) => this.#toKey(row));
  }

  listKeys(): Promise<StoredKey[]> {
    return this.#readKeys(this.#db);
  }

  updateKeys(change: KeySetChange): Promise<StoredKey[]> {
    return this.#db.transaction(async (tx) => {
      const stored = await this.#readKeys(tx);
      const next = await change(structuredClone(stored));
      if (next === undefined) return stored;
      await tx.query('DELETE FROM tether_signing_keys');
      for (const { privateJwk, ...rest } of next) {
        const record: KeyRecord = { ...rest, private: this.#seal(JSON.stringify(privateJwk), `signing key ${rest.kid}`) };
        await tx.query('INSERT INTO tether_signing_keys (kid, record) VALUES ($1, $2)', [rest.kid, JSON.stringify(record)]);
      }
      return structuredClone(next);
    }, 'keys');
  }

  async revoke(jti: string, expiresAt: number): Promise<void> {
    await this.#db.query(
      `INSERT INTO tether_revocations (jti, expires_at) VALUES ($1, $2)
       ON CONFLICT (jti) DO UPDATE SET expires_at = CASE WHEN excluded.expires_at > tether_revocations.expires_at THEN excluded.expires_at ELSE tether_revocations.expires_at END`,
      [jti, expiresAt],
    );
  }

  async isRevoked(jti: string): Promise<boolean> {
    return (await this.#db.query(REVOKED_UP_THE_CHAIN, [jti])).length > 0;
  }

  async recordExchange(parentJti: string, childJti: string, expiresAt: number): Promise<void> {
    await this.#db.query('INSERT INTO tether_exchanges (child_jti, parent_jti, expires_at) VALUES ($1, $2, $3)', [childJti, parentJti, expiresAt]);
  }

  async listClients(): Promise<ClientMetadata[]> {
    return (await this.#db.query('SELECT metadata FROM tether_clients ORDER BY client_id')).map((r) => JSON.parse(String(r.metadata)) as ClientMetadata);
  }

  async putClient(metadata: ClientMetadata): Promise<void> {
    await this.#db.query('INSERT INTO tether_clients (client_id, metadata) VALUES ($1, $2) ON CONFLICT (client_id) DO UPDATE SET metadata = excluded.metadata', [
      metadata.client_id,
      JSON.stringify(metadata),
    ]);
  }

  async deleteClient(clientId: string): Promise<boolean> {
    return (await this.#db.query('DELETE FROM tether_clients WHERE client_id = $1 RETURNING client_id', [clientId])).length > 0;
  }

  async rememberOnce(namespace: string, id: string, expiresAt: number): Promise<boolean> {
    const rows = await this.#db.query('INSERT INTO tether_seen (namespace, id, expires_at) VALUES ($1, $2, $3) ON CONFLICT (namespace, id) DO NOTHING RETURNING id', [
      namespace,
      id,
      expiresAt,
    ]);
    return rows.length > 0;
  }

  async observeCertificate(clientId: string, thumbprint: string, expiresAt: number): Promise<void> {
    await this.#db.query(
      'INSERT INTO tether_certificates (client_id, thumbprint, expires_at) VALUES ($1, $2, $3) ON CONFLICT (client_id, thumbprint) DO UPDATE SET expires_at = excluded.expires_at',
      [clientId, thumbprint, expiresAt],
    );
  }

  async observedCertificates(clientId: string): Promise<string[]> {
    return (await this.#db.query('SELECT thumbprint FROM tether_certificates WHERE client_id = $1 ORDER BY thumbprint', [clientId])).map((r) => String(r.thumbprint));
  }

  async sharedSecret(name: string, create: () => Buffer): Promise<Buffer> {
    const label = `secret ${name}`;
    await this.#db.query('INSERT INTO tether_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING', [name, this.#seal(create().toString('base64url'), label)]);
    const rows = await this.#db.query('SELECT value FROM tether_secrets WHERE name = $1', [name]);
    return Buffer.from(this.#unseal(String(rows[0]?.value), label), 'base64url');
  }

  async prune(now: number): Promise<void> {
    for (const table of ['tether_revocations', 'tether_exchanges', 'tether_seen', 'tether_certificates']) {
      await this.#db.query(`DELETE FROM ${table} WHERE expires_at < $1`, [now]);
    }
  }
}
