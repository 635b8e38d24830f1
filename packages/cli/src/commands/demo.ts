/**
 * `tether demo`: the agent delegation chain over MCP (`@tether/demo`), or with `--basic` the
 * earlier single-resource demo (demo-basic.ts).
 */
import { once } from 'node:events';
import { KEY_TYPES, type KeyType } from '@tether/pki';
import { integer, oneOf, parseCommandArgs, wantsHelp } from '../util/args.js';
import { resolveContext, shutdownSignal, type CommandContext } from '../util/context.js';
import { describeError, runtimeError, usageError } from '../util/errors.js';
import { formatDemoReport, runDemo } from './demo-basic.js';
import { loadDemoPackage } from './demo-package.js';

export { runDemo, formatDemoReport, type DemoReport, type AttackResult } from './demo-basic.js';

/** How long `--interactive` waits for the person to log in. */
const INTERACTIVE_LOGIN_MS = 300_000;

export const demoHelp = `Usage: tether demo [--json] [--calls N] [--keep-running] [--interactive]
       tether demo --basic [--json] [--requests N] [--key-type TYPE]

The agent delegation chain over MCP, every box a separate process on loopback:

  alice logs in at the identity provider (authorization code + PKCE) -> agent A (MCP client,
    official SDK; holds tokens, no key) -> A's egress sidecar (A's key) ==mTLS==> B's ingress
    -> agent B (MCP server) -> token exchange at the AS (through B's egress, as agent-b)
    -> B's egress (B's key) ==mTLS==> C's ingress -> service C

In a temporary directory it creates a development PKI (agent-a, agent-b, service-c,
alice-laptop, thief, intruder), starts an OpenID Provider (oidc-provider) with users alice, bob
and carol, the authorization server (dev mode, trusting that identity provider's tokens), the
sidecars, B, C and A. Each user logs in at the identity provider (scripted: the demo posts its
login and consent forms); A finds the AS from B's first 401 (RFC 9728 resource_metadata) and
exchanges the user's IdP token for its own session-bound token for B (RFC 8693, RFC 8707
resource). Each user's MCP session makes N lookups (B exchanges the token for a C token and calls
C, which returns sub and act chain: sub=alice act=agent-b <- agent-a) and one streamed tool call
(progress notifications). A token alice's own device bound to A's sidecar key (tmb) is used
through the sidecar. Then the attacks:
  T3   A's token, exfiltrated from A's process, replayed with the thief's certificate
  T4   token + captured proof replayed on a new connection (thief certificate)
  T1   the same with A's own certificate (exporter mismatch)
  T5a  B's token for C presented at B's ingress by A;  T5b: at C's ingress by A
  T6   the stolen token taken to the AS for exchange by the thief
  IDP1 alice's IdP token, stolen from her browser, presented at B's ingress
  IDP2 the same token exchanged by the thief (registered, not allowed for that issuer)
  IDP3 the same token exchanged by an intruder (a certificate the AS does not register)
  TMB  A presenting its tmb-bound token directly (it has no key, so no client certificate)
The report shows per hop: requests, connections, tokens, proofs signed, full verifications,
signatures per request; per attack: status, error code, expected, result; and the time taken.

Options:
  --json            print the report as one JSON document
  --calls N         lookups per user (default 20)
  --keep-running    leave the stack up after the report and print its URLs, CA and a token
                    until SIGINT/SIGTERM
  --interactive     alice logs in with a browser: the authorization URL, her user name and
                    password are printed (on stderr), and the demo waits up to 5 minutes for
                    the login (bob and carol log in scripted)
  --basic           the earlier single-resource demo (T1, T2, T4 against 'tether resource'),
                    with --requests N (default 100) and --key-type p256|p384|ed25519|rsa
  -h, --help        show this help

Exit status: 0 when every honest call succeeded and every attack was refused with the
expected status and error code; 1 otherwise; 2 on bad arguments.
`;

const OPTIONS = {
  json: { type: 'boolean' },
  basic: { type: 'boolean' },
  requests: { type: 'string' },
  'key-type': { type: 'string' },
  calls: { type: 'string' },
  'keep-running': { type: 'boolean' },
  interactive: { type: 'boolean' },
} as const;

async function basicDemo(values: { json?: boolean; requests?: string; 'key-type'?: string }, ctx: CommandContext): Promise<number> {
  const requestsPerUser = integer(values.requests, '--requests', 1, 10_000, 100);
  const keyType = oneOf<KeyType>(values['key-type'], '--key-type', KEY_TYPES, 'p256');
  const shutdown = shutdownSignal(ctx);
  try {
    const report = await runDemo({ requestsPerUser, keyType, signal: shutdown.signal });
    ctx.stdout.write(values.json === true ? `${JSON.stringify(report)}\n` : formatDemoReport(report));
    return report.ok ? 0 : 1;
  } finally {
    shutdown.dispose();
  }
}

/** `tether demo`. */
export async function demoCommand(args: string[], context?: Partial<CommandContext>): Promise<number> {
  const ctx = resolveContext(context);
  if (wantsHelp(args)) {
    ctx.stdout.write(demoHelp);
    return 0;
  }
  const { values } = parseCommandArgs({ args, options: OPTIONS });
  if (values.basic === true) {
    if (values.calls !== undefined || values['keep-running'] === true || values.interactive === true) throw usageError('--calls, --keep-running and --interactive are options of the MCP demo, not of --basic');
    return basicDemo(values, ctx);
  }
  if (values.requests !== undefined || values['key-type'] !== undefined) throw usageError('--requests and --key-type need --basic');
  const callsPerUser = integer(values.calls, '--calls', 1, 1000, 20);
  const keepRunning = values['keep-running'] === true;
  const json = values.json === true;
  const { runAgentChainDemo, formatDemoReport: formatChain, formatStack, interactiveLogin, scriptedLogin } = await loadDemoPackage();
  const shutdown = shutdownSignal(ctx);
  // --interactive: alice in the browser of the person at the terminal; the others scripted.
  const inBrowser = interactiveLogin((text) => ctx.stderr.write(`${text}\n`), INTERACTIVE_LOGIN_MS);
  try {
    const report = await runAgentChainDemo({
      callsPerUser,
      signal: shutdown.signal,
      ...(values.interactive === true ? { login: (c) => (c.user === 'alice' ? inBrowser(c) : scriptedLogin(c)) } : {}),
      ...(keepRunning
        ? {
            hold: async (stack, early) => {
              ctx.stdout.write(json ? `${JSON.stringify({ report: early, stack })}\n` : formatChain(early) + formatStack(stack));
              if (!shutdown.signal.aborted) await once(shutdown.signal, 'abort');
            },
          }
        : {}),
    });
    if (!keepRunning) ctx.stdout.write(json ? `${JSON.stringify(report)}\n` : formatChain(report));
    return report.ok ? 0 : 1;
  } catch (error) {
    if (shutdown.signal.aborted) throw runtimeError('interrupted', error);
    throw runtimeError(`demo failed: ${describeError(error)}`, error);
  } finally {
    shutdown.dispose();
  }
}
