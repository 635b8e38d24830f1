/**
 * The demo's MCP stack lives in `@tether/demo`, an optional peer dependency of the CLI, so that
 * installing the CLI for the sidecars or a verifier does not pull in the MCP SDK.
 */
import { describeError, runtimeError } from '../util/errors.js';

export type DemoPackage = typeof import('@tether/demo');

/** Load `@tether/demo`, or say how to add it. */
export async function loadDemoPackage(): Promise<DemoPackage> {
  try {
    return await import('@tether/demo');
  } catch (error) {
    const code = (error as { code?: unknown }).code;
    if (code === 'ERR_MODULE_NOT_FOUND' && describeError(error).includes('@tether/demo')) {
      throw runtimeError("'tether demo' needs the @tether/demo package: npm install @tether/demo", error);
    }
    throw error;
  }
}
