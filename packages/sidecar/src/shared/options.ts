/**
 * Option validation shared by both sidecars, so their errors read alike: every message names the
 * CLI flag and the configuration key (`--flag (key)`, or the key alone when it has no flag).
 */
import { SidecarConfigError } from '../config.js';

/** Largest delay a Node timer honours (about 24.8 days); longer ones fire after 1 ms. */
export const MAX_TIMER_MS = 2 ** 31 - 1;

/** Names an option by its flag and key, and builds the errors that name it. */
export class OptionNames<K extends string> {
  constructor(private readonly flags: Partial<Record<K, string>>) {}

  name(key: K): string {
    const flag = this.flags[key];
    return flag === undefined ? key : `${flag} (${key})`;
  }

  invalid(key: K, problem: string): SidecarConfigError {
    return new SidecarConfigError(`${this.name(key)} ${problem}`);
  }

  /**
   * A duration in milliseconds up to {@link MAX_TIMER_MS}: positive, or from 0 when `zero` says
   * what 0 means ("no limit", "never"). Options with a flag take seconds on the command line.
   */
  durationMs(key: K, value: unknown, rule: { positive: true } | { zero: string }): number {
    const positive = 'positive' in rule;
    const ok = typeof value === 'number' && Number.isFinite(value) && (positive ? value > 0 : value >= 0) && value <= MAX_TIMER_MS;
    if (!ok) {
      const unit = this.flags[key] === undefined ? 'milliseconds' : 'seconds on the command line, milliseconds in the configuration';
      throw this.invalid(key, `must be a ${positive ? 'positive number' : `number from 0 (${rule.zero})`} of ${unit}, at most ${MAX_TIMER_MS} ms`);
    }
    return value;
  }
}
