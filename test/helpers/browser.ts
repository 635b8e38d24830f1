/**
 * A real browser for tests: Debian's Chromium (/usr/bin/chromium) driven by puppeteer-core over a
 * pipe (no DevTools port), headless, with a fresh profile in a temp dir. puppeteer-core downloads
 * no browser.
 *
 * Trust: the test servers' certificates chain to a per-run dev CA that Chromium does not know.
 * Rather than `acceptInsecureCerts` (any certificate, for every host) or an NSS database in a fake
 * HOME (certutil, and Chromium's HOME-relative lookup), the browser is told to accept exactly the
 * given server keys (`--ignore-certificate-errors-spki-list`, honoured only with --user-data-dir):
 * a different key still fails, and everything else about TLS is checked as usual.
 */
import { X509Certificate, createHash } from 'node:crypto';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import puppeteer, { type Browser, type Page } from 'puppeteer-core';

export const CHROMIUM = '/usr/bin/chromium';

export interface TestBrowser {
  browser: Browser;
  /** A new tab whose navigations and waits time out after the browser's deadline. */
  newPage(): Promise<Page>;
  /** Closes the browser (killing it by PID if it does not close in time) and removes its profile. */
  close(): Promise<void>;
}

/** base64(SHA-256(SubjectPublicKeyInfo)) of a PEM certificate, as Chromium's SPKI list wants it. */
export function spkiHash(certPem: string | Buffer): string {
  const spki = new X509Certificate(certPem).publicKey.export({ type: 'spki', format: 'der' });
  return createHash('sha256').update(spki).digest('base64');
}

export async function launchChromium(options: { trustServerCerts: ReadonlyArray<string | Buffer>; timeoutMs?: number }): Promise<TestBrowser> {
  const timeoutMs = options.timeoutMs ?? 20_000;
  const userDataDir = await mkdtemp(join(tmpdir(), 'tether-chromium-'));
  let browser: Browser;
  try {
    browser = await puppeteer.launch({
      executablePath: CHROMIUM,
      headless: true,
      pipe: true,
      userDataDir,
      timeout: timeoutMs,
      protocolTimeout: timeoutMs,
      handleSIGINT: false,
      handleSIGTERM: false,
      handleSIGHUP: false,
      args: [
        '--headless',
        '--no-sandbox',
        '--disable-gpu',
        '--disable-quic',
        '--no-first-run',
        '--disable-background-networking',
        '--disable-component-update',
        '--disable-sync',
        // Only loopback is reachable in tests; nothing else resolves, so nothing else is tried.
        '--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1',
        `--ignore-certificate-errors-spki-list=${options.trustServerCerts.map(spkiHash).join(',')}`,
      ],
    });
  } catch (error) {
    await rm(userDataDir, { recursive: true, force: true });
    throw error;
  }
  const pid = browser.process()?.pid;
  return {
    browser,
    async newPage() {
      const page = await browser.newPage();
      page.setDefaultTimeout(timeoutMs);
      page.setDefaultNavigationTimeout(timeoutMs);
      return page;
    },
    async close() {
      const closed = await Promise.race([browser.close().then(() => true, () => false), new Promise<false>((r) => setTimeout(() => r(false), 5_000).unref())]);
      if (!closed && pid !== undefined) {
        // puppeteer starts Chromium as a process group leader: its renderers go with it.
        try {
          process.kill(-pid, 'SIGKILL');
        } catch {
          // Already gone.
        }
      }
      await rm(userDataDir, { recursive: true, force: true, maxRetries: 3 });
    },
  };
}
