/**
 * `@tether/core/internal`: helpers tether's own packages (the CLI, the authorization server, the sidecars) share.
 * Not a public API: it may change in any release.
 */
export { CommandArgsError, parseCommandArgs } from './command-args.js';
