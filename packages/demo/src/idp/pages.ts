/** The identity provider's own HTML pages: login, consent, and an error page. No script, no external resource. */

const STYLE = 'body{font-family:sans-serif;max-width:22em;margin:3em auto}label,input,button{display:block;width:100%;margin:.4em 0}.error{color:#b00020}';

/** Forbids scripts and anything loaded from elsewhere; the forms post to this origin. */
export const PAGE_HEADERS = {
  'content-type': 'text/html; charset=utf-8',
  'content-security-policy': "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'; base-uri 'none'",
  'cache-control': 'no-store',
  'x-content-type-options': 'nosniff',
  'referrer-policy': 'no-referrer',
};

const ESCAPES: Record<string, string> = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };

export function escapeHtml(s: string): string {
  return s.replace(/[&<>"']/g, (c) => ESCAPES[c] as string);
}

function page(title: string, body: string): string {
  return `<!doctype html><html lang="en"><head><meta charset="utf-8"><title>${escapeHtml(title)}</title><style>${STYLE}</style></head><body><h1>${escapeHtml(title)}</h1>${body}</body></html>`;
}

export function loginPage(uid: string, clientId: string, error?: string, login = ''): string {
  const message = error === undefined ? '' : `<p class="error" id="error" role="alert">${escapeHtml(error)}</p>`;
  return page(
    'Sign in',
    `<p>to continue to <b>${escapeHtml(clientId)}</b></p>${message}` +
      `<form id="login" method="post" action="/interaction/${escapeHtml(uid)}/login">` +
      `<label for="username">Username</label><input id="username" name="username" autocomplete="username" required autofocus value="${escapeHtml(login)}">` +
      '<label for="password">Password</label><input id="password" name="password" type="password" autocomplete="current-password" required>' +
      '<button id="submit" type="submit">Sign in</button></form>',
  );
}

export function consentPage(uid: string, clientId: string, user: string, scopes: readonly string[], resources: readonly string[]): string {
  const items = scopes.map((s) => `<li>${escapeHtml(s)}</li>`).join('');
  const audiences = resources.map((r) => `<li><code>${escapeHtml(r)}</code></li>`).join('');
  return page(
    'Allow access?',
    `<p><b>${escapeHtml(clientId)}</b> asks to act as <b>${escapeHtml(user)}</b> with:</p><ul>${items}</ul>` +
      (audiences === '' ? '' : `<p>at</p><ul>${audiences}</ul>`) +
      `<form id="consent" method="post" action="/interaction/${escapeHtml(uid)}/confirm"><button id="approve" type="submit">Allow</button></form>` +
      `<form id="deny" method="post" action="/interaction/${escapeHtml(uid)}/abort"><button id="abort" type="submit">Deny</button></form>`,
  );
}

export function errorPage(message: string): string {
  return page('Sign-in failed', `<p class="error" id="error">${escapeHtml(message)}</p>`);
}
