/**
 * Configuration: a zod schema for the JSON file (and for the library's config object), then a
 * resolution pass that reads referenced files, parses certificates, DNs and JWK Sets, and checks
 * cross references. Every problem is collected with its path (`clients[2].jwks.keys[0]`) and
 * reported together as a {@link ConfigError}. Options are documented in packages/as/README.md.
 */
import { X509Certificate, createPrivateKey, createPublicKey, createHash, type KeyObject } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isIP } from 'node:net';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { z } from 'zod';
import { ConfigError } from './errors.js';
import { storeUrlProblem } from './store/url.js';
import { DnSyntaxError, parseRfc4514, type NormalizedDn } from './dn.js';

export const GRANT_CLIENT_CREDENTIALS = 'client_credentials';
export const GRANT_TOKEN_EXCHANGE = 'urn:ietf:params:oauth:grant-type:token-exchange';
export const AUTH_METHODS = ['tls_client_auth', 'self_signed_tls_client_auth', 'private_key_jwt'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];
export const BINDING_LEVELS = ['none', 'certificate', 'session'] as const;
export type BindingLevel = (typeof BINDING_LEVELS)[number];
export const SIGNING_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];
export const ASSERTION_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'] as const;

const SAN_FIELDS = ['tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri', 'tls_client_auth_san_ip', 'tls_client_auth_san_email'] as const;
type SanField = (typeof SAN_FIELDS)[number];

const seconds = (max: number) => z.number().int().positive().max(max);
const nonEmpty = z.string().min(1).max(2048);
const identifier = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');
const scopeToken = /^[\x21\x23-\x5b\x5d-\x7e]+$/;
const thumbprint = z.string().regex(/^[A-Za-z0-9_-]{43}$/, 'must be a base64url SHA-256 thumbprint (43 characters)');

const listenSchema = z
  .object({
    host: z.string().min(1).max(255).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8443),
    /** Public base URL of this listener when it differs from https://host:port (proxies, wildcard hosts). */
    publicUrl: z.url().optional(),
  })
  .strict();

const jwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(100) }).strict();

const clientSchema = z
  .object({
    client_id: identifier.max(200),
    client_name: z.string().max(200).optional(),
    token_endpoint_auth_method: z.enum(AUTH_METHODS),
    tls_client_auth_subject_dn: nonEmpty.optional(),
    tls_client_auth_san_dns: nonEmpty.optional(),
    tls_client_auth_san_uri: nonEmpty.optional(),
    tls_client_auth_san_ip: nonEmpty.optional(),
    tls_client_auth_san_email: nonEmpty.optional(),
    jwks: jwksSchema.optional(),
    jwksFile: nonEmpty.optional(),
    grant_types: z.array(z.enum([GRANT_CLIENT_CREDENTIALS, GRANT_TOKEN_EXCHANGE])).min(1).default([GRANT_CLIENT_CREDENTIALS]),
    scope: z.string().max(4096).default(''),
    default_scope: z.string().max(4096).optional(),
    audiences: z.array(identifier).max(1000).default([]),
    default_audience: z.union([identifier, z.array(identifier).min(1).max(20)]).optional(),
    identifiers: z.array(identifier).max(100).default([]),
    tls_session_bound_access_tokens: z.boolean().default(false),
    tls_client_certificate_bound_access_tokens: z.boolean().default(false),
    /** RFC 9449 section 5.2: the client always uses DPoP; token requests without a DPoP header are refused. */
    dpop_bound_access_tokens: z.boolean().default(false),
    token_exchange: z.object({ subject_clients: z.array(identifier).max(1000).default([]) }).strict().default({ subject_clients: [] }),
    may_act: identifier.optional(),
    tmb: z
      .object({ thumbprints: z.array(thumbprint).max(1000).default([]), clients: z.array(identifier).max(1000).default([]) })
      .strict()
      .default({ thumbprints: [], clients: [] }),
    certificate_thumbprints: z.array(thumbprint).max(100).default([]),
    access_token_lifetime: seconds(86_400).optional(),
    introspection: z.enum(['audience', 'any']).default('audience'),
  })
  .strict();

const resourceSchema = z
  .object({
    identifier,
    binding: z.enum(BINDING_LEVELS).default('none'),
    scopes: z.array(z.string().regex(scopeToken)).optional(),
  })
  .strict();

export const configSchema = z
  .object({
    issuer: z.url().optional(),
    listen: listenSchema.default({ host: '127.0.0.1', port: 8443 }),
    plainTlsListen: listenSchema.optional(),
    tls: z
      .object({
        cert: nonEmpty.max(65536).optional(),
        certFile: nonEmpty.optional(),
        key: nonEmpty.max(65536).optional(),
        keyFile: nonEmpty.optional(),
        allowTls12: z.boolean().default(false),
      })
      .strict(),
    clientAuthentication: z
      .object({
        tls_client_auth: z
          .object({
            enabled: z.boolean().default(true),
            ca: z.array(nonEmpty.max(65536)).default([]),
            caFiles: z.array(nonEmpty).default([]),
          })
          .strict()
          .default({ enabled: true, ca: [], caFiles: [] }),
        self_signed_tls_client_auth: z.object({ enabled: z.boolean().default(true) }).strict().default({ enabled: true }),
        private_key_jwt: z
          .object({
            enabled: z.boolean().default(true),
            algorithms: z.array(z.enum(ASSERTION_ALGORITHMS)).min(1).default(['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256']),
            maxAssertionLifetime: seconds(3600).default(300),
          })
          .strict()
          .default({ enabled: true, algorithms: ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'], maxAssertionLifetime: 300 }),
      })
      .strict()
      .default({
        tls_client_auth: { enabled: true, ca: [], caFiles: [] },
        self_signed_tls_client_auth: { enabled: true },
        private_key_jwt: { enabled: true, algorithms: ['ES256', 'ES384', 'EdDSA', 'PS256', 'RS256'], maxAssertionLifetime: 300 },
      }),
    /** Directory of the embedded store (`<dataDir>/tether.db`) unless `store` names one. */
    dataDir: nonEmpty.optional(),
    /** `sqlite:PATH` or `postgres://USER@HOST:PORT/DB` (store/open.ts). */
    store: nonEmpty.max(4096).optional(),
    /** Key-encryption key sealing private signing keys at rest: a file or an environment variable. */
    keyEncryption: z
      .object({ file: nonEmpty.optional(), env: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/).optional() })
      .strict()
      .optional(),
    tokens: z
      .object({
        lifetime: seconds(86_400).default(300),
        clockSkew: z.number().int().min(0).max(300).default(30),
        defaultBinding: z.enum(BINDING_LEVELS).default('none'),
        proofMaxAge: seconds(3600).default(300),
        /** Oldest acceptable DPoP proof `iat` at the token endpoint, seconds (plus clockSkew). */
        dpopProofMaxAge: seconds(3600).default(60),
        /** RFC 9449 section 8: DPoP proofs at the token endpoint must carry a nonce this server issued. */
        dpopNonce: z
          .object({ required: z.boolean().default(false), lifetime: seconds(3600).default(300) })
          .strict()
          .default({ required: false, lifetime: 300 }),
      })
      .strict()
      .default({ lifetime: 300, clockSkew: 30, defaultBinding: 'none', proofMaxAge: 300, dpopProofMaxAge: 60, dpopNonce: { required: false, lifetime: 300 } }),
    signingKeys: z
      .object({
        algorithm: z.enum(SIGNING_ALGORITHMS).default('ES256'),
        rotationInterval: seconds(365 * 86_400).default(86_400),
        checkInterval: seconds(86_400).default(60),
      })
      .strict()
      .default({ algorithm: 'ES256', rotationInterval: 86_400, checkInterval: 60 }),
    tokenExchange: z
      .object({
        enabled: z.boolean().default(true),
        maxDelegationDepth: z.number().int().min(0).max(32).default(5),
        sessionBindingFromDepth: z.number().int().min(1).max(32).optional(),
      })
      .strict()
      .default({ enabled: true, maxDelegationDepth: 5 }),
    resources: z.array(resourceSchema).max(10_000).default([]),
    clients: z.array(clientSchema).max(10_000).default([]),
    limits: z
      .object({
        bodyBytes: z.number().int().min(1024).max(1_048_576).default(16_384),
        requestTimeoutMs: z.number().int().min(100).max(600_000).default(10_000),
      })
      .strict()
      .default({ bodyBytes: 16_384, requestTimeoutMs: 10_000 }),
    logging: z
      .object({ level: z.enum(['fatal', 'error', 'warn', 'info', 'debug', 'trace', 'silent']).default('info') })
      .strict()
      .default({ level: 'info' }),
    metrics: z
      .object({ enabled: z.boolean().default(true), path: z.string().regex(/^\/[A-Za-z0-9/_.-]*$/).default('/metrics') })
      .strict()
      .default({ enabled: true, path: '/metrics' }),
  })
  .strict();

/** The configuration as written (JSON file or object). */
export type AuthorizationServerConfig = z.input<typeof configSchema>;
type ParsedConfig = z.output<typeof configSchema>;
type ParsedClient = z.output<typeof clientSchema>;

/** How a `tls_client_auth` client's certificate is matched. */
export type CertificateMatcher =
  | { field: 'tls_client_auth_subject_dn'; dn: NormalizedDn; text: string }
  | { field: Exclude<SanField, 'tls_client_auth_subject_dn'>; value: string };

export interface ResolvedClient extends Omit<ParsedClient, 'jwks' | 'jwksFile'> {
  jwks: { keys: Array<Record<string, unknown>> } | undefined;
  /** For tls_client_auth. */
  matcher: CertificateMatcher | undefined;
  /** For self_signed_tls_client_auth: thumbprints of the registered certificates (x5c / x5t#S256). */
  registeredThumbprints: Set<string>;
  /** Allowed scopes. */
  scopes: Set<string>;
  /** Identifiers naming this client as a recipient (client_id plus `identifiers`). */
  recipientIds: Set<string>;
}

export interface ResolvedResource {
  identifier: string;
  binding: BindingLevel;
  scopes: Set<string> | undefined;
}

export interface ResolvedConfig extends Omit<ParsedConfig, 'clients' | 'resources' | 'tls'> {
  tls: { cert: string; key: string; allowTls12: boolean };
  /** Trust anchors for tls_client_auth (PEM) and their parsed forms. */
  clientCaPem: string[];
  clientCaCerts: X509Certificate[];
  clients: ResolvedClient[];
  resources: ResolvedResource[];
}

export function formatPath(path: ReadonlyArray<PropertyKey>): string {
  let out = '';
  for (const p of path) {
    if (typeof p === 'number') out += `[${p}]`;
    else out += out === '' ? String(p) : `.${String(p)}`;
  }
  return out === '' ? '(root)' : out;
}

function splitScopes(scope: string): string[] {
  return scope.split(' ').filter((s) => s !== '');
}

const PRIVATE_JWK_MEMBERS = ['d', 'p', 'q', 'dp', 'dq', 'qi', 'oth', 'k'];

/** base64 (standard) DER of x5c[0] to its x5t#S256. */
function x5cThumbprint(x5c: unknown): string | undefined {
  if (!Array.isArray(x5c) || typeof x5c[0] !== 'string') return undefined;
  const der = Buffer.from(x5c[0], 'base64');
  try {
    new X509Certificate(der);
  } catch {
    return undefined;
  }
  return createHash('sha256').update(der).digest('base64url');
}

function splitPemCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

type Problem = (path: ReadonlyArray<PropertyKey>, message: string) => void;

/** Resolve one client's metadata (shared by the configuration and runtime registration). */
function resolveClientEntry(
  cl: ParsedClient,
  at: (...p: PropertyKey[]) => PropertyKey[],
  problem: Problem,
  file: (path: ReadonlyArray<PropertyKey>, name: string) => string | undefined,
  enabled: Record<AuthMethod, boolean>,
  tokenExchangeEnabled: boolean,
): ResolvedClient {
  const method = cl.token_endpoint_auth_method;
  if (!enabled[method]) problem(at('token_endpoint_auth_method'), `${method} is disabled in clientAuthentication`);

  // A token carries one binding (cnf.jkt or cnf.x5t#S256[+tls_exp]), never both: a client that
  // always uses DPoP cannot also ask for certificate- or session-bound tokens.
  if (cl.dpop_bound_access_tokens && (cl.tls_session_bound_access_tokens || cl.tls_client_certificate_bound_access_tokens)) {
    problem(at('dpop_bound_access_tokens'), 'cannot be combined with tls_session_bound_access_tokens or tls_client_certificate_bound_access_tokens (one binding per token)');
  }

  const present = SAN_FIELDS.filter((f) => cl[f] !== undefined);
  let matcher: CertificateMatcher | undefined;
  if (method === 'tls_client_auth') {
    if (present.length !== 1) problem(at(), `tls_client_auth needs exactly one of ${SAN_FIELDS.join(', ')} (RFC 8705 section 2.1.2)`);
    const field = present[0];
    if (field === 'tls_client_auth_subject_dn') {
      try {
        matcher = { field, dn: parseRfc4514(cl[field] as string), text: cl[field] as string };
      } catch (error) {
        problem(at(field), error instanceof DnSyntaxError ? `not an RFC 4514 DN: ${error.message}` : String(error));
      }
    } else if (field !== undefined) {
      const value = cl[field] as string;
      if (field === 'tls_client_auth_san_ip' && isIP(value) === 0) problem(at(field), 'not an IP address');
      if (field === 'tls_client_auth_san_uri' && !URL.canParse(value)) problem(at(field), 'not a URI');
      if (field === 'tls_client_auth_san_email' && !/^[^@\s]+@[^@\s]+$/.test(value)) problem(at(field), 'not an email address');
      matcher = { field, value };
    }
  } else if (present.length > 0) {
    problem(at(present[0] as string), `only used with tls_client_auth, not ${method}`);
  }

  let jwks = cl.jwks;
  if (cl.jwksFile !== undefined) {
    if (jwks !== undefined) problem(at('jwksFile'), 'give jwks or jwksFile, not both');
    const text = file(at('jwksFile'), cl.jwksFile);
    if (text !== undefined) {
      try {
        const parsedJwks = jwksSchema.safeParse(JSON.parse(text));
        if (parsedJwks.success) jwks = parsedJwks.data;
        else problem(at('jwksFile'), 'not a JWK Set with a keys array');
      } catch {
        problem(at('jwksFile'), 'not JSON');
      }
    }
  }
  const registeredThumbprints = new Set<string>();
  if (jwks !== undefined) {
    jwks.keys.forEach((k, j) => {
      const kp = at(cl.jwksFile === undefined ? 'jwks' : 'jwksFile', 'keys', j);
      if (PRIVATE_JWK_MEMBERS.some((m) => m in k)) {
        problem(kp, 'contains private or symmetric key material');
        return;
      }
      let publicKey: KeyObject | undefined;
      try {
        publicKey = createPublicKey({ key: k as never, format: 'jwk' });
      } catch {
        problem(kp, 'not a valid public JWK');
      }
      if ('x5c' in k) {
        const t = x5cThumbprint(k.x5c);
        if (t === undefined) problem(kp.concat('x5c'), 'x5c[0] is not a base64 DER certificate');
        else {
          const leaf = new X509Certificate(Buffer.from((k.x5c as string[])[0] as string, 'base64'));
          if (publicKey !== undefined && !leaf.publicKey.equals(publicKey)) problem(kp.concat('x5c'), 'x5c[0] does not carry the JWK public key');
          registeredThumbprints.add(t);
        }
      }
      if ('x5t#S256' in k) {
        if (typeof k['x5t#S256'] !== 'string' || !/^[A-Za-z0-9_-]{43}$/.test(k['x5t#S256'])) problem(kp.concat('x5t#S256'), 'not a SHA-256 thumbprint');
        else registeredThumbprints.add(k['x5t#S256']);
      }
    });
  }
  if ((method === 'self_signed_tls_client_auth' || method === 'private_key_jwt') && jwks === undefined) {
    problem(at('jwks'), `${method} needs a registered jwks (or jwksFile)`);
  }
  if (method === 'self_signed_tls_client_auth' && jwks !== undefined && registeredThumbprints.size === 0) {
    problem(at('jwks'), 'self_signed_tls_client_auth needs keys with x5c or x5t#S256 (RFC 8705 section 2.2.2)');
  }
  if (method !== 'self_signed_tls_client_auth' && method !== 'private_key_jwt' && jwks !== undefined) {
    problem(at('jwks'), `not used with ${method}`);
  }
  if (cl.grant_types.includes(GRANT_TOKEN_EXCHANGE) && !tokenExchangeEnabled) {
    problem(at('grant_types'), 'token exchange is disabled (tokenExchange.enabled)');
  }
  const scopes = splitScopes(cl.scope);
  scopes.forEach((s) => {
    if (!scopeToken.test(s)) problem(at('scope'), `invalid scope token '${s}'`);
  });
  if (cl.default_scope !== undefined) {
    for (const s of splitScopes(cl.default_scope)) if (!scopes.includes(s)) problem(at('default_scope'), `'${s}' is not in scope`);
  }
  const { jwks: _j, jwksFile: _f, ...rest } = cl;
  return {
    ...rest,
    jwks,
    matcher,
    registeredThumbprints,
    scopes: new Set(scopes),
    recipientIds: new Set([cl.client_id, ...cl.identifiers]),
  };
}

/** Check a client's references to resources and other clients. */
function crossCheckClient(
  cl: ParsedClient,
  at: (...p: PropertyKey[]) => PropertyKey[],
  problem: Problem,
  targetIds: ReadonlyMap<string, string>,
  clientIds: ReadonlySet<string>,
): void {
  cl.audiences.forEach((a, j) => {
    if (a !== '*' && !targetIds.has(a)) problem(at('audiences', j), `'${a}' is neither a resource identifier nor a client identifier`);
  });
  const defaults = cl.default_audience === undefined ? [] : Array.isArray(cl.default_audience) ? cl.default_audience : [cl.default_audience];
  defaults.forEach((a) => {
    if (!targetIds.has(a)) problem(at('default_audience'), `'${a}' is neither a resource identifier nor a client identifier`);
    else if (!cl.audiences.includes('*') && !cl.audiences.includes(a)) problem(at('default_audience'), `'${a}' is not in audiences`);
  });
  cl.token_exchange.subject_clients.forEach((s, j) => {
    if (s !== '*' && !clientIds.has(s)) problem(at('token_exchange', 'subject_clients', j), `unknown client '${s}'`);
  });
  cl.tmb.clients.forEach((s, j) => {
    if (!clientIds.has(s)) problem(at('tmb', 'clients', j), `unknown client '${s}'`);
  });
  if (cl.may_act !== undefined && !clientIds.has(cl.may_act)) problem(at('may_act'), `unknown client '${cl.may_act}'`);
}

/**
 * Validate and resolve a configuration. `baseDir` anchors relative file names (the config file's
 * directory). Throws {@link ConfigError} listing every problem found.
 */
export function resolveConfig(input: unknown, baseDir = process.cwd()): ResolvedConfig {
  const parsed = configSchema.safeParse(input);
  if (!parsed.success) {
    throw new ConfigError(parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`));
  }
  const c = parsed.data;
  const issues: string[] = [];
  const problem = (path: ReadonlyArray<PropertyKey>, message: string) => issues.push(`${formatPath(path)}: ${message}`);
  const file = (path: ReadonlyArray<PropertyKey>, name: string): string | undefined => {
    const full = isAbsolute(name) ? name : resolvePath(baseDir, name);
    try {
      return readFileSync(full, 'utf8');
    } catch (error) {
      problem(path, `cannot read ${full}: ${(error as { code?: string }).code ?? String(error)}`);
      return undefined;
    }
  };
  const pair = (inline: string | undefined, fileName: string | undefined, path: string, what: string): string | undefined => {
    if ((inline === undefined) === (fileName === undefined)) {
      problem(['tls'], `exactly one of ${path} and ${path}File is required (${what})`);
      return undefined;
    }
    return inline ?? file(['tls', `${path}File`], fileName as string);
  };

  // issuer and listeners
  if (c.issuer !== undefined) {
    const u = new URL(c.issuer);
    if (u.protocol !== 'https:') problem(['issuer'], 'must be an https URL');
    if (u.search !== '' || u.hash !== '') problem(['issuer'], 'must not have a query or fragment (RFC 8414 section 2)');
  }
  for (const [name, l] of [['listen', c.listen], ['plainTlsListen', c.plainTlsListen]] as const) {
    if (l?.publicUrl !== undefined && new URL(l.publicUrl).protocol !== 'https:') problem([name, 'publicUrl'], 'must be an https URL');
  }
  if (c.plainTlsListen !== undefined && c.plainTlsListen.port !== 0 && c.plainTlsListen.port === c.listen.port && c.plainTlsListen.host === c.listen.host) {
    problem(['plainTlsListen', 'port'], 'must differ from listen.port');
  }

  // Storage
  if (c.dataDir === undefined && c.store === undefined) problem(['dataDir'], 'dataDir or store is required');
  const storeProblem = c.store === undefined ? undefined : storeUrlProblem(c.store);
  if (storeProblem !== undefined) problem(['store'], storeProblem);
  let keyEncryption: ResolvedConfig['keyEncryption'];
  if (c.keyEncryption !== undefined) {
    const { file: kekFile, env } = c.keyEncryption;
    if ((kekFile === undefined) === (env === undefined)) problem(['keyEncryption'], 'exactly one of file and env is required');
    keyEncryption = kekFile === undefined ? { env } : { file: isAbsolute(kekFile) ? kekFile : resolvePath(baseDir, kekFile) };
  }

  // TLS server credentials
  const cert = pair(c.tls.cert, c.tls.certFile, 'cert', 'PEM server certificate chain');
  const key = pair(c.tls.key, c.tls.keyFile, 'key', 'PEM server private key');
  if (cert !== undefined && key !== undefined) {
    try {
      const leaf = splitPemCertificates(cert)[0];
      if (leaf === undefined) problem(['tls', 'cert'], 'no PEM certificate found');
      else if (!leaf.checkPrivateKey(createPrivateKey(key))) problem(['tls', 'key'], 'does not belong to tls.cert');
    } catch (error) {
      problem(['tls'], `cannot load the server certificate or key: ${(error as Error).message}`);
    }
  }

  // Client CAs
  const methods = c.clientAuthentication;
  const caPem: string[] = [...methods.tls_client_auth.ca];
  methods.tls_client_auth.caFiles.forEach((f, i) => {
    const text = file(['clientAuthentication', 'tls_client_auth', 'caFiles', i], f);
    if (text !== undefined) caPem.push(text);
  });
  const caCerts: X509Certificate[] = [];
  caPem.forEach((pem, i) => {
    try {
      const certs = splitPemCertificates(pem);
      if (certs.length === 0) problem(['clientAuthentication', 'tls_client_auth', 'ca', i], 'no PEM certificate found');
      for (const ca of certs) {
        if (!ca.ca) problem(['clientAuthentication', 'tls_client_auth', 'ca', i], `certificate ${ca.subject.replace(/\n/g, ', ')} is not a CA certificate`);
        caCerts.push(ca);
      }
    } catch (error) {
      problem(['clientAuthentication', 'tls_client_auth', 'ca', i], `not a PEM certificate: ${(error as Error).message}`);
    }
  });
  const enabled: Record<AuthMethod, boolean> = {
    tls_client_auth: methods.tls_client_auth.enabled,
    self_signed_tls_client_auth: methods.self_signed_tls_client_auth.enabled,
    private_key_jwt: methods.private_key_jwt.enabled,
  };
  if (enabled.tls_client_auth && caCerts.length === 0 && c.clients.some((cl) => cl.token_endpoint_auth_method === 'tls_client_auth')) {
    problem(['clientAuthentication', 'tls_client_auth'], 'tls_client_auth clients are registered but no CA (ca or caFiles) is configured');
  }

  // Resources
  const resources: ResolvedResource[] = [];
  const targetIds = new Map<string, string>();
  c.resources.forEach((r, i) => {
    if (targetIds.has(r.identifier)) problem(['resources', i, 'identifier'], `duplicate identifier '${r.identifier}' (also ${targetIds.get(r.identifier)})`);
    targetIds.set(r.identifier, `resources[${i}]`);
    resources.push({ identifier: r.identifier, binding: r.binding, scopes: r.scopes === undefined ? undefined : new Set(r.scopes) });
  });

  // Clients
  const clientIds = new Set<string>();
  const clients: ResolvedClient[] = [];
  c.clients.forEach((cl, i) => {
    const at = (...p: PropertyKey[]) => ['clients', i, ...p];
    if (clientIds.has(cl.client_id)) problem(at('client_id'), `duplicate client_id '${cl.client_id}'`);
    clientIds.add(cl.client_id);
    for (const id of new Set([cl.client_id, ...cl.identifiers])) {
      const owner = targetIds.get(id);
      if (owner !== undefined) problem(at('identifiers'), `identifier '${id}' is already used by ${owner}`);
      targetIds.set(id, `clients[${i}]`);
    }
    clients.push(resolveClientEntry(cl, at, problem, file, enabled, c.tokenExchange.enabled));
  });

  // Cross references (after every identifier is known)
  c.clients.forEach((cl, i) => crossCheckClient(cl, (...p) => ['clients', i, ...p], problem, targetIds, clientIds));

  if (issues.length > 0) throw new ConfigError(issues);
  return {
    ...c,
    keyEncryption,
    tls: { cert: cert as string, key: key as string, allowTls12: c.tls.allowTls12 },
    clientCaPem: caPem,
    clientCaCerts: caCerts,
    clients,
    resources,
  };
}

/** Read and resolve a JSON configuration file; relative paths in it are relative to its directory. */
export function loadConfigFile(path: string): ResolvedConfig {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (error) {
    throw new ConfigError([`(file): cannot read ${path}: ${(error as { code?: string }).code ?? String(error)}`]);
  }
  let json: unknown;
  try {
    json = JSON.parse(text);
  } catch (error) {
    throw new ConfigError([`(file): ${path} is not JSON: ${(error as Error).message}`]);
  }
  return resolveConfig(json, resolvePath(path, '..'));
}

/**
 * Validate client metadata registered at run time against a resolved configuration and the
 * clients already known. Throws {@link ConfigError} with paths relative to the metadata.
 */
export function resolveRegisteredClient(
  metadata: unknown,
  config: ResolvedConfig,
  existing: readonly ResolvedClient[],
): { client: ResolvedClient; metadata: z.input<typeof clientSchema> } {
  const parsed = clientSchema.safeParse(metadata);
  if (!parsed.success) throw new ConfigError(parsed.error.issues.map((i) => `${formatPath(i.path)}: ${i.message}`));
  const cl = parsed.data;
  const issues: string[] = [];
  const problem: Problem = (path, message) => issues.push(`${formatPath(path)}: ${message}`);
  const at = (...p: PropertyKey[]) => p;
  if (cl.jwksFile !== undefined) problem(['jwksFile'], 'not accepted at run time; register jwks inline');
  const targetIds = new Map<string, string>();
  for (const r of config.resources) targetIds.set(r.identifier, 'a resource');
  const clientIds = new Set<string>();
  for (const other of existing) {
    clientIds.add(other.client_id);
    for (const id of other.recipientIds) targetIds.set(id, `client '${other.client_id}'`);
  }
  if (clientIds.has(cl.client_id)) problem(['client_id'], `client '${cl.client_id}' already exists`);
  for (const id of new Set([cl.client_id, ...cl.identifiers])) {
    const owner = targetIds.get(id);
    if (owner !== undefined) problem(['identifiers'], `identifier '${id}' is already used by ${owner}`);
    targetIds.set(id, 'this client');
  }
  clientIds.add(cl.client_id);
  const methods = config.clientAuthentication;
  const enabled: Record<AuthMethod, boolean> = {
    tls_client_auth: methods.tls_client_auth.enabled && config.clientCaCerts.length > 0,
    self_signed_tls_client_auth: methods.self_signed_tls_client_auth.enabled,
    private_key_jwt: methods.private_key_jwt.enabled,
  };
  const noFiles = (path: ReadonlyArray<PropertyKey>) => {
    problem(path, 'files are not read at run time');
    return undefined;
  };
  const client = resolveClientEntry(cl, at, problem, noFiles, enabled, config.tokenExchange.enabled);
  crossCheckClient(cl, at, problem, targetIds, clientIds);
  if (issues.length > 0) throw new ConfigError(issues);
  return { client, metadata: metadata as z.input<typeof clientSchema> };
}

export type ClientMetadata = z.input<typeof clientSchema>;
