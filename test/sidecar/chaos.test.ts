/**
 * A mix of bad endings at once, through both sidecars: agents that vanish mid-request (HTTP/1.1
 * and h2c), agents that half-close with unread bytes, an application that dies before and in the
 * middle of its response, and honest traffic alongside. Afterwards, within a few seconds, neither
 * sidecar holds a CLOSE-WAIT socket, the in-flight gauges are back to zero, and the next request
 * succeeds.
 */
import assert from 'node:assert/strict';
import { request as httpRequest } from 'node:http';
import { connect as h2connect } from 'node:http2';
import { connect as netConnect } from 'node:net';
import { after, before, describe, it } from 'node:test';
import { deadline, waitFor, withTimeout } from '../helpers/wait.js';
import { closeWaitSockets, portOf } from '../helpers/sockets.js';
import { startStack, type Stack } from './helpers/stack.js';


/** Scrape one unlabelled gauge from a Prometheus text page. */
async function gauge(url: string, name: string): Promise<number> {
  const text = await (await fetch(`${url}/metrics`, { signal: deadline(5000, `${url}/metrics`) })).text();
  const m = new RegExp(`^${name} (\\S+)$`, 'm').exec(text);
  assert.ok(m !== null, `${name} in /metrics`);
  return Number(m[1]);
}

describe('a mix of agents and upstreams that end badly', () => {
  let stack: Stack;
  let token: string;
  before(async () => {
    stack = await startStack();
    token = await stack.issuer.sessionBound(stack.pki.clients.client!.cert);
  });
  after(async () => {
    await stack?.close();
  });

  const port = () => portOf(stack.egress.endpoint);

  /** HTTP/1.1 agent that hangs up 50 ms into a slow request. */
  const vanishH1 = (i: number) =>
    new Promise<void>((resolve) => {
      const req = httpRequest({ host: '127.0.0.1', port: port(), path: `/api/slow?ms=500&v=${i}`, agent: false, headers: { authorization: `Bearer ${token}` } });
      req.on('error', () => resolve());
      req.on('close', () => resolve());
      req.end();
      setTimeout(() => req.destroy(), 50);
    });

  /** h2c agent that resets its stream 50 ms into a slow request, then drops the session. */
  const vanishH2c = (i: number) =>
    new Promise<void>((resolve) => {
      const session = h2connect(`http://127.0.0.1:${port()}`);
      session.on('error', () => undefined);
      const stream = session.request({ ':path': `/api/slow?ms=500&w=${i}`, authorization: `Bearer ${token}` });
      stream.on('error', () => undefined);
      setTimeout(() => {
        stream.close(0x8);
        session.destroy();
        resolve();
      }, 50);
    });

  /** An agent that sends a request with a body it never finishes, plus stray bytes, then half-closes. */
  const halfClose = (i: number) =>
    new Promise<void>((resolve) => {
      const socket = netConnect({ host: '127.0.0.1', port: port() }, () => {
        socket.end(`POST /api/upload?h=${i} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer ${token}\r\ncontent-length: 1000\r\n\r\npartial body and unread bytes`);
      });
      socket.on('error', () => resolve());
      socket.on('close', () => resolve());
      socket.resume();
    });

  /**
   * One GET through the egress on a connection of its own (closed afterwards, so the agent side
   * holds nothing): the status, or 'cut' when the response did not arrive complete.
   */
  const get = (path: string) =>
    new Promise<number | 'cut'>((resolve, reject) => {
      const req = httpRequest({ host: '127.0.0.1', port: port(), path, agent: false, headers: { authorization: `Bearer ${token}` }, timeout: 10_000 }, (res) => {
        res.resume();
        res.on('end', () => resolve(res.statusCode ?? 0));
        res.on('error', () => resolve('cut'));
      });
      req.on('timeout', () => req.destroy(new Error(`${path} timed out`)));
      req.on('error', (error) => (/timed out/.test(error.message) ? reject(error) : resolve('cut')));
      req.end();
    });

  /** An application failure seen by an honest agent: before (/reset) or in the middle of (/cut) the response. */
  const appDies = (path: '/reset' | '/cut') => get(`/api${path}`);

  const honest = async (tag: string) => assert.equal(await get(`/api/ok?tag=${tag}`), 200, tag);

  it('leaves no CLOSE-WAIT socket, gauges at zero, and the next request succeeds', async () => {
    const work: Array<Promise<unknown>> = [];
    const outcomes: Array<number | string> = [];
    for (let i = 0; i < 10; i++) {
      work.push(vanishH1(i), vanishH2c(i), halfClose(i), honest(`mix-${i}`));
      work.push(appDies('/reset').then((s) => outcomes.push(s)), appDies('/cut').then((s) => outcomes.push(s)));
    }
    await withTimeout(Promise.all(work), 30_000, 'the mix to finish');
    // A dead application before the response is a 502; one dying mid-response cuts the agent's response.
    assert.equal(outcomes.filter((s) => s === 502).length, 10, `outcomes ${JSON.stringify(outcomes)}`);
    assert.equal(outcomes.filter((s) => s === 'cut').length, 10, `outcomes ${JSON.stringify(outcomes)}`);

    const ports = { egress: port(), ingress: portOf(stack.ingress.endpoint) };
    await waitFor(() => closeWaitSockets(ports.egress) + closeWaitSockets(ports.ingress) === 0, {
      timeoutMs: 5000,
      message: `no CLOSE-WAIT socket (egress ${closeWaitSockets(ports.egress)}, ingress ${closeWaitSockets(ports.ingress)})`,
    });
    await waitFor(() => stack.egress.state().activeRequests === 0 && stack.egress.state().agentConnections === 0 && stack.egress.state().agentSessions === 0, {
      timeoutMs: 5000,
      message: `egress back to rest: ${JSON.stringify(stack.egress.state())}`,
    });
    await waitFor(() => stack.ingress.state().activeRequests === 0, { timeoutMs: 5000, message: `ingress back to rest: ${JSON.stringify(stack.ingress.state())}` });
    assert.equal(await gauge(stack.egress.metrics!.url, 'tether_egress_agent_connections'), 0);
    assert.ok((await gauge(stack.ingress.metrics!.url, 'tether_ingress_connections')) <= 1, 'only the egress connection at the ingress');
    await honest('after');
  });
});
