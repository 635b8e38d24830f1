/**
 * Waiting in tests: on a polled condition or a promise, always with a deadline that fails the test
 * with a message saying what did not happen (never a fixed sleep, never the runner's own timeout).
 */

export interface WaitOptions {
  /** Give up after this many milliseconds (default 5000). */
  timeoutMs?: number;
  /** Poll every this many milliseconds (default 10). */
  intervalMs?: number;
  /** What was expected, for the error thrown at the deadline. */
  message: string | (() => string);
}

const text = (message: string | (() => string)): string => (typeof message === 'function' ? message() : message);

/** Resolves once `condition()` is true; throws `timed out after N ms: <message>` if it is not by the deadline. */
export async function waitFor(condition: () => boolean | Promise<boolean>, options: WaitOptions): Promise<void> {
  const timeoutMs = options.timeoutMs ?? 5000;
  const intervalMs = options.intervalMs ?? 10;
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    if (await condition()) return;
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms: ${text(options.message)}`);
    await new Promise((resolve) => setTimeout(resolve, intervalMs));
  }
}

/**
 * `promise`, or a rejection `timed out after N ms: <message>` if it has not settled within `ms`;
 * `onTimeout` then runs (to destroy the request or socket that hangs).
 */
export async function withTimeout<T>(promise: Promise<T>, ms: number, message: string, onTimeout?: () => void): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const expired = new Promise<never>((_resolve, reject) => {
    timer = setTimeout(() => {
      reject(new Error(`timed out after ${ms} ms: ${message}`));
      onTimeout?.();
    }, ms);
  });
  try {
    return await Promise.race([promise, expired]);
  } finally {
    clearTimeout(timer);
  }
}

/**
 * An AbortSignal for one request (fetch `signal`): aborts after `ms` with an Error naming `what`,
 * which fetch and the response body's reads reject with. Its timer does not keep the process alive.
 */
export function deadline(ms: number, what: string): AbortSignal {
  const controller = new AbortController();
  setTimeout(() => controller.abort(new Error(`timed out after ${ms} ms: ${what}`)), ms).unref();
  return controller.signal;
}
