/** One HTTPS request with a deadline, trusting only the given CA, and the cookie jar a browser would keep for one origin. */
import { request } from 'node:https';
import type { IncomingHttpHeaders } from 'node:http';

export interface HttpsAnswer {
  status: number;
  headers: IncomingHttpHeaders;
  body: string;
}

const MAX_BODY_BYTES = 1 << 20;

export function httpsCall(url: URL, options: { ca: string | Buffer; timeoutMs: number; method?: string; headers?: Record<string, string>; body?: string }): Promise<HttpsAnswer> {
  return new Promise((resolve, reject) => {
    const req = request(url, { method: options.method ?? 'GET', ca: options.ca, headers: options.headers, agent: false });
    const timer = setTimeout(() => req.destroy(new Error(`${options.method ?? 'GET'} ${url.origin}${url.pathname}: no answer within ${options.timeoutMs} ms`)), options.timeoutMs);
    req.on('response', (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on('data', (chunk: Buffer) => {
        size += chunk.length;
        if (size > MAX_BODY_BYTES) req.destroy(new Error('answer too large'));
        else chunks.push(chunk);
      });
      res.on('end', () => {
        clearTimeout(timer);
        resolve({ status: res.statusCode ?? 0, headers: res.headers, body: Buffer.concat(chunks).toString('utf8') });
      });
      res.on('error', reject);
    });
    req.on('error', (error) => {
      clearTimeout(timer);
      reject(error);
    });
    req.end(options.body);
  });
}

/** Cookies of one origin by name, with their paths (RFC 6265 path matching; expiry only as deletion). */
export class CookieJar {
  readonly #cookies = new Map<string, { value: string; path: string }>();

  store(setCookie: string[] | undefined): void {
    for (const line of setCookie ?? []) {
      const [pair = '', ...attributes] = line.split(';').map((s) => s.trim());
      const eq = pair.indexOf('=');
      if (eq <= 0) continue;
      const name = pair.slice(0, eq);
      const attr = new Map(attributes.map((a) => [a.split('=')[0]?.toLowerCase() ?? '', a.slice(a.indexOf('=') + 1)]));
      const expires = attr.get('expires');
      const deleted = attr.get('max-age') === '0' || (expires !== undefined && Date.parse(expires) <= Date.now());
      if (deleted) this.#cookies.delete(name);
      else this.#cookies.set(name, { value: pair.slice(eq + 1), path: attr.get('path') ?? '/' });
    }
  }

  header(path: string): string {
    const matches = [...this.#cookies].filter(([, c]) => path === c.path || path.startsWith(c.path.endsWith('/') ? c.path : `${c.path}/`));
    return matches.map(([name, c]) => `${name}=${c.value}`).join('; ');
  }
}
