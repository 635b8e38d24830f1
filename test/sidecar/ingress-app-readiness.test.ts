/**
 * The ingress is ready only when its application accepts connections: `/readyz` answers
 * `503 upstream_unreachable` while nothing listens on the upstream address and turns ready once the
 * application is up (probed every few seconds, each probe with a deadline).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { createServer, type Server } from 'node:http';
import type { AddressInfo } from 'node:net';
import { it } from 'node:test';
import { TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { deadline, waitFor } from '../helpers/wait.js';
import { startTestIngress } from './helpers/stack.js';

async function readyz(url: string): Promise<{ status: number; body: unknown }> {
  const res = await fetch(`${url}/readyz`, { signal: deadline(5000, '/readyz') });
  return { status: res.status, body: await res.json() };
}

it('/readyz follows the application: 503 upstream_unreachable while it is down, 200 once it listens', { timeout: 60_000 }, async (t) => {
  // A free port with nothing listening on it (yet).
  const probe: Server = createServer();
  probe.listen(0, '127.0.0.1');
  await once(probe, 'listening');
  const port = (probe.address() as AddressInfo).port;
  await new Promise<void>((resolve) => probe.close(() => resolve()));

  const pki = await testPki();
  const issuer = await TestIssuer.create();
  const ingress = await startTestIngress(pki, issuer, `http://127.0.0.1:${port}`, { metricsListen: '127.0.0.1:0' });
  t.after(() => ingress.close());
  const ops = ingress.metrics!.url;
  assert.deepEqual(await readyz(ops), { status: 503, body: { status: 'not_ready', reason: 'upstream_unreachable' } });

  const app = createServer((_req, res) => res.end('ok'));
  app.listen(port, '127.0.0.1');
  await once(app, 'listening');
  t.after(() => new Promise<void>((resolve) => app.close(() => resolve())));
  let last: unknown;
  await waitFor(
    async () => {
      last = await readyz(ops);
      return (last as { status: number }).status === 200;
    },
    { timeoutMs: 15_000, message: `ready once the application listens (last: ${JSON.stringify(last)})` },
  );
  assert.deepEqual(last, { status: 200, body: { status: 'ready' } });
});
