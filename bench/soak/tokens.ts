/**
 * The soak's tokens: a pool refreshed every min(20 s, lifetime / 3); each token lives
 * `tokenLifetime` seconds, so a token is never picked within a third of its lifetime of expiring.
 * A batch that runs long on a loaded machine swaps a token for a fresh one before sending it within
 * 10 s of its expiry (an honest client renews its tokens; one sent expired would be refused, and
 * rightly).
 */
import type { TestIssuer } from '../../test/helpers/issuer.js';

export class TokenPool {
  readonly #issuer: TestIssuer;
  readonly #cnf: unknown;
  readonly #size: number;
  readonly #lifetime: number;
  /** Token -> expiry (ms), for renewal; pruned at each mint. */
  readonly #expiresAt = new Map<string, number>();
  #pool: string[] = [];
  #mintedAt = 0;
  #minting: Promise<void> | undefined;

  private constructor(issuer: TestIssuer, cnf: unknown, size: number, lifetimeSeconds: number) {
    this.#issuer = issuer;
    this.#cnf = cnf;
    this.#size = size;
    this.#lifetime = lifetimeSeconds;
  }

  /** A pool of max(200, 2 x tokensPerConnection) tokens bound to `cnf`, minted before it is returned. */
  static async create(issuer: TestIssuer, cnf: unknown, tokensPerConnection: number, lifetimeSeconds: number): Promise<TokenPool> {
    const pool = new TokenPool(issuer, cnf, Math.max(200, tokensPerConnection * 2), lifetimeSeconds);
    pool.#pool = await pool.#mint();
    pool.#mintedAt = Date.now();
    return pool;
  }

  async #mint(): Promise<string[]> {
    const mintedAt = Date.now();
    const minted = await Promise.all(Array.from({ length: this.#size }, (_, i) => this.#issuer.mint({ cnf: this.#cnf, sub: `user-${i}` }, { expiresIn: this.#lifetime })));
    for (const [t, exp] of this.#expiresAt) if (exp < mintedAt) this.#expiresAt.delete(t);
    for (const t of minted) this.#expiresAt.set(t, mintedAt + this.#lifetime * 1000);
    return minted;
  }

  /** `token`, or a fresh one from the pool when `token` expires within 10 s. */
  renewed(token: string): string {
    return (this.#expiresAt.get(token) ?? 0) - Date.now() > 10_000 ? token : (this.#pool[Math.floor(Math.random() * this.#pool.length)] as string);
  }

  /** `n` tokens from the pool (spread out from a random start), refreshing it in the background when due. */
  async take(n: number): Promise<string[]> {
    const refreshMs = Math.min(20, this.#lifetime / 3) * 1000;
    if (Date.now() - this.#mintedAt > refreshMs && this.#minting === undefined) {
      this.#minting = this.#mint().then((p) => {
        this.#pool = p;
        this.#mintedAt = Date.now();
        this.#minting = undefined;
      });
    }
    if (this.#minting !== undefined && Date.now() - this.#mintedAt > 2 * refreshMs) await this.#minting;
    const out: string[] = [];
    const pool = this.#pool;
    const start = Math.floor(Math.random() * pool.length);
    for (let i = 0; i < n; i++) out.push(pool[(start + i * 7) % pool.length] as string);
    return out;
  }
}
