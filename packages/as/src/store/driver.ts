/**
 * The little an engine must provide for {@link SqlStore}: parameterised queries and transactions.
 * SQL is written once, in the dialect PostgreSQL and SQLite share (`$1` placeholders, `ON
 * CONFLICT`, `RETURNING`, recursive CTEs); each driver adapts placeholders if it must.
 */
export type Row = Record<string, unknown>;

export interface SqlSession {
  query(sql: string, params?: readonly unknown[]): Promise<Row[]>;
}

export interface SqlDriver extends SqlSession {
  readonly engine: 'sqlite' | 'postgres';
  /** Where the data lives, without credentials. */
  readonly description: string;
  /**
   * Run `task` in one transaction. With `lock`, the transaction first takes that store-wide lock
   * (PostgreSQL: a transaction-level advisory lock; SQLite: the database write lock), so tasks
   * with the same lock run one at a time across every process on the store.
   */
  transaction<T>(task: (tx: SqlSession) => Promise<T>, lock?: string): Promise<T>;
  close(): Promise<void>;
}
