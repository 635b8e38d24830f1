import { readFileSync } from 'node:fs';
import { wantsHelp } from './util/args.js';
import { resolveContext, type Command, type CommandContext } from './util/context.js';
import { describeError, isCliError, usageError } from './util/errors.js';
import { pkiInitCommand, pkiInitHelp } from './commands/pki-init.js';
import { pkiIssueCommand, pkiIssueHelp } from './commands/pki-issue.js';
import { devIssuerCommand, devIssuerHelp } from './commands/dev-issuer.js';
import { devTokenCommand, devTokenHelp } from './commands/dev-token.js';
import { resourceCommand, resourceHelp } from './commands/resource.js';
import { fetchCommand, fetchHelp } from './commands/fetch.js';
import { demoCommand, demoHelp } from './commands/demo.js';

export const mainHelp = `Usage: tether COMMAND [options]

TLS-session-bound OAuth access tokens (draft-mw-oauth-tls-session-bound-tokens).

Commands:
  pki init     create a development PKI (CA, localhost server, SPIFFE client certificates)
  pki issue    add a client or server certificate to an existing development CA
  dev-issuer   development helper: an ES256 token-signing key and its JWK Set
  dev-token    development helper: mint an RFC 9068 access token bound to a client certificate
  resource     run a protected echo resource that verifies session-bound tokens
  fetch        send session-bound requests (like curl)
  demo         the agent delegation chain over MCP (A -> B -> C) with sidecars and live attacks
  as           authorization server: mTLS client auth, client credentials, token exchange, tmb
  egress       egress sidecar: the agent speaks plain HTTP, the sidecar holds the key and adds proofs
  ingress      ingress sidecar: terminates mTLS, verifies token and binding, proxies to the local app

Run 'tether COMMAND --help' for a command's options. 'tether --version' prints the version.

Exit status: 0 success, 1 runtime failure, 2 bad arguments or unreadable input files.
`;

const pkiHelp = `Usage: tether pki init --out DIR [options]
       tether pki issue --ca-dir DIR (--client NAME | --server NAME [--san ...]) [options]

Subcommands:
  init    create a development PKI; 'tether pki init --help' for its options
  issue   add a certificate to an existing CA; 'tether pki issue --help' for its options
`;

interface Entry {
  run: Command;
  help: string;
  /** The command prints its own help and one-line errors. */
  own?: boolean;
}

const COMMANDS: Record<string, Entry> = {
  'pki init': { run: pkiInitCommand, help: pkiInitHelp },
  'pki issue': { run: pkiIssueCommand, help: pkiIssueHelp },
  'dev-issuer': { run: devIssuerCommand, help: devIssuerHelp },
  'dev-token': { run: devTokenCommand, help: devTokenHelp },
  resource: { run: resourceCommand, help: resourceHelp },
  fetch: { run: fetchCommand, help: fetchHelp },
  demo: { run: demoCommand, help: demoHelp },
  // The authorization server and the sidecars load their stack (pino, prom-client) only when asked for; their own functions
  // parse arguments, print help and report errors.
  as: { run: async (args, ctx) => (await import('@tether/as')).runAuthorizationServerCommand(args, ctx), help: '', own: true },
  egress: { run: async (args, ctx) => (await import('@tether/sidecar')).runEgressCommand(args, ctx), help: '', own: true },
  ingress: { run: async (args, ctx) => (await import('@tether/sidecar')).runIngressCommand(args, ctx), help: '', own: true },
};

function version(): string {
  try {
    return (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;
  } catch {
    return 'unknown';
  }
}

/** Which command `argv` names, and the arguments left for it. */
function route(argv: readonly string[]): { name: string; args: string[] } {
  const [first, ...rest] = argv;
  if (first === undefined) throw usageError('a command is required');
  if (first === 'pki') {
    const [sub, ...args] = rest;
    if (sub === undefined) throw usageError('a pki subcommand is required (init, issue)');
    if (sub === '--help' || sub === '-h') return { name: 'pki', args: ['--help'] };
    if (sub !== 'init' && sub !== 'issue') throw usageError(`unknown pki subcommand '${sub}' (init, issue)`);
    return { name: `pki ${sub}`, args };
  }
  if (!(first in COMMANDS)) {
    throw usageError(first.startsWith('-') ? `unknown option ${first}` : `unknown command '${first}'`);
  }
  return { name: first, args: rest };
}

/**
 * Run the tether command line: `argv` without the node and script paths. Never throws; writes
 * results to `context.stdout`, one-line errors to `context.stderr`, and resolves the exit code
 * (0 success, 1 runtime failure, 2 usage).
 */
export async function main(argv: readonly string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (argv.length === 1 && (argv[0] === '--help' || argv[0] === '-h' || argv[0] === 'help')) {
    ctx.stdout.write(mainHelp);
    return 0;
  }
  if (argv.length === 1 && (argv[0] === '--version' || argv[0] === '-V')) {
    ctx.stdout.write(`${version()}\n`);
    return 0;
  }
  let name = 'tether';
  try {
    const routed = route(argv);
    if (routed.name === 'pki') {
      ctx.stdout.write(pkiHelp);
      return 0;
    }
    name = `tether ${routed.name}`;
    const entry = COMMANDS[routed.name] as Entry;
    if (entry.own === true) return await entry.run(routed.args, ctx);
    if (wantsHelp(routed.args)) {
      ctx.stdout.write(entry.help);
      return 0;
    }
    return await entry.run(routed.args, ctx);
  } catch (error) {
    if (isCliError(error)) {
      const hint = error.exitCode === 2 ? ` (see '${name} --help')` : '';
      ctx.stderr.write(`${name}: ${describeError(error)}${hint}\n`);
      return error.exitCode;
    }
    ctx.stderr.write(`${name}: ${describeError(error)}\n`);
    return 1;
  }
}
