#!/usr/bin/env node
// Runs node's test runner over every test/**/*.test.ts (Node 20 has no glob support in --test).
// Extra arguments narrow the run: `npm run test:unit -- proof` runs files whose path contains "proof".
//
// Every file runs under a 240 s deadline (node's --test-timeout applies to each file as a whole), two at a time.
// The files in LONG install packages from tarballs into empty projects, which builds native addons from source
// (better-sqlite3: about 90 s of CPU); they run after the others, one at a time, under a 15-minute deadline.
import { readdirSync } from 'node:fs';
import { join } from 'node:path';
import { spawn } from 'node:child_process';

const LONG = new Set([join('test', 'packaging', 'pack-install.test.ts')]);

function find(dir) {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) =>
    e.isDirectory() ? (e.name === 'helpers' || e.name === 'fixtures' ? [] : find(join(dir, e.name))) : e.name.endsWith('.test.ts') ? [join(dir, e.name)] : [],
  );
}

/** One `node --test` run over `files`; resolves its exit code. */
function run(files, concurrency, timeoutMs) {
  if (files.length === 0) return Promise.resolve(0);
  return new Promise((resolve) => {
    const child = spawn(
      process.execPath,
      ['--conditions=tether-source', '--import', 'tsx', '--test', `--test-concurrency=${concurrency}`, `--test-timeout=${timeoutMs}`, ...files],
      { stdio: 'inherit' },
    );
    child.on('exit', (code, signal) => resolve(signal ? 1 : (code ?? 1)));
  });
}

const filters = process.argv.slice(2);
const files = find('test').filter((f) => filters.length === 0 || filters.some((x) => f.includes(x))).sort();
if (files.length === 0) {
  console.error('no test files matched');
  process.exit(1);
}
const first = await run(files.filter((f) => !LONG.has(f)), 2, 240_000);
const second = await run(files.filter((f) => LONG.has(f)), 1, 900_000);
process.exit(first !== 0 ? first : second);
