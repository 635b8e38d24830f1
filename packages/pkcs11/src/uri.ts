/**
 * RFC 7512 PKCS#11 URIs: `pkcs11:` path attributes (`;`-separated) that select a token and an
 * object, query attributes (`&`-separated) for the PIN and the module. Values are percent-decoded;
 * `id` is bytes, every other value UTF-8 text. Unknown attributes are refused rather than ignored
 * (RFC 7512 section 2.3: a URI with an attribute the consumer does not know must not match), except
 * vendor attributes (`x-...`). `pin-value` is accepted in the path too, as OpenSSL's engine does.
 */
import { Pkcs11KeyError } from './errors.js';

export interface Pkcs11Uri {
  /** Token attributes (CK_TOKEN_INFO). */
  token?: string;
  manufacturer?: string;
  model?: string;
  serial?: string;
  /** Slot attributes (CK_SLOT_INFO / slot ID). */
  slotId?: bigint;
  slotDescription?: string;
  slotManufacturer?: string;
  /** Object attributes: CKA_LABEL, CKA_ID, CKA_CLASS. */
  object?: string;
  id?: Buffer;
  type?: 'private' | 'public' | 'cert' | 'secret-key' | 'data';
  /** Query: the PIN, inline or from a file (`file:` URI or a path). */
  pinValue?: string;
  pinSource?: string;
  /** Query: the module, by path or by name. */
  modulePath?: string;
  moduleName?: string;
}

const PATH_ATTRIBUTES = new Set([
  'token', 'manufacturer', 'model', 'serial', 'slot-id', 'slot-description', 'slot-manufacturer',
  'library-manufacturer', 'library-description', 'library-version', 'object', 'id', 'type', 'pin-value',
]);
const QUERY_ATTRIBUTES = new Set(['pin-source', 'pin-value', 'module-path', 'module-name']);
const TYPES = new Set(['private', 'public', 'cert', 'secret-key', 'data']);
/** RFC 3986 pchar minus the separators, plus `%`-escapes. */
const VALUE = /^(?:[A-Za-z0-9\-._~!$'()*+,=:@&/|]|%[0-9A-Fa-f]{2})*$/;

const bad = (message: string): never => {
  throw new Pkcs11KeyError('ERR_PKCS11_URI', `invalid pkcs11: URI: ${message}`);
};

function decode(name: string, raw: string): Buffer {
  // The value is never echoed: it may be a PIN.
  if (!VALUE.test(raw)) bad(`attribute ${name} has a character that must be percent-encoded`);
  const bytes: number[] = [];
  for (let i = 0; i < raw.length; i++) {
    if (raw[i] === '%') {
      bytes.push(Number.parseInt(raw.slice(i + 1, i + 3), 16));
      i += 2;
    } else bytes.push(raw.charCodeAt(i));
  }
  return Buffer.from(bytes);
}

function text(name: string, raw: string): string {
  const bytes = decode(name, raw);
  const value = new TextDecoder('utf-8', { fatal: true, ignoreBOM: true });
  try {
    return value.decode(bytes);
  } catch {
    return bad(`attribute ${name} is not UTF-8`);
  }
}

function assign(uri: Pkcs11Uri, name: string, raw: string): void {
  switch (name) {
    case 'token': uri.token = text(name, raw); break;
    case 'manufacturer': uri.manufacturer = text(name, raw); break;
    case 'model': uri.model = text(name, raw); break;
    case 'serial': uri.serial = text(name, raw); break;
    case 'slot-description': uri.slotDescription = text(name, raw); break;
    case 'slot-manufacturer': uri.slotManufacturer = text(name, raw); break;
    case 'object': uri.object = text(name, raw); break;
    case 'id': uri.id = decode(name, raw); break;
    case 'pin-value': uri.pinValue = text(name, raw); break;
    case 'pin-source': uri.pinSource = text(name, raw); break;
    case 'module-path': uri.modulePath = text(name, raw); break;
    case 'module-name': uri.moduleName = text(name, raw); break;
    case 'slot-id': {
      const value = text(name, raw);
      if (!/^[0-9]{1,20}$/.test(value)) bad('slot-id must be a decimal number');
      uri.slotId = BigInt(value);
      break;
    }
    case 'type': {
      const value = text(name, raw);
      if (!TYPES.has(value)) bad(`type must be one of ${[...TYPES].join(', ')}`);
      uri.type = value as Pkcs11Uri['type'];
      break;
    }
    default:
      // library-* select the module; one module is configured, so they need not match anything here.
      break;
  }
}

function parseAttributes(part: string, separator: string, allowed: Set<string>, seen: Set<string>, uri: Pkcs11Uri): void {
  if (part === '') return;
  for (const attribute of part.split(separator)) {
    const equals = attribute.indexOf('=');
    if (equals <= 0) bad(`expected name=value, got an attribute without "="`);
    const name = attribute.slice(0, equals).toLowerCase();
    if (name.startsWith('x-')) continue;
    if (!allowed.has(name)) bad(`unknown attribute ${JSON.stringify(name.slice(0, 40))}`);
    if (seen.has(name)) bad(`attribute ${name} appears twice`);
    seen.add(name);
    assign(uri, name, attribute.slice(equals + 1));
  }
}

/** Parse a `pkcs11:` URI. @throws {Pkcs11KeyError} `ERR_PKCS11_URI`. */
export function parsePkcs11Uri(value: string): Pkcs11Uri {
  if (!/^pkcs11:/i.test(value)) bad('it must start with "pkcs11:"');
  if (value.length > 4096) bad('longer than 4096 characters');
  const rest = value.slice('pkcs11:'.length);
  if (rest.includes('#')) bad('a fragment (#) is not allowed');
  const question = rest.indexOf('?');
  const path = question === -1 ? rest : rest.slice(0, question);
  const query = question === -1 ? '' : rest.slice(question + 1);
  const uri: Pkcs11Uri = {};
  const seen = new Set<string>();
  parseAttributes(path, ';', PATH_ATTRIBUTES, seen, uri);
  parseAttributes(query, '&', QUERY_ATTRIBUTES, seen, uri);
  if (uri.pinValue !== undefined && uri.pinSource !== undefined) bad('give pin-value or pin-source, not both');
  return uri;
}

/** Percent-encode a value for a URI handed to OpenSSL's engine (every byte outside unreserved). */
export function encodeUriValue(value: string | Buffer): string {
  const bytes = typeof value === 'string' ? Buffer.from(value, 'utf8') : value;
  let out = '';
  for (const byte of bytes) {
    const char = String.fromCharCode(byte);
    out += /[A-Za-z0-9\-._~]/.test(char) ? char : `%${byte.toString(16).toUpperCase().padStart(2, '0')}`;
  }
  return out;
}
