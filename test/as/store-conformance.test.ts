/**
 * The store contract, run against every engine: SQLite (a temporary file) and PostgreSQL (a real
 * server from Debian's package, one per run of this file, a fresh database per test).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { after, before, describe, test } from 'node:test';
import { join } from 'node:path';
import { KeyEncryptionKey, PostgresDriver, SqlStore, SqliteDriver, StoreError, type SqlDriver, type StoredKey } from '@tether/as';
import { startPostgres, type PostgresServer } from '../helpers/postgres.js';
import { removeDir, tempDir } from './helpers/setup.js';

interface Engine {
  name: string;
  /** A new, empty database; `driver()` opens one more connection to it. */
  fresh(): Promise<{ driver: () => SqlDriver }>;
}

const dirs: string[] = [];
let postgres: PostgresServer | undefined;
let databases = 0;

const engines: Engine[] = [
  {
    name: 'sqlite',
    async fresh() {
      const dir = tempDir('tether-store-');
      dirs.push(dir);
      return { driver: () => new SqliteDriver(join(dir, 'tether.db')) };
    },
  },
  {
    name: 'postgres',
    async fresh() {
      postgres ??= await startPostgres();
      const url = await postgres.createDatabase(`conformance_${++databases}`);
      return { driver: () => new PostgresDriver(url, { max: 4 }) };
    },
  },
];

after(async () => {
  await postgres?.stop();
  for (const dir of dirs) removeDir(dir);
});

function key(kid: string, state: StoredKey['state'] = 'active'): StoredKey {
  return {
    kid,
    alg: 'ES256',
    privateJwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', d: `secret-${kid}` },
    publicJwk: { kty: 'EC', crv: 'P-256', x: 'x', y: 'y', kid },
    createdAt: 1000,
    state,
    maxTokenLifetime: 300,
  };
}

async function opened(driver: SqlDriver, kek?: KeyEncryptionKey): Promise<SqlStore> {
  const store = new SqlStore(driver, kek === undefined ? {} : { kek });
  await store.open();
  return store;
}

for (const engine of engines) {
  describe(`store contract: ${engine.name}`, () => {
    let db: { driver: () => SqlDriver };
    let store: SqlStore;
    before(async () => {
      db = await engine.fresh();
      store = await opened(db.driver());
    });
    after(async () => store.close());

    test('signing keys: updateKeys writes the set, undefined keeps it, listKeys reads it back', async () => {
      assert.deepEqual(await store.listKeys(), []);
      const written = await store.updateKeys(async (stored) => {
        assert.deepEqual(stored, []);
        return [key('k1'), key('k2', 'next')];
      });
      assert.deepEqual(written.map((k) => k.kid), ['k1', 'k2']);
      const kept = await store.updateKeys(async () => undefined);
      assert.deepEqual(kept, await store.listKeys());
      assert.deepEqual((await store.listKeys()).find((k) => k.kid === 'k1'), key('k1'));
      await store.updateKeys(async (stored) => stored.filter((k) => k.kid !== 'k1'));
      assert.deepEqual((await store.listKeys()).map((k) => k.kid), ['k2']);
    });

    test('a failing change leaves the key set as it was', async () => {
      const before = await store.listKeys();
      await assert.rejects(store.updateKeys(async () => Promise.reject(new Error('boom'))), /boom/);
      assert.deepEqual(await store.listKeys(), before);
    });

    test('revocation until expiry; pruning forgets what expired', async () => {
      assert.equal(await store.isRevoked('r1'), false);
      await store.revoke('r1', 100);
      await store.revoke('r1', 180); // extends
      await store.revoke('r1', 50); // never shortens
      await store.revoke('r2', 200);
      assert.equal(await store.isRevoked('r1'), true);
      await store.prune(150);
      assert.equal(await store.isRevoked('r1'), true, 'kept until its later expiry');
      await store.prune(181);
      assert.equal(await store.isRevoked('r1'), false);
      assert.equal(await store.isRevoked('r2'), true);
    });

    test('revocation cascades down the exchange chain, not up', async () => {
      await store.recordExchange('root', 'child', 10_000);
      await store.recordExchange('child', 'grandchild', 10_000);
      await store.recordExchange('root', 'sibling', 10_000);
      await store.revoke('child', 10_000);
      assert.equal(await store.isRevoked('child'), true);
      assert.equal(await store.isRevoked('grandchild'), true, 'successor of a revoked token');
      assert.equal(await store.isRevoked('root'), false, 'the parent stays valid');
      assert.equal(await store.isRevoked('sibling'), false);
      await store.revoke('root', 10_000);
      assert.equal(await store.isRevoked('sibling'), true);
    });

    test('rememberOnce: the first use wins, a replay is refused, expiry is forgotten on prune', async () => {
      assert.equal(await store.rememberOnce('dpop', 'j1', 100), true);
      assert.equal(await store.rememberOnce('dpop', 'j1', 100), false);
      assert.equal(await store.rememberOnce('proof', 'j1', 100), true, 'namespaces are separate');
      const results = await Promise.all(Array.from({ length: 20 }, () => store.rememberOnce('race', 'same', 100)));
      assert.equal(results.filter(Boolean).length, 1, 'of concurrent uses exactly one wins');
      await store.prune(101);
      assert.equal(await store.rememberOnce('dpop', 'j1', 300), true);
    });

    test('clients and observed certificates', async () => {
      await store.putClient({ client_id: 'c1', token_endpoint_auth_method: 'private_key_jwt' });
      await store.putClient({ client_id: 'c1', token_endpoint_auth_method: 'tls_client_auth' });
      assert.deepEqual(await store.listClients(), [{ client_id: 'c1', token_endpoint_auth_method: 'tls_client_auth' }]);
      assert.equal(await store.deleteClient('c1'), true);
      assert.equal(await store.deleteClient('c1'), false);
      await store.observeCertificate('c1', 'T1', 100);
      await store.observeCertificate('c1', 'T2', 300);
      assert.deepEqual(await store.observedCertificates('c1'), ['T1', 'T2']);
      await store.prune(200);
      assert.deepEqual(await store.observedCertificates('c1'), ['T2']);
    });

    test('a shared secret is created once, then read', async () => {
      const first = await store.sharedSecret('nonce', () => randomBytes(32));
      assert.equal(first.length, 32);
      assert.deepEqual(await store.sharedSecret('nonce', () => randomBytes(32)), first);
    });

    test('migrations: reopening is a no-op; a newer schema is refused', async () => {
      const fresh = await engine.fresh();
      const first = await opened(fresh.driver());
      await first.close();
      const again = await opened(fresh.driver());
      await again.close();
      const raw = fresh.driver();
      await raw.query('UPDATE tether_schema SET version = 99');
      await raw.close();
      await assert.rejects(opened(fresh.driver()), (e: unknown) => e instanceof StoreError && e.code === 'schema_too_new' && /version 99/.test(e.message));
    });
  });

  describe(`key sealing: ${engine.name}`, () => {
    test('private keys are sealed at rest; a wrong or missing KEK fails at open', async () => {
      const db = await engine.fresh();
      const kek = new KeyEncryptionKey(randomBytes(32));
      const store = await opened(db.driver(), kek);
      await store.updateKeys(async () => [key('s1')]);
      assert.deepEqual((await store.listKeys())[0], key('s1'));
      await store.close();
      const raw = db.driver();
      const [row] = await raw.query('SELECT record FROM tether_signing_keys');
      await raw.close();
      assert.doesNotMatch(String(row?.record), /secret-s1/, 'the private key is not stored in the clear');
      await assert.rejects(opened(db.driver(), new KeyEncryptionKey(randomBytes(32))), (e: unknown) => e instanceof StoreError && e.code === 'kek_mismatch');
      await assert.rejects(opened(db.driver()), (e: unknown) => e instanceof StoreError && e.code === 'kek_missing');
      const again = await opened(db.driver(), kek);
      assert.deepEqual((await again.listKeys())[0], key('s1'));
      await again.close();
    });

    test('keys written before a KEK was configured are sealed when one is', async () => {
      const db = await engine.fresh();
      const plain = await opened(db.driver());
      await plain.updateKeys(async () => [key('p1')]);
      await plain.close();
      const kek = new KeyEncryptionKey(randomBytes(32));
      const sealed = await opened(db.driver(), kek);
      assert.deepEqual((await sealed.listKeys())[0], key('p1'));
      await sealed.close();
      await assert.rejects(opened(db.driver()), (e: unknown) => e instanceof StoreError && e.code === 'kek_missing');
    });
  });
}

describe('store contract: one engine', () => {
  test('sqlite: a second connection (another process, another server) on the same database is refused at open, clearly', async () => {
    const db = await engines[0]!.fresh();
    const first = await opened(db.driver());
    try {
      assert.throws(() => db.driver(), (e: unknown) => e instanceof StoreError && e.code === 'store_locked' && /in use by another process/.test(e.message));
    } finally {
      await first.close();
    }
    const again = await opened(db.driver());
    await again.close();
  });

  test('postgres: a shared secret created by one connection is read by another', async () => {
    const db = await engines[1]!.fresh();
    const a = await opened(db.driver());
    const b = await opened(db.driver());
    try {
      const [x, y] = await Promise.all([a.sharedSecret('nonce', () => randomBytes(32)), b.sharedSecret('nonce', () => randomBytes(32))]);
      assert.deepEqual(x, y);
    } finally {
      await a.close();
      await b.close();
    }
  });

  test('postgres: updateKeys runs one at a time across connections (the key lock)', async () => {
    const db = await engines[1]!.fresh();
    const a = await opened(db.driver());
    const b = await opened(db.driver());
    try {
      const append = (store: SqlStore, kid: string) =>
        store.updateKeys(async (stored) => {
          await new Promise((resolve) => setTimeout(resolve, 50));
          return [...stored, key(kid, 'retired')];
        });
      await Promise.all([append(a, 'a1'), append(b, 'b1'), append(a, 'a2'), append(b, 'b2')]);
      assert.deepEqual((await a.listKeys()).map((k) => k.kid).sort(), ['a1', 'a2', 'b1', 'b2'], 'no update lost');
    } finally {
      await a.close();
      await b.close();
    }
  });
});
