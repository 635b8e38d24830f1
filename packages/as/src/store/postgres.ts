/**
 * PostgreSQL engine through `pg` (node-postgres): a small pool, every statement bounded by
 * `statement_timeout`, connections by `connectionTimeoutMillis`. Commits are durable under
 * PostgreSQL's default `synchronous_commit = on`. Store-wide locks are transaction-level advisory
 * locks (`pg_advisory_xact_lock`), released by commit, rollback, or the end of a killed
 * instance's connection.
 */
import { createHash } from 'node:crypto';
import pg from 'pg';
import { StoreError } from './contract.js';
import type { Row, SqlDriver, SqlSession } from './driver.js';

const INT8_OID = 20;

export interface PostgresDriverOptions {
  /** Connections in the pool (default 10). */
  max?: number;
  /** Longest wait for a connection and for one statement, milliseconds (default 10 000). */
  timeoutMs?: number;
}

/** `postgres://user@host:port/db`, the password left out. */
export function redactedUrl(url: string): string {
  try {
    const u = new URL(url);
    u.password = '';
    return u.toString();
  } catch {
    return 'postgres://(unparsable URL)';
  }
}

const names = new Map<string, string>();

/**
 * A named statement: each connection parses it once and afterwards only binds and executes it
 * (the store issues a small, fixed set of statements).
 */
function prepared(sql: string, params: readonly unknown[]): pg.QueryConfig {
  let name = names.get(sql);
  if (name === undefined) {
    name = `tether_${createHash('sha256').update(sql).digest('hex').slice(0, 16)}`;
    names.set(sql, name);
  }
  return { name, text: sql, values: params as unknown[] };
}

export class PostgresDriver implements SqlDriver {
  readonly engine = 'postgres' as const;
  readonly description: string;
  readonly #pool: pg.Pool;
  #closed = false;

  constructor(url: string, options: PostgresDriverOptions = {}) {
    const timeout = options.timeoutMs ?? 10_000;
    this.description = redactedUrl(url);
    this.#pool = new pg.Pool({
      connectionString: url,
      max: options.max ?? 10,
      connectionTimeoutMillis: timeout,
      statement_timeout: timeout,
      query_timeout: timeout + 1000,
      idleTimeoutMillis: 30_000,
      application_name: 'tether-as',
      // Epoch seconds are BIGINT: read them as numbers, not strings.
      types: { getTypeParser: ((oid: number, format?: 'text' | 'binary') => (oid === INT8_OID ? Number : pg.types.getTypeParser(oid, format as 'text'))) as never },
    });
    // An idle connection that breaks (server restart) is dropped by the pool; the next query reconnects.
    this.#pool.on('error', () => undefined);
  }

  async #call<T>(what: () => Promise<T>): Promise<T> {
    if (this.#closed) throw new StoreError('store_closed', 'the store is closed');
    try {
      return await what();
    } catch (error) {
      if (error instanceof StoreError) throw error;
      const code = (error as { code?: string }).code;
      // A PostgreSQL SQLSTATE is five characters; anything else is a connection problem.
      if (code !== undefined && /^[0-9A-Z]{5}$/.test(code)) throw error;
      throw new StoreError('store_unavailable', `PostgreSQL at ${this.description} is unavailable: ${(error as Error).message}`, { cause: error });
    }
  }

  query(sql: string, params: readonly unknown[] = []): Promise<Row[]> {
    return this.#call(async () => (await this.#pool.query(prepared(sql, params))).rows as Row[]);
  }

  transaction<T>(task: (tx: SqlSession) => Promise<T>, lock?: string): Promise<T> {
    return this.#call(async () => {
      const client = await this.#pool.connect();
      let broken: unknown;
      try {
        await client.query('BEGIN');
        if (lock !== undefined) await client.query('SELECT pg_advisory_xact_lock(hashtext($1))', [`tether:${lock}`]);
        const result = await task({ query: async (sql, params = []) => (await client.query(prepared(sql, params))).rows as Row[] });
        await client.query('COMMIT');
        return result;
      } catch (error) {
        await client.query('ROLLBACK').catch((rollbackError: unknown) => (broken = rollbackError));
        throw error;
      } finally {
        client.release(broken as Error | undefined);
      }
    });
  }

  async close(): Promise<void> {
    if (this.#closed) return;
    this.#closed = true;
    await this.#pool.end();
  }
}
