/**
 * Parsing of `WWW-Authenticate` (RFC 9110 section 11.6.1) for clients that react to challenges,
 * and of `Authorization` credentials. Both see network input: they never throw, they return
 * `undefined` or skip what they cannot read.
 */

export interface Challenge {
  /** Scheme, lower-cased. */
  scheme: string;
  /** auth-params with lower-cased names; the token68 form, if any, under `token68`. */
  params: Record<string, string>;
}

const TOKEN = /[!#$%&'*+\-.^_`|~0-9A-Za-z]+/y;
const TOKEN68 = /[A-Za-z0-9\-._~+/]+=*/y;
const OWS = /[ \t]*/y;
const MAX_HEADER = 16 * 1024;

function match(re: RegExp, input: string, pos: number): string | undefined {
  re.lastIndex = pos;
  const m = re.exec(input);
  return m?.[0];
}

function skipOws(input: string, pos: number): number {
  return pos + (match(OWS, input, pos)?.length ?? 0);
}

function readQuoted(input: string, pos: number): [string, number] | undefined {
  if (input[pos] !== '"') return undefined;
  let out = '';
  for (let i = pos + 1; i < input.length; i++) {
    const ch = input[i] as string;
    if (ch === '"') return [out, i + 1];
    if (ch === '\\') {
      i++;
      if (i >= input.length) return undefined;
      out += input[i];
    } else {
      out += ch;
    }
  }
  return undefined;
}

/** True when `token OWS "=" OWS (token / quoted-string)` starts at `pos`. */
function startsAuthParam(input: string, pos: number): boolean {
  const name = match(TOKEN, input, pos);
  if (name === undefined) return false;
  const eq = skipOws(input, pos + name.length);
  if (input[eq] !== '=') return false;
  const v = skipOws(input, eq + 1);
  return input[v] === '"' || match(TOKEN, input, v) !== undefined;
}

/** Parse a `WWW-Authenticate` field value into challenges. Malformed tails are dropped. */
export function parseWwwAuthenticate(value: string | readonly string[] | undefined): Challenge[] {
  if (value === undefined) return [];
  const input = typeof value === 'string' ? value : value.join(', ');
  if (input.length > MAX_HEADER) return [];
  const out: Challenge[] = [];
  let pos = 0;
  let current: Challenge | undefined;
  while (pos < input.length) {
    pos = skipOws(input, pos);
    if (input[pos] === ',') {
      pos++;
      continue;
    }
    const name = match(TOKEN, input, pos);
    if (name === undefined) break;
    const afterName = skipOws(input, pos + name.length);
    if (current !== undefined && startsAuthParam(input, pos)) {
      // auth-param of the current challenge
      let vpos = skipOws(input, afterName + 1);
      let v: string | undefined;
      if (input[vpos] === '"') {
        const q = readQuoted(input, vpos);
        if (q === undefined) break;
        [v, vpos] = q;
      } else {
        v = match(TOKEN, input, vpos);
        if (v === undefined) break;
        vpos += v.length;
      }
      const key = name.toLowerCase();
      if (!(key in current.params)) current.params[key] = v;
      pos = vpos;
      continue;
    }
    // a new challenge: scheme [ 1*SP ( token68 / #auth-param ) ]
    current = { scheme: name.toLowerCase(), params: {} };
    out.push(current);
    pos = pos + name.length;
    const sp = skipOws(input, pos);
    if (sp > pos && !startsAuthParam(input, sp)) {
      const t68 = match(TOKEN68, input, sp);
      if (t68 !== undefined) {
        const after = skipOws(input, sp + t68.length);
        if (after >= input.length || input[after] === ',') {
          current.params.token68 = t68;
          pos = after;
          continue;
        }
      }
    }
    pos = sp;
  }
  return out;
}

/** Credentials from an `Authorization` field value: `<scheme> <token68>`. */
export interface Credentials {
  /** Scheme, lower-cased (schemes are case-insensitive, RFC 9110 section 11.1). */
  scheme: string;
  token: string;
}

const CREDENTIALS = /^([!#$%&'*+\-.^_`|~0-9A-Za-z]+) +([A-Za-z0-9\-._~+/]+=*) *$/;

/** Parse one `Authorization` value. Returns `undefined` when it is not `<scheme> <token68>`. */
export function parseAuthorization(value: string): Credentials | undefined {
  if (value.length > MAX_HEADER) return undefined;
  const m = CREDENTIALS.exec(value);
  if (m === null) return undefined;
  return { scheme: (m[1] as string).toLowerCase(), token: m[2] as string };
}
