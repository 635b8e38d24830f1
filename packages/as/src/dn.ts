/**
 * Distinguished-name comparison for RFC 8705 `tls_client_auth_subject_dn`.
 *
 * The registered value is an RFC 4514 string (least significant RDN first: `CN=a,O=Example,C=US`).
 * The certificate side is Node's `X509Certificate.subject`: OpenSSL's multi-line rendering in
 * encoding order (most significant RDN first), one RDN per line, multi-valued RDNs joined by
 * ` + `, values escaped per RFC 2253 (`ESC_2253 | ESC_CTRL | UTF8_CONVERT`). No ASN.1 is parsed here;
 * both strings are tokenized with the same escape rules and compared as sequences of RDNs, each
 * RDN a set of (attribute type, value) pairs:
 *
 * - attribute types by OID: short and long names (`CN`, `commonName`, `2.5.4.3`, `OID.2.5.4.3`)
 *   are the same attribute, case-insensitively; an unknown name fails closed;
 * - values after unescaping (`\,` and `\2C` are the same), Unicode NFKC, case-insensitive, with
 *   leading/trailing space removed and inner runs of white space collapsed (RFC 4518 insignificant
 *   space handling for caseIgnoreMatch, which every common DN attribute uses);
 * - the order of RDNs matters, the order of values inside a multi-valued RDN does not.
 *
 * Hex-string values (`CN=#0C03...`) would need BER decoding and are refused when registered.
 */

/** Attribute names OpenSSL prints and RFC 4514 / RFC 4519 use, lower-cased, to OIDs. */
const ATTRIBUTE_OIDS: Record<string, string> = {};
const NAMES: Array<[string, string[]]> = [
  ['2.5.4.3', ['cn', 'commonname']],
  ['2.5.4.4', ['sn', 'surname']],
  ['2.5.4.5', ['serialnumber']],
  ['2.5.4.6', ['c', 'countryname']],
  ['2.5.4.7', ['l', 'localityname']],
  ['2.5.4.8', ['st', 'stateorprovincename']],
  ['2.5.4.9', ['street', 'streetaddress']],
  ['2.5.4.10', ['o', 'organizationname']],
  ['2.5.4.11', ['ou', 'organizationalunitname']],
  ['2.5.4.12', ['title']],
  ['2.5.4.13', ['description']],
  ['2.5.4.15', ['businesscategory']],
  ['2.5.4.17', ['postalcode']],
  ['2.5.4.18', ['postofficebox']],
  ['2.5.4.41', ['name']],
  ['2.5.4.42', ['gn', 'givenname']],
  ['2.5.4.43', ['initials']],
  ['2.5.4.44', ['generationqualifier']],
  ['2.5.4.46', ['dnqualifier']],
  ['2.5.4.65', ['pseudonym']],
  ['2.5.4.72', ['role']],
  ['2.5.4.97', ['organizationidentifier']],
  ['0.9.2342.19200300.100.1.1', ['uid', 'userid']],
  ['0.9.2342.19200300.100.1.25', ['dc', 'domaincomponent']],
  ['1.2.840.113549.1.9.1', ['emailaddress', 'email', 'e']],
  ['1.2.840.113549.1.9.2', ['unstructuredname']],
  ['1.3.6.1.4.1.311.60.2.1.1', ['jurisdictionl', 'jurisdictionlocalityname']],
  ['1.3.6.1.4.1.311.60.2.1.2', ['jurisdictionst', 'jurisdictionstateorprovincename']],
  ['1.3.6.1.4.1.311.60.2.1.3', ['jurisdictionc', 'jurisdictioncountryname']],
];
for (const [oid, names] of NAMES) for (const n of names) ATTRIBUTE_OIDS[n] = oid;

const NUMERIC_OID = /^(?:0|[1-9]\d*)(?:\.(?:0|[1-9]\d*))+$/;
const HEX = /^[0-9a-fA-F]{2}$/;
/** Characters RFC 4514 lets a backslash escape directly. */
const ESCAPABLE = new Set([',', '+', '"', '\\', '<', '>', ';', ' ', '#', '=']);

export interface AttributeValue {
  /** Numeric OID of the attribute type. */
  type: string;
  /** Normalized value (see the module comment). */
  value: string;
}

/** RDNs in encoding order (most significant first); each RDN's values sorted. */
export type NormalizedDn = AttributeValue[][];

export class DnSyntaxError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'DnSyntaxError';
  }
}

function attributeOid(type: string): string {
  const t = type.trim();
  const stripped = /^oid\./i.test(t) ? t.slice(4) : t;
  if (NUMERIC_OID.test(stripped)) return stripped;
  const oid = ATTRIBUTE_OIDS[t.toLowerCase()];
  if (oid === undefined) throw new DnSyntaxError(`unknown attribute type '${t}' (use its numeric OID)`);
  return oid;
}

/** Unicode NFKC, case-insensitive, insignificant space removed (RFC 4518 section 2.6.1). */
export function normalizeValue(value: string): string {
  return value.normalize('NFKC').replace(/\s+/gu, ' ').trim().toLowerCase();
}

/**
 * Split `text` on unescaped occurrences of `separator`; escapes stay in the pieces. Throws on a
 * trailing lone backslash.
 */
function splitUnescaped(text: string, separator: string): string[] {
  const out: string[] = [];
  let current = '';
  for (let i = 0; i < text.length; i++) {
    const ch = text[i] as string;
    if (ch === '\\') {
      if (i + 1 >= text.length) throw new DnSyntaxError('dangling escape');
      current += ch + (text[i + 1] as string);
      i++;
    } else if (ch === separator) {
      out.push(current);
      current = '';
    } else current += ch;
  }
  out.push(current);
  return out;
}

/** Remove unescaped white space at both ends (an escaped trailing space `\ ` is kept). */
function trimUnescaped(text: string): string {
  let start = 0;
  while (start < text.length && text[start] === ' ') start++;
  let end = text.length;
  while (end > start && text[end - 1] === ' ') {
    // Count the backslashes before this space: an odd count means it is escaped.
    let slashes = 0;
    for (let j = end - 2; j >= start && text[j] === '\\'; j--) slashes++;
    if (slashes % 2 === 1) break;
    end--;
  }
  return text.slice(start, end);
}

/** Unescape an RFC 4514 string value: `\X` for special characters and `\HH` byte escapes (UTF-8). */
function unescapeValue(raw: string, strict: boolean): string {
  if (raw.startsWith('#')) throw new DnSyntaxError('hex-string attribute values are not supported');
  const bytes: number[] = [];
  const pushText = (s: string) => {
    for (const b of Buffer.from(s, 'utf8')) bytes.push(b);
  };
  for (let i = 0; i < raw.length; i++) {
    const ch = raw[i] as string;
    if (ch !== '\\') {
      if (strict && (ch === '"' || ch === '+' || ch === ',' || ch === ';' || ch === '<' || ch === '>' || ch === '\u0000')) {
        throw new DnSyntaxError(`character '${ch}' must be escaped in an attribute value`);
      }
      pushText(ch);
      continue;
    }
    const next = raw.slice(i + 1, i + 3);
    if (HEX.test(next)) {
      bytes.push(parseInt(next, 16));
      i += 2;
      continue;
    }
    const escaped = raw[i + 1];
    if (escaped === undefined || (strict && !ESCAPABLE.has(escaped))) throw new DnSyntaxError('invalid escape sequence');
    pushText(escaped);
    i++;
  }
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(Uint8Array.from(bytes));
  } catch {
    throw new DnSyntaxError('escaped bytes are not UTF-8');
  }
}

function parseRdn(text: string, strict: boolean): AttributeValue[] {
  const avas = splitUnescaped(text, '+').map((a) => trimUnescaped(a));
  return avas
    .map((ava) => {
      const eq = ava.indexOf('=');
      if (eq <= 0) throw new DnSyntaxError('attribute without a type');
      // An '=' can only be unescaped inside the type if the type itself is malformed.
      const type = ava.slice(0, eq);
      if (type.includes('\\')) throw new DnSyntaxError('escaped characters in an attribute type');
      return { type: attributeOid(type), value: normalizeValue(unescapeValue(trimUnescaped(ava.slice(eq + 1)), strict)) };
    })
    .sort(compareAva);
}

function compareAva(a: AttributeValue, b: AttributeValue): number {
  if (a.type !== b.type) return a.type < b.type ? -1 : 1;
  return a.value < b.value ? -1 : a.value > b.value ? 1 : 0;
}

/**
 * Parse an RFC 4514 DN string (as registered in client metadata). Returns RDNs in encoding order
 * (the string lists the least significant first). White space around `,`, `+` and `=` is allowed.
 * Throws {@link DnSyntaxError}.
 */
export function parseRfc4514(dn: string): NormalizedDn {
  if (typeof dn !== 'string' || dn.trim() === '') throw new DnSyntaxError('empty distinguished name');
  const rdns = splitUnescaped(dn, ',').map((r) => trimUnescaped(r));
  if (rdns.some((r) => r === '')) throw new DnSyntaxError('empty RDN');
  return rdns.map((r) => parseRdn(r, true)).reverse();
}

/**
 * Parse Node's `X509Certificate.subject` / `.issuer` rendering (encoding order, one RDN per line).
 * Throws {@link DnSyntaxError} for names it cannot read, which then match nothing.
 */
export function parseNodeSubject(subject: string): NormalizedDn {
  if (typeof subject !== 'string' || subject === '') throw new DnSyntaxError('empty subject');
  return subject.split('\n').map((line) => parseRdn(line, false));
}

export function dnEquals(a: NormalizedDn, b: NormalizedDn): boolean {
  if (a.length !== b.length) return false;
  for (let i = 0; i < a.length; i++) {
    const x = a[i] as AttributeValue[];
    const y = b[i] as AttributeValue[];
    if (x.length !== y.length) return false;
    for (let j = 0; j < x.length; j++) {
      if ((x[j] as AttributeValue).type !== (y[j] as AttributeValue).type || (x[j] as AttributeValue).value !== (y[j] as AttributeValue).value) return false;
    }
  }
  return true;
}

/** True when a certificate subject (Node rendering) equals a registered RFC 4514 DN. Fails closed. */
export function subjectMatches(nodeSubject: string | undefined, registered: NormalizedDn): boolean {
  if (nodeSubject === undefined) return false;
  try {
    return dnEquals(parseNodeSubject(nodeSubject), registered);
  } catch {
    return false;
  }
}
