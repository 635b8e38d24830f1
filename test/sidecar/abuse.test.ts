/**
 * HTTP/2 abuse against either sidecar costs the abuser's connection, never other clients' service:
 * rapid reset (CVE-2023-44487) against the ingress (mTLS) and the egress (h2c), and a client that
 * opens more never-finishing streams than the concurrency limit. Honest traffic through both
 * sidecars is served during and right after each attack, and no CLOSE-WAIT socket is left.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect as h2connect } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { DEFAULT_MAX_CONCURRENT_STREAMS } from '@tether/core/node';
import { rapidReset } from '../helpers/h2-rapid-reset.js';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';
import { closeWaitSockets, portOf } from '../helpers/sockets.js';
import { startStack, type Stack } from './helpers/stack.js';


describe('HTTP/2 abuse against the sidecars', () => {
  let stack: Stack;
  let token: string;
  before(async () => {
    stack = await startStack();
    token = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
  });
  after(async () => {
    await stack?.close();
  });

  /** An honest agent request through egress and ingress. */
  const honest = async (tag: string) => {
    const res = await fetch(`${stack.egress.url}/api/honest?tag=${tag}`, { headers: { authorization: `Bearer ${token}` }, signal: deadline(10_000, `honest request ${tag}`) });
    assert.equal(res.status, 200, `honest request ${tag}`);
    assert.ok(((await res.json()) as { url: string }).url.endsWith(`tag=${tag}`));
  };

  for (const target of ['ingress', 'egress'] as const) {
    it(`rapid reset against the ${target}: the abuser's connection is closed, honest agents are served during and after`, async () => {
      await honest(`${target}-before`);
      const port = portOf(target === 'ingress' ? stack.ingress.endpoint : stack.egress.endpoint);
      const tls = target === 'ingress' ? { cert: stack.pki.clients.attacker!.cert, key: stack.pki.clients.attacker!.key, ca: stack.pki.ca.cert } : undefined;
      const attack = await rapidReset('127.0.0.1', port, tls, 5000);
      const during = Promise.all(Array.from({ length: 8 }, (_, i) => honest(`${target}-during-${i}`)));
      await withTimeout(attack.closed, 5000, `the ${target} to close the abuser's connection`);
      await during;
      await honest(`${target}-after`);
      await waitFor(() => closeWaitSockets(port) === 0, { timeoutMs: 3000, message: `no CLOSE-WAIT socket on the ${target} port` });
      if (target === 'ingress') {
        await waitFor(() => stack.ingress.state().activeRequests === 0, { timeoutMs: 3000, message: 'ingress idle' });
        assert.ok(stack.ingress.state().connections <= 1, `only the egress connection left: ${JSON.stringify(stack.ingress.state())}`);
      } else {
        await waitFor(() => stack.egress.state().agentSessions === 0, { timeoutMs: 3000, message: `egress h2c sessions closed: ${JSON.stringify(stack.egress.state())}` });
      }
    });
  }

  it('never-finishing streams beyond the concurrency limit are refused on the abuser connection only', async () => {
    const abuser = h2connect(`http://127.0.0.1:${portOf(stack.egress.endpoint)}`);
    abuser.on('error', () => undefined);
    try {
      await withTimeout(once(abuser, 'remoteSettings'), 5000, 'the egress SETTINGS');
      assert.equal(abuser.remoteSettings.maxConcurrentStreams, DEFAULT_MAX_CONCURRENT_STREAMS);
      // Uploads that never end, to a route with an honest token: each holds a stream open.
      const open = Array.from({ length: DEFAULT_MAX_CONCURRENT_STREAMS + 20 }, (_, i) => {
        const s = abuser.request({ ':method': 'POST', ':path': `/api/upload?i=${i}`, authorization: `Bearer ${token}`, 'content-type': 'text/plain' });
        s.on('error', () => undefined);
        s.write('x');
        return s;
      });
      // Honest agents on their own connections are served meanwhile.
      await Promise.all(Array.from({ length: 8 }, (_, i) => honest(`streams-${i}`)));
      for (const s of open) s.close(0x8);
    } finally {
      abuser.destroy();
    }
    await honest('streams-after');
    await waitFor(() => stack.egress.state().activeRequests === 0 && stack.ingress.state().activeRequests === 0, {
      timeoutMs: 5000,
      message: `no request left in flight: ${JSON.stringify({ egress: stack.egress.state(), ingress: stack.ingress.state() })}`,
    });
  });
});
