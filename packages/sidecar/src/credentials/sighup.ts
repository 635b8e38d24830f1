/**
 * SIGHUP as "reload your certificate". Installing a listener also replaces Node's default action
 * for SIGHUP (terminate the process).
 */

/**
 * Run `handler` on every SIGHUP; returns a function that removes the listener (idempotent). A
 * handler that throws is reported to `onError` (if given) instead of crashing the process.
 */
export function onSighup(handler: () => void, onError?: (error: unknown) => void): () => void {
  const listener = () => {
    try {
      handler();
    } catch (error) {
      onError?.(error);
    }
  };
  process.on('SIGHUP', listener);
  let installed = true;
  return () => {
    if (!installed) return;
    installed = false;
    process.off('SIGHUP', listener);
  };
}
