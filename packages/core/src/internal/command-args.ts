/**
 * The one command-line argument parser of every tether command (`tether pki`, `fetch`, `resource`, `as`, `egress`,
 * `ingress`, ...): `node:util` parseArgs in strict mode, its errors turned into one short sentence naming the option.
 * Each command wraps the error in its own usage error (exit 2) and prints `tether CMD: message (see 'tether CMD --help')`.
 * Internal: exported from `@tether/core/internal` for tether's own packages, not a public API.
 */
import { parseArgs, type ParseArgsConfig } from 'node:util';

/** A command line that does not parse; `message` is one line, ready for the user. */
export class CommandArgsError extends Error {
  readonly code = 'ERR_TETHER_ARGS';
  constructor(message: string, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CommandArgsError';
  }
}

function translate(error: unknown): CommandArgsError {
  const code = (error as { code?: unknown }).code;
  const message = error instanceof Error ? error.message : String(error);
  const quoted = /'([^']+)'/.exec(message)?.[1];
  const fail = (text: string) => new CommandArgsError(text, { cause: error });
  if (code === 'ERR_PARSE_ARGS_UNKNOWN_OPTION' && quoted !== undefined) return fail(`unknown option ${quoted}`);
  if (code === 'ERR_PARSE_ARGS_UNEXPECTED_POSITIONAL' && quoted !== undefined) return fail(`unexpected argument '${quoted}'`);
  if (code === 'ERR_PARSE_ARGS_INVALID_OPTION_VALUE' && quoted !== undefined) {
    const option = quoted.replace(/ <value>$/, '');
    if (/argument missing/.test(message)) return fail(`option ${option} needs a value`);
    if (/ambiguous/.test(message)) return fail(`option ${option} needs a value (write ${option.split(', ').pop()}=VALUE for a value starting with '-')`);
    if (/does not take an argument/.test(message)) return fail(`option ${option} does not take a value`);
  }
  return fail(message.split(/\r?\n/).join(' '));
}

/** `util.parseArgs`, strict unless the config says otherwise; throws {@link CommandArgsError}. */
export function parseCommandArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  try {
    return parseArgs(config);
  } catch (error) {
    throw translate(error);
  }
}
