/**
 * `tether demo --interactive` (issue 16): alice logs in with a real browser. The built CLI prints
 * the identity provider's authorization URL; headless Chromium (Debian's, driven by
 * puppeteer-core) logs in on the IdP's own login and consent pages; the code reaches the demo's
 * loopback redirect; agent A exchanges alice's IdP token at tether's AS, and the call through the
 * egress and ingress shows B the principal {sub: alice, act: {sub: agent-a}} (C: agent-b <- agent-a).
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { dirname, join } from 'node:path';
import { after, before, test } from 'node:test';
import type { DemoReport } from '@tether/demo';
import { launchChromium } from '../helpers/browser.js';
import { BIN, ROOT, ensureBuilt, killAll } from '../cli/helpers/cli.js';

before(ensureBuilt);
after(killAll);

const DEADLINE_MS = 90_000;

interface Prompt {
  url: string;
  password: string;
  caFile: string;
}

/** The login prompt on stderr: user, password, CA file and authorization URL. */
function parsePrompt(stderr: string): Prompt | undefined {
  const m = /Log in as alice \(password (\S+)\)[^\n]*\n\s+(https:\/\/\S+)\n\s+\(its certificate is from the demo CA, (\S+);/.exec(stderr);
  return m === null ? undefined : { password: m[1] as string, url: m[2] as string, caFile: m[3] as string };
}

test('demo --interactive: alice logs in with Chromium on the IdP pages; the chain starts at her', { timeout: DEADLINE_MS + 10_000 }, async () => {
  const child = spawn(process.execPath, [BIN, 'demo', '--interactive', '--json', '--calls', '2'], { cwd: ROOT, stdio: ['ignore', 'pipe', 'pipe'] });
  const killer = setTimeout(() => child.kill('SIGKILL'), DEADLINE_MS);
  let stdout = '';
  let stderr = '';
  child.stdout.setEncoding('utf8').on('data', (c: string) => (stdout += c));
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  const prompt = new Promise<Prompt>((resolve, reject) => {
    child.stderr.setEncoding('utf8').on('data', (c: string) => {
      stderr += c;
      const p = parsePrompt(stderr);
      if (p !== undefined) resolve(p);
    });
    void exited.then((code) => reject(new Error(`the demo exited (${String(code)}) before printing a login URL: ${stderr}`)));
  });
  let chromium: Awaited<ReturnType<typeof launchChromium>> | undefined;
  try {
    const { url, password, caFile } = await prompt;
    assert.match(url, /^https:\/\/127\.0\.0\.1:\d+\/auth\?/);
    const params = new URL(url).searchParams;
    assert.equal(params.get('code_challenge_method'), 'S256');
    assert.equal(params.get('resource'), 'https://as.tether.local');
    assert.match(params.get('redirect_uri') ?? '', /^http:\/\/127\.0\.0\.1:\d+\/callback$/);
    // The demo's server certificate (the IdP's), next to the CA file it names.
    chromium = await launchChromium({ trustServerCerts: [readFileSync(join(dirname(caFile), 'server.pem'))] });
    const page = await chromium.newPage();
    await page.goto(url);
    await page.type('#username', 'alice');
    await page.type('#password', password);
    await Promise.all([page.waitForNavigation(), page.click('#submit')]);
    await Promise.all([page.waitForNavigation(), page.click('#approve')]);
    assert.match(page.url(), /^http:\/\/127\.0\.0\.1:\d+\/callback\?/, 'the browser landed on the demo’s loopback redirect');

    assert.equal(await exited, 0, stderr);
    const report = JSON.parse(stdout.trim()) as DemoReport;
    assert.equal(report.ok, true);
    const byUser = new Map(report.honest.principals.map((p) => [p.user, p]));
    const alice = byUser.get('alice');
    assert.match(alice?.login ?? '', /in the browser of the person at the terminal/);
    assert.deepEqual(alice?.atB, { sub: 'alice', actChain: ['agent-a'] }, 'B’s ingress verified alice, acted for by agent A');
    assert.deepEqual([alice?.sub, alice?.actChain], ['alice', ['agent-b', 'agent-a']]);
    assert.match(byUser.get('bob')?.login ?? '', /scripted/);
    assert.ok(report.attacks.every((a) => a.pass));
  } finally {
    clearTimeout(killer);
    await chromium?.close();
    child.kill('SIGKILL');
  }
});
