#!/usr/bin/env node
// The `tether` executable: dispatch to the commands (see main.ts) and exit with their status.
// Only node built-ins and the error helper are imported statically, so even a broken install
// (a missing module of @tether/core) is reported as one line rather than a stack trace.
import { describeError } from './util/errors.js';

function die(error: unknown): void {
  process.stderr.write(`tether: ${describeError(error)}\n`);
  process.exit(1);
}

// Whatever escapes a command is reported as one line, never as a stack trace.
process.on('uncaughtException', die);
process.on('unhandledRejection', die);

let code: number;
try {
  const { main } = await import('./main.js');
  code = await main(process.argv.slice(2));
} catch (error) {
  die(error);
  code = 1;
}
// Flush, then exit even if a library left a handle open.
process.stdout.write('', () => process.exit(code));
