/**
 * Configuration, one concern per file: config/schema.ts (the schema with its defaults, and the
 * types), config/clients.ts (client resolution, also for clients registered at run time),
 * config/server.ts (resolution of the whole configuration). Every problem is collected with its
 * path and reported together as a {@link ConfigError}. Options are documented in packages/as/README.md.
 */
export * from './config/schema.js';
export { formatPath, resolveRegisteredClient } from './config/clients.js';
export { resolveConfig, loadConfigFile } from './config/server.js';
