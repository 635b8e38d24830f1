/**
 * The configuration schema (zod), with every default written once, and the types of the
 * configuration as written and as resolved. Options are documented in packages/as/README.md.
 */
import type { X509Certificate } from 'node:crypto';
import { z } from 'zod';
import { GRANT_TYPE_TOKEN_EXCHANGE, SCOPE_TOKEN, isThumbprint } from '@tether/core';
import type { NormalizedDn } from '../dn.js';

export const GRANT_CLIENT_CREDENTIALS = 'client_credentials';
export const GRANT_TOKEN_EXCHANGE = GRANT_TYPE_TOKEN_EXCHANGE;
export const AUTH_METHODS = ['tls_client_auth', 'self_signed_tls_client_auth', 'private_key_jwt'] as const;
export type AuthMethod = (typeof AUTH_METHODS)[number];
export const BINDING_LEVELS = ['none', 'certificate', 'session'] as const;
export type BindingLevel = (typeof BINDING_LEVELS)[number];
export const SIGNING_ALGORITHMS = ['ES256', 'EdDSA', 'RS256'] as const;
export type SigningAlgorithm = (typeof SIGNING_ALGORITHMS)[number];
export const ASSERTION_ALGORITHMS = ['ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519', 'PS256', 'PS384', 'PS512', 'RS256', 'RS384', 'RS512'] as const;

export const SAN_FIELDS = ['tls_client_auth_subject_dn', 'tls_client_auth_san_dns', 'tls_client_auth_san_uri', 'tls_client_auth_san_ip', 'tls_client_auth_san_email'] as const;
export type SanField = (typeof SAN_FIELDS)[number];

export const seconds = (max: number) => z.number().int().positive().max(max);
export const nonEmpty = z.string().min(1).max(2048);
export const identifier = z
  .string()
  .min(1)
  .max(512)
  .regex(/^[\x21-\x7e]+$/, 'must be printable ASCII without spaces');
export const scopeToken = SCOPE_TOKEN;
export const thumbprint = z.string().refine(isThumbprint, 'must be a base64url SHA-256 thumbprint (43 characters)');

export const listenSchema = z
  .object({
    host: z.string().min(1).max(255).default('127.0.0.1'),
    port: z.number().int().min(0).max(65535).default(8443),
    /** Public base URL of this listener when it differs from https://host:port (proxies, wildcard hosts). */
    publicUrl: z.url().optional(),
  })
  .strict();

export const jwksSchema = z.object({ keys: z.array(z.record(z.string(), z.unknown())).min(1).max(100) }).strict();

export const clientSchema = z
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

/** RFC 8693 token types an external subject token may be declared as. */
export const EXTERNAL_TOKEN_TYPES = ['urn:ietf:params:oauth:token-type:access_token', 'urn:ietf:params:oauth:token-type:id_token'] as const;
export type ExternalTokenType = (typeof EXTERNAL_TOKEN_TYPES)[number];
/** Asymmetric signature algorithms only: `none` and HMAC (a secret shared with the IdP) are never accepted. */
export const EXTERNAL_ALGORITHMS = ['RS256', 'RS384', 'RS512', 'PS256', 'PS384', 'PS512', 'ES256', 'ES384', 'ES512', 'EdDSA', 'Ed25519'] as const;
export const DEFAULT_EXTERNAL_ALGORITHMS = ['RS256', 'ES256', 'PS256', 'EdDSA'] as const;

/** An identity provider whose tokens may be exchanged (grants/token-exchange.ts, external/). */
export const trustedIssuerSchema = z
  .object({
    issuer: z.url(),
    jwksUri: z.url().optional(),
    discovery: z.boolean().default(false),
    caFiles: z.array(nonEmpty).max(20).default([]),
    audiences: z.array(nonEmpty).min(1).max(100),
    subjectTokenTypes: z.array(z.enum(EXTERNAL_TOKEN_TYPES)).min(1).default([...EXTERNAL_TOKEN_TYPES]),
    claims: z.array(z.string().regex(/^[A-Za-z0-9_.:-]{1,100}$/, 'must be a claim name')).max(50).default([]),
    clients: z.array(identifier).min(1).max(1000),
    algorithms: z.array(z.string().min(1).max(20)).min(1).max(20).default([...DEFAULT_EXTERNAL_ALGORITHMS]),
    /** Milliseconds for one JWKS or discovery fetch. */
    fetchTimeoutMs: z.number().int().min(100).max(60_000).default(5000),
  })
  .strict();

export const resourceSchema = z
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
    trustedIssuers: z.array(trustedIssuerSchema).max(100).default([]),
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
export type ParsedConfig = z.output<typeof configSchema>;
export type ParsedClient = z.output<typeof clientSchema>;

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

export interface ResolvedTrustedIssuer {
  issuer: string;
  /** Where the keys are: a JWKS URL, or the issuer's OIDC discovery document. */
  keys: { jwksUri: string } | { discovery: string };
  /** PEM trust anchors for the IdP's HTTPS (the default CAs when empty). */
  ca: string[];
  audiences: string[];
  subjectTokenTypes: Set<ExternalTokenType>;
  claims: string[];
  clients: Set<string>;
  algorithms: string[];
  fetchTimeoutMs: number;
}

export interface ResolvedConfig extends Omit<ParsedConfig, 'clients' | 'resources' | 'tls' | 'trustedIssuers'> {
  tls: { cert: string; key: string; allowTls12: boolean };
  /** Trust anchors for tls_client_auth (PEM) and their parsed forms. */
  clientCaPem: string[];
  clientCaCerts: X509Certificate[];
  clients: ResolvedClient[];
  resources: ResolvedResource[];
  trustedIssuers: ResolvedTrustedIssuer[];
}


export type ClientMetadata = z.input<typeof clientSchema>;
