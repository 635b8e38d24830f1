/** The forms of store URL `tether as --store` and the `store` configuration key accept. */
/** Checks the form of a store URL; returns a message for a bad one. */
export function storeUrlProblem(url: string): string | undefined {
  if (/^postgres(ql)?:\/\//.test(url)) {
    try {
      new URL(url);
      return undefined;
    } catch {
      return 'is not a valid postgres:// URL';
    }
  }
  if (/^sqlite:.+/.test(url)) return undefined;
  return "must be 'sqlite:PATH' or 'postgres://USER@HOST:PORT/DB'";
}
