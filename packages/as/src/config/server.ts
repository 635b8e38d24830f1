/**
 * Server resolution: the whole configuration validated against the schema, referenced files read,
 * TLS credentials, client CAs, resources, clients and cross references checked; every problem
 * reported together with its path (`clients[2].jwks.keys[0]`) as a {@link ConfigError}.
 */
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { isAbsolute, resolve as resolvePath } from 'node:path';
import { ConfigError } from '../errors.js';
import { storeUrlProblem } from '../store/url.js';
import { crossCheckClient, formatPath, resolveClientEntry, splitPemCertificates } from './clients.js';
import { resolveTrustedIssuers } from './trusted-issuers.js';
import { configSchema, type AuthMethod, type ResolvedClient, type ResolvedConfig, type ResolvedResource } from './schema.js';

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

  // Identity providers whose tokens may be exchanged
  const trustedIssuers = resolveTrustedIssuers(c, problem, file, c.issuer);

  if (issues.length > 0) throw new ConfigError(issues);
  const anchored = (name: string) => (isAbsolute(name) ? name : resolvePath(baseDir, name));
  return {
    ...c,
    // Relative like every other file name in the configuration, not to wherever the server was started.
    ...(c.dataDir === undefined ? {} : { dataDir: anchored(c.dataDir) }),
    ...(c.store?.startsWith('sqlite:') === true ? { store: `sqlite:${anchored(c.store.slice('sqlite:'.length))}` } : {}),
    keyEncryption,
    tls: { cert: cert as string, key: key as string, allowTls12: c.tls.allowTls12 },
    clientCaPem: caPem,
    clientCaCerts: caCerts,
    clients,
    resources,
    trustedIssuers,
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
