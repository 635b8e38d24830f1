/**
 * SQLite engine (the embedded default): one connection, WAL journal, `synchronous=FULL` (a commit
 * is on disk before it resolves), and `locking_mode=EXCLUSIVE`: the first process keeps the
 * database to itself until it closes or dies, and a second one is refused at start with a clear
 * error (several instances share a PostgreSQL database instead). The file is created mode 0600
 * (SQLite gives its -wal and -shm files the same mode): it holds the signing keys.
 * The binding is `better-sqlite3` where its native addon loads (Node 20), else Node's own
 * `node:sqlite` (Node 22.13 and later), so a Node upgrade never strands a data directory behind
 * an addon built for another Node ABI. Statements run one at a time on the connection: a
 * transaction's statements are never interleaved with another caller's.
 *
 * Group commit: both bindings are synchronous, so an fsync blocks the event loop (~1.5 ms here).
 * Single statements issued in the same turn of the event loop run together in one transaction,
 * one fsync for all of them; each resolves (or rejects, alone) once that transaction committed.
 */
import { createRequire } from 'node:module';
import { closeSync, mkdirSync, openSync } from 'node:fs';
import { dirname } from 'node:path';
import { StoreError } from './contract.js';
import type { Row, SqlDriver, SqlSession } from './driver.js';

interface Statement {
  all(params: readonly unknown[]): Row[];
}
interface Connection {
  readonly binding: string;
  exec(sql: string): void;
  prepare(sql: string): Statement;
  close(): void;
}

const require = createRequire(import.meta.url);

function betterSqlite3(path: string): Connection | undefined {
  let Database: new (path: string) => {
    exec(sql: string): unknown;
    prepare(sql: string): { reader: boolean; all(...p: unknown[]): Row[]; run(...p: unknown[]): unknown };
    close(): unknown;
  };
  try {
    Database = require('better-sqlite3') as typeof Database;
    const db = new Database(path);
    return {
      binding: 'better-sqlite3',
      exec: (sql) => void db.exec(sql),
      prepare: (sql) => {
        const s = db.prepare(sql);
        return { all: (p) => (s.reader ? s.all(...p) : (s.run(...p), [])) };
      },
      close: () => void db.close(),
    };
  } catch (error) {
    // Not installed, or its addon was built for another Node: use node:sqlite when there is one.
    if ((error as { code?: string }).code === 'SQLITE_CANTOPEN') throw error;
    return undefined;
  }
}

function nodeSqlite(path: string): Connection | undefined {
  const builtin = (process as { getBuiltinModule?: (id: string) => unknown }).getBuiltinModule?.('node:sqlite') as
    | { DatabaseSync: new (path: string) => { exec(sql: string): void; prepare(sql: string): { all(...p: unknown[]): Row[] }; close(): void } }
    | undefined;
  if (builtin === undefined) return undefined;
  const db = new builtin.DatabaseSync(path);
  return { binding: 'node:sqlite', exec: (sql) => db.exec(sql), prepare: (sql) => ({ all: (p) => db.prepare(sql).all(...p) }), close: () => db.close() };
}

/**
 * `$n` placeholders become anonymous `?` (the form both bindings accept), with the parameter
 * order that follows from where each `$n` appears.
 */
function placeholders(sql: string): { text: string; order: number[] } {
  const order: number[] = [];
  const text = sql.replace(/\$(\d+)/g, (_match, n: string) => {
    order.push(Number(n) - 1);
    return '?';
  });
  return { text, order };
}

export class SqliteDriver implements SqlDriver {
  readonly engine = 'sqlite' as const;
  readonly description: string;
  readonly #db: Connection;
  readonly #statements = new Map<string, { statement: Statement; order: number[] }>();
  #tail: Promise<unknown> = Promise.resolve();
  #closed = false;
  /** Statements waiting for the next group commit. */
  #batch: Array<{ sql: string; params: readonly unknown[] | undefined; resolve(rows: Row[]): void; reject(error: unknown): void }> | undefined;

  constructor(path: string) {
    try {
      if (path !== ':memory:') {
        mkdirSync(dirname(path), { recursive: true, mode: 0o700 });
        closeSync(openSync(path, 'a', 0o600));
      }
      const db = betterSqlite3(path) ?? nodeSqlite(path);
      if (db === undefined) throw new Error('neither better-sqlite3 nor node:sqlite is available (install better-sqlite3, or run Node 22.13 or later)');
      this.#db = db;
      try {
        // The exclusive lock is taken by the first write: BEGIN IMMEDIATE takes it now.
        db.exec('PRAGMA locking_mode = EXCLUSIVE; PRAGMA busy_timeout = 0; PRAGMA journal_mode = WAL; PRAGMA synchronous = FULL; BEGIN IMMEDIATE; COMMIT');
      } catch (error) {
        db.close();
        throw error;
      }
    } catch (cause) {
      const message = (cause as Error).message;
      if (/locked|busy/i.test(message)) {
        throw new StoreError('store_locked', `SQLite database ${path} is in use by another process (the embedded store serves one instance; run several on PostgreSQL)`, { cause });
      }
      throw new StoreError('store_unavailable', `cannot open SQLite database ${path}: ${message}`, { cause });
    }
    this.description = `sqlite:${path} (${this.#db.binding})`;
  }

  #execute(sql: string, params: readonly unknown[] = []): Row[] {
    let prepared = this.#statements.get(sql);
    if (prepared === undefined) {
      const { text, order } = placeholders(sql);
      prepared = { statement: this.#db.prepare(text), order };
      this.#statements.set(sql, prepared);
    }
    return prepared.statement.all(prepared.order.map((i) => params[i]));
  }

  /** One operation at a time on the connection, in call order. */
  #serial<T>(operation: () => T | Promise<T>): Promise<T> {
    if (this.#closed) return Promise.reject(new StoreError('store_closed', 'the store is closed'));
    const run = this.#tail.then(operation);
    this.#tail = run.catch(() => undefined);
    return run;
  }

  query(sql: string, params?: readonly unknown[]): Promise<Row[]> {
    if (this.#closed) return Promise.reject(new StoreError('store_closed', 'the store is closed'));
    return new Promise((resolve, reject) => {
      if (this.#batch === undefined) {
        this.#batch = [];
        setImmediate(() => void this.#commitBatch());
      }
      this.#batch.push({ sql, params, resolve, reject });
    });
  }

  /** Run the waiting statements in one transaction; a failing statement rejects alone. */
  #commitBatch(): Promise<void> {
    const batch = this.#batch ?? [];
    this.#batch = undefined;
    return this.#serial(() => {
      const outcomes: Array<{ ok: true; rows: Row[] } | { ok: false; error: unknown }> = [];
      try {
        this.#db.exec('BEGIN IMMEDIATE');
        for (const { sql, params } of batch) {
          try {
            outcomes.push({ ok: true, rows: this.#execute(sql, params) });
          } catch (error) {
            outcomes.push({ ok: false, error });
          }
        }
        this.#db.exec('COMMIT');
      } catch (error) {
        try {
          this.#db.exec('ROLLBACK');
        } catch {
          // no transaction left to roll back
        }
        for (const item of batch) item.reject(error);
        return;
      }
      batch.forEach((item, i) => {
        const outcome = outcomes[i] as (typeof outcomes)[number];
        if (outcome.ok) item.resolve(outcome.rows);
        else item.reject(outcome.error);
      });
    });
  }

  transaction<T>(task: (tx: SqlSession) => Promise<T>): Promise<T> {
    return this.#serial(async () => {
      // IMMEDIATE takes the database write lock at once: one writer across processes.
      this.#db.exec('BEGIN IMMEDIATE');
      try {
        const result = await task({ query: async (sql, params) => this.#execute(sql, params) });
        this.#db.exec('COMMIT');
        return result;
      } catch (error) {
        this.#db.exec('ROLLBACK');
        throw error;
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    if (this.#batch !== undefined) await this.#commitBatch();
    await this.#tail;
    this.#closed = true;
    this.#statements.clear();
    this.#db.close();
  }
}
