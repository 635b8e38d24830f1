/** Checking a login against the configured users. */
import { createHash, randomBytes, timingSafeEqual } from 'node:crypto';
import type { IdentityProviderUser } from './options.js';

// Compared against when the login name is unknown, so that case costs the same as a wrong password.
const randomPlaceholder = randomBytes(32).toString('hex');

const digest = (s: string): Buffer => createHash('sha256').update(s, 'utf8').digest();

/** The user with this login name and password, or undefined; the password comparison takes constant time. */
export function checkPassword(users: readonly IdentityProviderUser[], login: string, password: string): IdentityProviderUser | undefined {
  const user = users.find((u) => u.sub === login);
  const ok = timingSafeEqual(digest(password), digest(user?.password ?? randomPlaceholder));
  return ok && user !== undefined ? user : undefined;
}
