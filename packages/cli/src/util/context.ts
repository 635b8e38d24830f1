/** Where a command writes and what it reads from its environment; `main` uses the process's. */
export interface CommandContext {
  stdout: { write(chunk: string | Uint8Array): unknown };
  stderr: { write(chunk: string): unknown };
  env: Record<string, string | undefined>;
  /**
   * Ends a long-running command (`resource`, `demo`). When absent, those commands end on
   * SIGTERM or SIGINT of this process.
   */
  signal?: AbortSignal;
}

/** A command: parses its own arguments, resolves its exit code, throws `CliError` on failure. */
export type Command = (args: string[], context?: Partial<CommandContext>) => Promise<number>;

export function resolveContext(context: Partial<CommandContext> = {}): CommandContext {
  return {
    stdout: context.stdout ?? process.stdout,
    stderr: context.stderr ?? process.stderr,
    env: context.env ?? process.env,
    ...(context.signal === undefined ? {} : { signal: context.signal }),
  };
}

/**
 * An AbortSignal for shutdown: `context.signal` if given, otherwise one that fires on the first
 * SIGTERM or SIGINT of this process. `dispose` removes the process listeners again.
 */
export function shutdownSignal(context: CommandContext): { signal: AbortSignal; dispose(): void } {
  if (context.signal !== undefined) return { signal: context.signal, dispose() {} };
  const controller = new AbortController();
  const onSignal = (name: NodeJS.Signals) => controller.abort(name);
  process.once('SIGTERM', onSignal);
  process.once('SIGINT', onSignal);
  return {
    signal: controller.signal,
    dispose() {
      process.off('SIGTERM', onSignal);
      process.off('SIGINT', onSignal);
    },
  };
}
