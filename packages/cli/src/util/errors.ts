/**
 * Errors a command raises on purpose. `main` prints them as one line on stderr and exits with
 * `exitCode`: 2 for bad input (arguments, unreadable or malformed files), 1 for runtime failures
 * (network, a refused request, a port in use). Nothing else reaches the user as a stack trace.
 */
export class CliError extends Error {
  readonly exitCode: 1 | 2;
  constructor(message: string, exitCode: 1 | 2, options?: { cause?: unknown }) {
    super(message, options);
    this.name = 'CliError';
    this.exitCode = exitCode;
  }
}

/** Bad input: exit code 2. */
export function usageError(message: string, cause?: unknown): CliError {
  return new CliError(message, 2, cause === undefined ? undefined : { cause });
}

/** Runtime failure: exit code 1. */
export function runtimeError(message: string, cause?: unknown): CliError {
  return new CliError(message, 1, cause === undefined ? undefined : { cause });
}

export function isCliError(value: unknown): value is CliError {
  return value instanceof CliError;
}

/** A one-line description of any thrown value: its message, first line only, without a stack. */
export function describeError(value: unknown): string {
  let message: string;
  if (value instanceof Error) {
    const code = (value as { code?: unknown }).code;
    message = value.message || (typeof code === 'string' ? code : value.name);
  } else message = String(value);
  return message
    .split(/\r?\n/)
    .map((l) => l.trim())
    .filter((l) => l !== '')
    .join(' ');
}
