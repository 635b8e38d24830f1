/**
 * `application/x-www-form-urlencoded` request parameters (RFC 6749 appendix B). A parameter sent
 * without a value is treated as omitted (RFC 6749 section 3.1); a parameter that may appear once
 * and appears more than once is `invalid_request` (RFC 6749 section 3.1). `audience` and
 * `resource` may repeat (RFC 8693 section 2.1, RFC 8707 section 2).
 */
import { invalidRequest } from './errors.js';

export const REPEATABLE = new Set(['audience', 'resource']);
const MAX_PARAMETERS = 64;

export class FormParams {
  readonly #values = new Map<string, string[]>();

  static parse(body: string): FormParams {
    const form = new FormParams();
    if (body === '') return form;
    let count = 0;
    for (const [name, value] of new URLSearchParams(body)) {
      if (++count > MAX_PARAMETERS) throw invalidRequest('Too many request parameters', 'too_many_parameters');
      if (value === '') continue;
      const list = form.#values.get(name);
      if (list === undefined) form.#values.set(name, [value]);
      else list.push(value);
    }
    return form;
  }

  static empty(): FormParams {
    return new FormParams();
  }

  /** Single-valued parameter; `invalid_request` when repeated. */
  get(name: string): string | undefined {
    const list = this.#values.get(name);
    if (list === undefined) return undefined;
    if (list.length > 1 && !REPEATABLE.has(name)) throw invalidRequest(`Parameter ${name} is repeated`, 'duplicate_parameter');
    return list[0];
  }

  /** Required single-valued parameter. */
  require(name: string): string {
    const value = this.get(name);
    if (value === undefined) throw invalidRequest(`Parameter ${name} is required`, 'missing_parameter');
    return value;
  }

  /** Every value of a repeatable parameter. */
  all(name: string): string[] {
    return [...(this.#values.get(name) ?? [])];
  }

  has(name: string): boolean {
    return this.#values.has(name);
  }

  /** Throw `invalid_request` when any single-valued parameter is repeated. */
  assertNoDuplicates(): void {
    for (const [name, list] of this.#values) {
      if (list.length > 1 && !REPEATABLE.has(name)) throw invalidRequest(`Parameter ${name} is repeated`, 'duplicate_parameter');
    }
  }
}
