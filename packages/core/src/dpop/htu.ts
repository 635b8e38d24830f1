/**
 * `htu` comparison (RFC 9449 sections 4.2 and 4.3): scheme, authority and path of the target URI,
 * without query and fragment, after syntax-based and scheme-based normalization (RFC 3986
 * sections 6.2.2 and 6.2.3): case of scheme and host, default port, empty path as `/`, dot
 * segments, case of percent-encoding hex digits, and percent-encoded unreserved characters.
 */

const UNRESERVED = /^[A-Za-z0-9\-._~]$/;
// Whitespace, controls and backslashes are silently rewritten by WHATWG URL parsing; refuse them instead.
// eslint-disable-next-line no-control-regex
const UNSAFE = /[\u0000-\u0020\u007f\\]/;
const AUTHORITY = /^[A-Za-z0-9\-._~!$&'()*+,;=:%[\]]+$/;

function normalizePercentEncoding(path: string): string {
  return path.replace(/%([0-9A-Fa-f]{2})/g, (_m, hex: string) => {
    const ch = String.fromCharCode(parseInt(hex, 16));
    return UNRESERVED.test(ch) ? ch : `%${hex.toUpperCase()}`;
  });
}

/** Recent normalizations (a client sends the same `htu` on every request): value -> result. */
const normalized = new Map<string, string | null>();
const NORMALIZED_ENTRIES = 256;

/**
 * Normalize an absolute `http`/`https` URI to `scheme://authority/path` (no userinfo, query or
 * fragment). Returns `undefined` for anything else, including relative references. A pure
 * function of `value`; the most recent results are remembered (bounded).
 */
export function normalizeHtu(value: string): string | undefined {
  if (typeof value !== 'string') return undefined;
  const known = normalized.get(value);
  if (known !== undefined) return known ?? undefined;
  const result = normalizeUncached(value);
  if (normalized.size >= NORMALIZED_ENTRIES) normalized.delete(normalized.keys().next().value as string);
  normalized.set(value, result ?? null);
  return result;
}

function normalizeUncached(value: string): string | undefined {
  if (value.length === 0 || value.length > 4096 || UNSAFE.test(value)) return undefined;
  let url: URL;
  try {
    url = new URL(value);
  } catch {
    return undefined;
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') return undefined;
  if (url.username !== '' || url.password !== '' || url.host === '') return undefined;
  return `${url.protocol}//${url.host}${normalizePercentEncoding(url.pathname)}`;
}

/**
 * The normalized target URI of a request from its scheme, authority (`Host` / `:authority`) and
 * origin-form request-target. `undefined` when they do not form one.
 */
export function requestHtu(scheme: string, authority: string, path: string): string | undefined {
  if (!AUTHORITY.test(authority) || !path.startsWith('/')) return undefined;
  return normalizeHtu(`${scheme}://${authority}${path}`);
}

/** Whether the `htu` claim names the request target (both normalized; query and fragment ignored). */
export function dpopHtuMatches(htu: string, requestUri: string): boolean {
  const claimed = normalizeHtu(htu);
  const actual = normalizeHtu(requestUri);
  return claimed !== undefined && actual !== undefined && claimed === actual;
}
