/**
 * Resilience of the egress -> ingress path: the upstream restarting mid-run (graceful and abrupt)
 * without the agent seeing a failed request, and connection churn (thousands of reconnects)
 * without the sidecars' per-connection state growing.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { after, before, describe, it } from 'node:test';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { jwtAccessTokenValidator, localJwks } from '@tether/core';
import type { DevPki } from '@tether/pki';
import { startEgress, startIngress, type EgressSidecar, type IngressConfig, type IngressSidecar } from '@tether/sidecar';
import { AUDIENCE, ISSUER, TestIssuer } from '../helpers/issuer.js';
import { testPki } from '../helpers/pki.js';
import { startEchoApp, startStack, type EchoApp, type Stack } from './helpers/stack.js';

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Wait for `condition`, polling; fails with `message` (and `detail()`, if given) at the deadline. */
async function until(condition: () => boolean, timeoutMs = 3000, message = 'condition', detail?: () => unknown): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!condition()) {
    if (Date.now() >= deadline) throw new Error(`timed out after ${timeoutMs} ms waiting for ${message}${detail === undefined ? '' : `: ${JSON.stringify(detail())}`}`);
    await sleep(10);
  }
}

/** A steady agent: `workers` loops of plain global fetch through the egress until stopped; every status is recorded. */
function steadyAgent(url: string, token: string, workers: number, path = '/api/steady') {
  const statuses: number[] = [];
  const errors: string[] = [];
  let stopped = false;
  const loops = Array.from({ length: workers }, async (_, w) => {
    let i = 0;
    while (!stopped) {
      try {
        const res = await fetch(`${url}${path}?w=${w}&i=${i++}`, { headers: { authorization: `Bearer ${token}` }, signal: AbortSignal.timeout(15_000) });
        await res.arrayBuffer();
        statuses.push(res.status);
      } catch (error) {
        errors.push(error instanceof Error ? error.message : String(error));
      }
    }
  });
  return {
    statuses,
    errors,
    /** Resolves once `n` more responses have arrived. */
    async waitFor(n: number, timeoutMs = 10_000, detail?: () => unknown): Promise<void> {
      const target = statuses.length + errors.length + n;
      await until(() => statuses.length + errors.length >= target, timeoutMs, `${n} more responses (${statuses.length + errors.length} so far)`, detail);
    },
    async stop(): Promise<void> {
      stopped = true;
      await Promise.all(loops);
    },
  };
}

describe('the upstream (ingress) restarts mid-run', () => {
  let pki: DevPki;
  let issuer: TestIssuer;
  let app: EchoApp;
  let ingress: IngressSidecar;
  let egress: EgressSidecar;
  let port: number;
  let token: string;

  const ingressConfig = (listen: string, extra: Partial<IngressConfig> = {}): IngressConfig => ({
    listen,
    cert: pki.server.cert,
    key: pki.server.key,
    ca: pki.ca.cert,
    upstream: app.url,
    tokens: jwtAccessTokenValidator({ keys: localJwks(issuer.jwks), issuer: ISSUER, audience: AUDIENCE }),
    drainTimeoutMs: 2000,
    log: { level: 'silent' },
    ...extra,
  });

  before(async () => {
    pki = await testPki();
    issuer = await TestIssuer.create();
    app = await startEchoApp();
    ingress = await startIngress(ingressConfig('127.0.0.1:0'));
    port = (ingress.endpoint as { port: number }).port;
    egress = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [{ name: 'api', upstream: `https://127.0.0.1:${port}`, audience: AUDIENCE }],
      log: { level: 'silent' },
    });
    token = await issuer.sessionBound(pki.clients.client!.cert);
  });

  after(async () => {
    await egress?.close();
    await ingress?.close();
    await app?.close();
  });

  it('graceful restart on the same port: the egress reconnects, re-proves, and the agent sees only 200s', async () => {
    const agent = steadyAgent(egress.url, token, 4);
    try {
      await agent.waitFor(40);
      const before = { ...egress.stats };
      assert.equal(before.proofsSigned, 1, 'one proof on the first connection');
      // Stop the ingress (drains: GOAWAY, in-flight requests complete), leave the port closed for a
      // while (connections are refused), then start a new ingress process-equivalent on the same port.
      await ingress.close();
      await sleep(150);
      ingress = await startIngress(ingressConfig(`127.0.0.1:${port}`));
      await agent.waitFor(40);
      await until(() => ingress.verifier.stats.accepted >= 40);
      assert.ok(ingress.verifier.stats.accepted >= 40, 'the new ingress serves the agent');
      assert.equal(egress.stats.upstreamConnectionsOpened - before.upstreamConnectionsOpened, 1, 'one reconnect');
      assert.equal(egress.stats.proofsSigned - before.proofsSigned, 1, 'a new proof signed for the new connection');
      assert.equal(ingress.verifier.stats.proofVerifications, 1, 'and verified once by the new ingress');
      assert.ok(egress.stats.connectRetries > 0, 'requests in the restart window waited for the upstream to come back');
    } finally {
      await agent.stop();
    }
    assert.deepEqual(agent.errors, []);
    assert.ok(agent.statuses.length >= 80);
    assert.deepEqual(agent.statuses.filter((s) => s !== 200), [], 'no failed request');
    assert.deepEqual(egress.stats.failures, {});
  });

  it('abrupt restart (in-flight streams reset): idempotent requests are sent again on the new connection', async () => {
    // Swap (gracefully) to an ingress that does not wait for in-flight requests when it stops.
    const graceful = ingress;
    await graceful.close();
    ingress = await startIngress(ingressConfig(`127.0.0.1:${port}`, { drainTimeoutMs: 0 }));
    // Half of the requests are in flight at the application for 300 ms when the ingress dies.
    const fast = steadyAgent(egress.url, token, 2);
    const slow = steadyAgent(egress.url, token, 2, '/api/slow');
    try {
      await fast.waitFor(20);
      await slow.waitFor(2);
      await sleep(100); // the slow ones are now waiting on the application
      const before = { ...egress.stats };
      const old = ingress;
      const closing = old.close();
      ingress = await startIngress(ingressConfig(`127.0.0.1:${port}`));
      await closing;
      const detail = () => ({ egress: egress.state(), stats: egress.stats, ingress: ingress.state(), old: old.state(), oldStats: old.stats, oldV: old.verifier.stats, app: app.seen.length, fast: fast.errors.slice(-3), slow: slow.errors.slice(-3) });
      await fast.waitFor(20, 10_000, detail);
      await slow.waitFor(4, 10_000, detail);
      assert.ok(egress.stats.connectionRetries > before.connectionRetries, 'reset requests were sent again');
      assert.ok(egress.stats.proofsSigned > before.proofsSigned, 'a new proof for the new connection');
    } finally {
      await Promise.all([fast.stop(), slow.stop()]);
    }
    for (const a of [fast, slow]) {
      assert.deepEqual(a.errors, []);
      assert.deepEqual(a.statuses.filter((s) => s !== 200), [], 'no failed request');
    }
  });

  it('an upstream that stays down still gives 502 once the connect retry budget is spent', async () => {
    const dead = await startEgress({
      listen: '127.0.0.1:0',
      cert: pki.clients.client!.cert,
      key: pki.clients.client!.key,
      ca: pki.ca.cert,
      routes: [{ name: 'api', upstream: 'https://127.0.0.1:1', audience: AUDIENCE }],
      connectRetryMs: 300,
      log: { level: 'silent' },
    });
    try {
      const started = Date.now();
      const res = await fetch(`${dead.url}/api/x`, { headers: { authorization: `Bearer ${token}` } });
      const elapsed = Date.now() - started;
      assert.equal(res.status, 502);
      assert.equal(((await res.json()) as { error: string }).error, 'upstream_unavailable');
      // Backoff 25, 50, 100 ms: the next wait (200 ms) would pass the 300 ms budget.
      assert.ok(elapsed >= 150 && elapsed < 2000, `bounded retry (${elapsed} ms)`);
      assert.ok(dead.stats.connectRetries >= 2);
    } finally {
      await dead.close();
    }
  });
});

describe('connection churn: per-connection state stays bounded', () => {
  let stack: Stack;
  let token: string;

  before(async () => {
    // The ingress closes every upstream connection after one request (GOAWAY), and the agent opens a
    // new connection to the egress for every request: both sides churn on every cycle.
    stack = await startStack({ ingress: { maxRequestsPerConnection: 1 } });
    token = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
  });

  after(async () => {
    await stack?.close();
  });

  /** One cycle: a new agent connection (closed after the response), through a new upstream connection. */
  const cycle = (port: number, i: number) =>
    new Promise<number>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port, path: `/api/churn?i=${i}`, agent: false, headers: { authorization: `Bearer ${token}`, connection: 'close' } }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
      });
      req.on('error', reject);
      req.end();
    });

  it('2000 reconnect cycles: proof caches, exporter state and binding caches drain; heap is flat', { timeout: 90_000 }, async () => {
    const { egress, ingress } = stack;
    const port = (egress.endpoint as { port: number }).port;
    const cycles = 2000;
    const workers = 1;
    // Warm up (JIT, TLS session machinery), then take the baseline.
    for (let i = 0; i < 50; i++) assert.equal(await cycle(port, i), 200);
    // The test runner cannot pass --expose-gc to one file; expose it at run time (V8 flag + a fresh context).
    let gc = (globalThis as { gc?: () => void }).gc;
    if (gc === undefined) {
      try {
        setFlagsFromString('--expose-gc');
        gc = runInNewContext('gc') as () => void;
      } catch {
        gc = undefined;
      }
    }
    // The echo application keeps a record of every request (about 1.2 KiB each): not the sidecars'
    // memory, so it is emptied before both heap readings.
    stack.app.seen.length = 0;
    gc?.();
    const heapBefore = process.memoryUsage().heapUsed;
    const before = { ...egress.stats };
    const verifications = ingress.verifier.stats.proofVerifications;
    const peak = { connectionStates: 0, cachedProofs: 0, upstreamSessions: 0, bindingsCached: 0, ingressConnections: 0 };
    const statuses = new Map<number, number>();
    let next = 0;
    await Promise.all(
      Array.from({ length: workers }, async () => {
        while (next < cycles) {
          const status = await cycle(port, next++);
          statuses.set(status, (statuses.get(status) ?? 0) + 1);
          const e = egress.state();
          const g = ingress.state();
          peak.connectionStates = Math.max(peak.connectionStates, e.connectionStates);
          peak.cachedProofs = Math.max(peak.cachedProofs, e.cachedProofs);
          peak.upstreamSessions = Math.max(peak.upstreamSessions, e.upstreamSessions);
          peak.bindingsCached = Math.max(peak.bindingsCached, g.bindingsCached);
          peak.ingressConnections = Math.max(peak.ingressConnections, g.connections);
        }
      }),
    );
    assert.deepEqual([...statuses.entries()], [[200, cycles]], 'every cycle succeeded');
    const opened = egress.stats.upstreamConnectionsOpened - before.upstreamConnectionsOpened;
    // One request per connection (sequential cycles), so one upstream reconnect per cycle.
    assert.ok(opened >= cycles, `upstream connections churned (${opened} for ${cycles} cycles)`);
    assert.equal(egress.stats.proofsSigned - before.proofsSigned, opened, 'one proof per upstream connection');
    assert.equal(ingress.verifier.stats.proofVerifications - verifications, opened, 'one verification per connection');
    // Bounded while running: a handful of connections at a time, never an accumulation.
    for (const [k, v] of Object.entries(peak)) assert.ok(v <= 2 * workers + 2, `peak ${k} = ${v}`);

    // Everything returns to empty once the last connections have closed.
    const settled = () => {
      const e = egress.state();
      const g = ingress.state();
      return e.connectionStates + e.cachedProofs + e.upstreamSessions + e.agentConnections + e.activeRequests + g.connections + g.sessions + g.bindingsCached + g.activeRequests === 0;
    };
    await until(settled, 5000);
    assert.deepEqual(egress.state(), { connectionStates: 0, cachedProofs: 0, upstreamSessions: 0, agentConnections: 0, agentSessions: 0, activeRequests: 0 });
    assert.deepEqual(ingress.state(), { connections: 0, sessions: 0, bindingsCached: 0, activeRequests: 0 });
    assert.equal(ingress.verifier.cache.size, 0);
    assert.equal(egress.stats.upstreamConnectionsOpen, 0);

    // Heap: a smoke check for leaks (the state sizes above are the invariant). Measured: about
    // 2 MiB after the first 1500 reconnects (warm-up), then flat (< 0.3 MiB per further 1500). With a
    // forced gc the bound is 16 MiB, i.e. 8 KiB per reconnect; without one the figure also
    // includes garbage not yet collected, hence 64 MiB.
    stack.app.seen.length = 0;
    await sleep(50);
    gc?.();
    const growthMb = (process.memoryUsage().heapUsed - heapBefore) / 2 ** 20;
    console.error(`churn: ${cycles} cycles, ${opened} upstream connections, heap growth ${growthMb.toFixed(1)} MiB (gc ${gc === undefined ? 'not exposed' : 'forced'})`);
    assert.ok(growthMb < (gc === undefined ? 64 : 16), `heap growth ${growthMb.toFixed(1)} MiB`);
  });
});

describe('connection rotation over HTTP/1.1', () => {
  it('maxRequestsPerConnection closes HTTP/1.1 connections too (Connection: close); the client re-proves', async () => {
    const stack = await startStack({ ingress: { maxRequestsPerConnection: 2 } });
    const { SessionBoundClient } = await import('@tether/core');
    const client = new SessionBoundClient({ cert: stack.pki.clients.client!.cert, key: stack.pki.clients.client!.key, ca: stack.pki.ca.cert, protocol: 'http/1.1' });
    try {
      const token = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
      const connections: string[] = [];
      for (let i = 0; i < 5; i++) {
        const res = await client.request(`${stack.ingress.url}/h1-rotation`, { token });
        assert.equal(res.status, 200);
        connections.push(String(res.headers.connection));
      }
      assert.deepEqual(connections, ['keep-alive', 'close', 'keep-alive', 'close', 'keep-alive']);
      assert.equal(client.stats.connectionsOpened, 3);
      assert.equal(client.stats.proofsSigned, 3, 'one proof per connection');
    } finally {
      await client.close();
      await stack.close();
    }
  });
});
