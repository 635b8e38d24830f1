/**
 * Connection churn alone against the soak's resource server (bench/soak-rs.ts): how the server's
 * memory outside the V8 heap moves with the number of TLS 1.3 mTLS connections opened and closed
 * (issue 13 item 5; bench/results/soak-first-hour.md, diagnosis). Minutes instead of the soak's hour.
 *
 *   node --conditions=tether-source --import tsx bench/churn-memory.ts --connections 20000
 *
 * Each connection: handshake with the client certificate (optionally resuming the previous TLS
 * session), `--requests` requests each with a fresh Session-Binding-Proof, close. `--parallel`
 * connections at a time, HTTP/2 and HTTP/1.1 alternating (`--protocol h2|http/1.1|both`). The
 * server is sampled after a full GC every `--sample-every` connections; the report is the
 * least-squares slope of RSS, anon memory and anon outside the V8 heap (malloc) per 10 000
 * connections after `--warmup` connections.
 *
 * Options: --connections n (20000), --warmup n (2000), --sample-every n (1000), --parallel n (8),
 * --requests n (1), --protocol (both), --resume, --rs-allocator glibc|jemalloc|auto (glibc),
 * --rs-node-options "FLAGS", --rs-env "K=V ..." (extra environment for the server), --heaptrack
 * FILE (attach heaptrack to the server after warm-up; its data is written when the server exits),
 * --deadline s (900), --json FILE (samples and slopes).
 *
 * Deadlines: every connection step has REQUEST_TIMEOUT_MS, the run `--deadline`; the server and
 * heaptrack are killed by PID on every exit path (bench/children.ts).
 */
import { spawn } from 'node:child_process';
import { X509Certificate } from 'node:crypto';
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { createDevPki } from '@tether/pki';
import { sessionBoundConfirmation } from '@tether/core';
import { TestIssuer } from '../test/helpers/issuer.js';
import { openRawConnection } from '../test/adapters/raw.js';
import { ForkedChild, installExitGuards, killAllSync, track, trackTempDir, untrack } from './children.js';
import { Outstanding, REQUEST_TIMEOUT_MS, withRunDeadline } from './deadline.js';
import type { RsSample } from './soak-rs.js';
import { arg, num } from './args.js';
import { writeSoakRsDir } from './soak-rs-dir.js';
import { resolveAllocator } from './soak-memory.js';

const here = dirname(fileURLToPath(import.meta.url));
const MiB = 1024 * 1024;


interface Point {
  connections: number;
  t: number;
  sample: RsSample;
}

/** Least-squares slope of `v` against connections, per 10 000 connections. */
function slopePer10k(points: Point[], v: (s: RsSample) => number): number {
  const n = points.length;
  if (n < 2) return 0;
  const mx = points.reduce((a, p) => a + p.connections, 0) / n;
  const my = points.reduce((a, p) => a + v(p.sample), 0) / n;
  let num = 0;
  let den = 0;
  for (const p of points) {
    num += (p.connections - mx) * (v(p.sample) - my);
    den += (p.connections - mx) ** 2;
  }
  return den === 0 ? 0 : (num / den) * 10_000;
}

const outside = (s: RsSample) => (s.rssAnon - s.heapTotal) / MiB;

async function attachHeaptrack(pid: number, file: string): Promise<void> {
  const ht = spawn('heaptrack', ['-p', String(pid), '-o', file], { stdio: ['ignore', 'pipe', 'pipe'] });
  if (ht.pid === undefined) throw new Error('could not start heaptrack');
  track(ht.pid, 'heaptrack');
  ht.once('exit', () => untrack(ht.pid));
  let out = '';
  ht.stdout.on('data', (d: Buffer) => (out += d.toString()));
  ht.stderr.on('data', (d: Buffer) => (out += d.toString()));
  // heaptrack prints "injecting heaptrack into application via GDB, this might take some time..."
  // and then "injection finished" once the preload library runs in the server.
  const deadline = Date.now() + 60_000;
  while (!/injection finished/.test(out)) {
    if (Date.now() > deadline || ht.exitCode !== null) throw new Error(`heaptrack did not attach: ${out}`);
    await new Promise((r) => setTimeout(r, 200));
  }
  console.log(`heaptrack attached to ${pid}, writing ${file}`);
}

async function main(): Promise<void> {
  installExitGuards();
  const total = Math.floor(num('connections', 20_000));
  const warmup = Math.floor(num('warmup', 2000));
  const sampleEvery = Math.max(100, Math.floor(num('sample-every', 1000)));
  const parallel = Math.max(1, Math.floor(num('parallel', 8)));
  const requests = Math.max(1, Math.floor(num('requests', 1)));
  const protocolArg = arg('protocol') ?? 'both';
  const resume = process.argv.includes('--resume');
  const deadlineS = num('deadline', 900);
  const allocator = resolveAllocator(arg('rs-allocator') ?? 'glibc');
  const rsEnv = Object.fromEntries((arg('rs-env') ?? '').split(' ').filter((a) => a.includes('=')).map((kv) => [kv.slice(0, kv.indexOf('=')), kv.slice(kv.indexOf('=') + 1)]));
  const rsNodeOptions = (arg('rs-node-options') ?? '').split(' ').filter((a) => a !== '');
  const protocols: Array<'h2' | 'http/1.1'> = protocolArg === 'both' ? ['h2', 'http/1.1'] : [protocolArg as 'h2' | 'http/1.1'];

  const dir = mkdtempSync(join(tmpdir(), 'tether-churn-'));
  trackTempDir(dir);
  const pki = await createDevPki({ clients: ['client'] });
  const client = pki.clients.client as { cert: string; key: string };
  const issuer = await TestIssuer.create();
  writeSoakRsDir(dir, pki, issuer.jwks, { cachePerConnection: 32, cacheMax: 512 });
  const rs = new ForkedChild('rs', join(here, 'soak-rs.ts'), 30_000, { args: [dir], execArgv: ['--expose-gc', ...rsNodeOptions], env: { ...allocator.env, ...rsEnv } });
  const { port } = (await rs.ready) as { port: number };
  const origin = `https://127.0.0.1:${port}`;
  const cnf = sessionBoundConfirmation(new X509Certificate(client.cert));
  const tokens = await Promise.all(Array.from({ length: 50 }, (_, i) => issuer.mint({ cnf, sub: `user-${i}` }, { expiresIn: 3600 })));

  const outstanding = new Outstanding();
  const started = Date.now();
  const points: Point[] = [];
  let done = 0;
  let next = 0;
  let failures = 0;
  let resumed = 0;
  const sessions = new Map<string, Buffer>();
  const take = async () => {
    const s = await rs.ask<RsSample>({ cmd: 'sample' }, 60_000);
    points.push({ connections: done, t: (Date.now() - started) / 1000, sample: s });
    console.log(
      `${done} conns ${((Date.now() - started) / 1000).toFixed(0)} s: rss ${(s.rss / MiB).toFixed(1)} anon ${(s.rssAnon / MiB).toFixed(1)} heapTotal ${(s.heapTotal / MiB).toFixed(1)} heapUsed ${(s.heapUsed / MiB).toFixed(1)} outside ${outside(s).toFixed(1)} external ${(s.external / MiB).toFixed(2)} open ${s.openConnections} accepted ${s.connectionsAccepted}`,
    );
  };

  async function one(i: number): Promise<void> {
    const protocol = protocols[i % protocols.length] as 'h2' | 'http/1.1';
    const what = `connection ${i} (${protocol})`;
    const id = outstanding.begin(what);
    try {
      const session = resume ? sessions.get(protocol) : undefined;
      const conn = await withRunDeadline(what, REQUEST_TIMEOUT_MS, outstanding, openRawConnection(origin, client, { protocol, ca: pki.ca.cert, ...(session === undefined ? {} : { session }) }));
      try {
        if (conn.socket.isSessionReused()) resumed++;
        for (let r = 0; r < requests; r++) {
          const token = tokens[(i + r) % tokens.length] as string;
          const proof = await conn.proof(token);
          const res = await withRunDeadline(what, REQUEST_TIMEOUT_MS, outstanding, conn.request({ path: '/churn', headers: [['authorization', `Bearer ${token}`], ['session-binding-proof', proof]] }));
          if (res.status !== 200) failures++;
        }
        if (resume) {
          const ticket = conn.session();
          if (ticket !== undefined) sessions.set(protocol, ticket);
        }
      } finally {
        await withRunDeadline(what, REQUEST_TIMEOUT_MS, outstanding, conn.close());
      }
    } catch (error) {
      failures++;
      if (failures < 5) console.error(`${what}: ${String(error)}`);
    } finally {
      outstanding.end(id);
    }
  }

  let sampling: Promise<void> = Promise.resolve();
  let nextSample = warmup;
  let heaptrackAttached = arg('heaptrack') === undefined;
  const worker = async () => {
    while (next < total) {
      const i = next++;
      await one(i);
      done++;
      if (done >= nextSample) {
        nextSample += sampleEvery;
        if (!heaptrackAttached) {
          heaptrackAttached = true;
          sampling = sampling.then(() => attachHeaptrack(rs.pid, arg('heaptrack') as string));
        }
        sampling = sampling.then(take);
        await sampling;
      }
    }
  };
  await withRunDeadline('churn run', deadlineS * 1000, outstanding, Promise.all(Array.from({ length: parallel }, worker)));
  await sampling;
  // Connections all closed: one more sample once the server has seen the closes.
  await new Promise((r) => setTimeout(r, 2000));
  await take();
  await rs.exit(arg('heaptrack') === undefined ? 5000 : 120_000);

  const after = points.slice(0, -1);
  const slopes = {
    rss: slopePer10k(after, (s) => s.rss / MiB),
    anon: slopePer10k(after, (s) => s.rssAnon / MiB),
    outsideHeap: slopePer10k(after, outside),
    heapUsed: slopePer10k(after, (s) => s.heapUsed / MiB),
    external: slopePer10k(after, (s) => s.external / MiB),
  };
  const summary = {
    node: process.version,
    allocator: allocator.name,
    rsEnv,
    rsNodeOptions,
    protocols,
    resume,
    resumed,
    requests,
    parallel,
    connections: done,
    failures,
    seconds: (Date.now() - started) / 1000,
    slopesMiBPer10kConnections: slopes,
  };
  console.log(JSON.stringify(summary));
  const json = arg('json');
  if (json !== undefined) writeFileSync(json, JSON.stringify({ ...summary, points }, null, 1));
}

main().then(
  () => {
    killAllSync();
    process.exit(0);
  },
  (error: unknown) => {
    console.error(error);
    killAllSync();
    process.exit(1);
  },
);
