/**
 * Client resolution: one client's metadata (from the configuration or registered at run time)
 * checked and turned into a {@link ResolvedClient}: certificate matchers, JWK Sets, scopes,
 * recipient identifiers, cross references. Problems are collected with their paths.
 */
import { X509Certificate, createPublicKey, createHash, type KeyObject } from 'node:crypto';
import { isIP } from 'node:net';
import { isThumbprint } from '@tether/core';
import type { z } from 'zod';
import { ConfigError } from '../errors.js';
import { DnSyntaxError, parseRfc4514 } from '../dn.js';
import { GRANT_TOKEN_EXCHANGE, SAN_FIELDS, clientSchema, jwksSchema, scopeToken, type AuthMethod, type CertificateMatcher, type ParsedClient, type ResolvedClient, type ResolvedConfig } from './schema.js';

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

export function splitPemCertificates(pem: string): X509Certificate[] {
  const blocks = pem.match(/-----BEGIN CERTIFICATE-----[\s\S]+?-----END CERTIFICATE-----/g) ?? [];
  return blocks.map((b) => new X509Certificate(b));
}

export type Problem = (path: ReadonlyArray<PropertyKey>, message: string) => void;

/** Resolve one client's metadata (shared by the configuration and runtime registration). */
export function resolveClientEntry(
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
        if (!isThumbprint(k['x5t#S256'])) problem(kp.concat('x5t#S256'), 'not a SHA-256 thumbprint');
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
export function crossCheckClient(
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
