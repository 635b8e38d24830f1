/**
 * Subject Alternative Name matching for RFC 8705 `tls_client_auth_san_*`.
 *
 * Reads Node's `X509Certificate.subjectAltName` rendering: entries `DNS:`, `URI:`, `email:`,
 * `IP Address:`, `DirName:`, `othername:`, `Registered ID:` joined by `, `. Since the fix for
 * CVE-2021-44532, Node writes any value containing a separator, quote or non-printable character as a
 * JSON string (`URI:"http://a\u002cb"`), so splitting on `, ` outside quotes is unambiguous. IP
 * addresses are compared with `X509Certificate.checkIP` (OpenSSL), which handles IPv6 forms.
 */
import { isIP } from 'node:net';
import type { X509Certificate } from 'node:crypto';

export interface SanEntry {
  kind: string;
  value: string;
}

/** Parse Node's SAN string. Returns `undefined` when it cannot be read (then nothing matches). */
export function parseSubjectAltName(text: string | undefined): SanEntry[] | undefined {
  if (text === undefined || text === '') return [];
  const out: SanEntry[] = [];
  let i = 0;
  while (i < text.length) {
    const colon = text.indexOf(':', i);
    if (colon < 0) return undefined;
    const kind = text.slice(i, colon);
    let j = colon + 1;
    let value: string;
    if (text[j] === '"') {
      // A JSON string: find the closing quote that is not escaped.
      let k = j + 1;
      for (; k < text.length; k++) {
        if (text[k] === '\\') k++;
        else if (text[k] === '"') break;
      }
      if (k >= text.length) return undefined;
      try {
        value = JSON.parse(text.slice(j, k + 1)) as string;
      } catch {
        return undefined;
      }
      j = k + 1;
    } else {
      const end = text.indexOf(', ', j);
      value = text.slice(j, end < 0 ? text.length : end);
      j = end < 0 ? text.length : end;
    }
    out.push({ kind, value });
    if (j >= text.length) break;
    if (text.slice(j, j + 2) !== ', ') return undefined;
    i = j + 2;
  }
  return out;
}

function sanValues(certificate: X509Certificate, kind: string): string[] | undefined {
  const entries = parseSubjectAltName(certificate.subjectAltName);
  return entries?.filter((e) => e.kind === kind).map((e) => e.value);
}

/** dNSName: exact, case-insensitive (a trailing dot ignored); wildcard entries are literal text. */
export function sanDnsMatches(certificate: X509Certificate, expected: string): boolean {
  const norm = (s: string) => s.toLowerCase().replace(/\.$/, '');
  return (sanValues(certificate, 'DNS') ?? []).some((v) => norm(v) === norm(expected));
}

/**
 * uniformResourceIdentifier: exact after case-normalizing the scheme and host (RFC 3986 section
 * 6.2.2.1); the path is compared exactly. Covers SPIFFE IDs (`spiffe://trust-domain/path`).
 */
export function sanUriMatches(certificate: X509Certificate, expected: string): boolean {
  const norm = (s: string): string => {
    const m = /^([A-Za-z][A-Za-z0-9+.-]*):\/\/([^/?#]*)(.*)$/s.exec(s);
    return m === null ? s : `${(m[1] as string).toLowerCase()}://${(m[2] as string).toLowerCase()}${m[3] as string}`;
  };
  return (sanValues(certificate, 'URI') ?? []).some((v) => norm(v) === norm(expected));
}

/** rFC822Name: local part exact, domain case-insensitive. */
export function sanEmailMatches(certificate: X509Certificate, expected: string): boolean {
  const norm = (s: string) => {
    const at = s.lastIndexOf('@');
    return at < 0 ? s : `${s.slice(0, at)}@${s.slice(at + 1).toLowerCase()}`;
  };
  return (sanValues(certificate, 'email') ?? []).some((v) => norm(v) === norm(expected));
}

/** iPAddress: OpenSSL's comparison of the binary address (IPv4 or IPv6 in any textual form). */
export function sanIpMatches(certificate: X509Certificate, expected: string): boolean {
  if (isIP(expected) === 0) return false;
  try {
    return certificate.checkIP(expected) !== undefined;
  } catch {
    return false;
  }
}

/** URI SANs of a certificate (for dev mode: a client's SPIFFE ID). */
export function uriSans(certificate: X509Certificate): string[] {
  return sanValues(certificate, 'URI') ?? [];
}
