/**
 * @tether/cli: the `tether` command line as functions. Each command takes its arguments (without
 * the command name) and an optional context (stdout, stderr, env, an AbortSignal for the
 * long-running ones), resolves its exit code and throws `CliError` (exit code 1 or 2) on
 * failure; `main` dispatches and never throws.
 */
export { main, mainHelp } from './main.js';
export { pkiInitCommand, pkiInitHelp } from './commands/pki-init.js';
export { devIssuerCommand, devIssuerHelp, writeDevIssuer, type DevIssuer } from './commands/dev-issuer.js';
export { devTokenCommand, devTokenHelp, mintDevToken, DEV_ISSUER, DEV_AUDIENCE, type DevTokenOptions, type TokenBinding } from './commands/dev-token.js';
export {
  resourceCommand,
  resourceHelp,
  startResource,
  type ResourceOptions,
  type ResourceStats,
  type RunningResource,
} from './commands/resource.js';
export { fetchCommand, fetchHelp, type FetchResult } from './commands/fetch.js';
export { demoCommand, demoHelp, runDemo, formatDemoReport, type DemoReport, type AttackResult } from './commands/demo.js';
export { CliError, usageError, runtimeError } from './util/errors.js';
export type { Command, CommandContext } from './util/context.js';
