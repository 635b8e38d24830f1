/**
 * Sustained concurrent load through both sidecars: 32 agents with keep-alive connections (HTTP/1.1
 * and h2c) to the egress, the egress and ingress between them, a plain HTTP/1.1 application behind.
 * Rounds with fresh tokens. No honest request may be lost, truncated or answered with someone
 * else's response, and afterwards both sidecars hold no request, no upstream session beyond the
 * pool, and the next request succeeds.
 */
import assert from 'node:assert/strict';
import { Agent as HttpAgent, request as httpRequest } from 'node:http';
import { connect as h2connect, type ClientHttp2Session } from 'node:http2';
import { after, before, describe, it } from 'node:test';
import { startStack, type Stack } from './helpers/stack.js';
import { waitFor, withTimeout } from '../helpers/wait.js';

const AGENTS = 32;
const REQUESTS_PER_AGENT = 40;
const ROUNDS = 3;
const TOKENS_PER_ROUND = 8;
const REQUEST_TIMEOUT_MS = 15_000;

interface Outcome {
  ok: number;
  failures: string[];
}

/** Check one echo answer: status 200, every declared byte, and our own request echoed back. */
function check(outcome: Outcome, tag: string, status: number | undefined, declared: string | undefined, body: Buffer): void {
  if (status !== 200) return void outcome.failures.push(`${tag}: status ${status}`);
  if (declared !== undefined && Number(declared) !== body.length) return void outcome.failures.push(`${tag}: ${body.length} of ${declared} bytes`);
  let url: string | undefined;
  try {
    url = (JSON.parse(body.toString('utf8')) as { url?: string }).url;
  } catch {
    return void outcome.failures.push(`${tag}: body is not the echo JSON`);
  }
  if (url === undefined || !url.endsWith(`tag=${tag}`)) return void outcome.failures.push(`${tag}: answered with ${url}`);
  outcome.ok++;
}

function h1Get(port: number, agent: HttpAgent, token: string, tag: string, outcome: Outcome): Promise<void> {
  return new Promise((resolve) => {
    const req = httpRequest({ host: '127.0.0.1', port, path: `/api/load?tag=${tag}`, agent, headers: { authorization: `Bearer ${token}` }, timeout: REQUEST_TIMEOUT_MS }, (res) => {
      const chunks: Buffer[] = [];
      res.on('data', (c: Buffer) => chunks.push(c));
      res.on('end', () => {
        check(outcome, tag, res.statusCode, res.headers['content-length'], Buffer.concat(chunks));
        resolve();
      });
      res.on('error', (e) => {
        outcome.failures.push(`${tag}: response ${e.message}`);
        resolve();
      });
    });
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', (e) => {
      outcome.failures.push(`${tag}: ${e.message}`);
      resolve();
    });
    req.end();
  });
}

function h2cGet(session: ClientHttp2Session, token: string, tag: string, outcome: Outcome): Promise<void> {
  return new Promise((resolve) => {
    const stream = session.request({ ':path': `/api/load?tag=${tag}`, authorization: `Bearer ${token}` });
    stream.setTimeout(REQUEST_TIMEOUT_MS, () => stream.close(0x8));
    const chunks: Buffer[] = [];
    let status: number | undefined;
    let declared: string | undefined;
    stream.on('response', (h) => {
      status = Number(h[':status']);
      declared = h['content-length'] as string | undefined;
    });
    stream.on('data', (c: Buffer) => chunks.push(c));
    stream.on('error', () => undefined);
    stream.on('close', () => {
      if (stream.rstCode !== 0 && stream.rstCode !== undefined) outcome.failures.push(`${tag}: stream reset ${stream.rstCode}`);
      else check(outcome, tag, status, declared, Buffer.concat(chunks));
      resolve();
    });
    stream.end();
  });
}

describe('sustained concurrent load through egress and ingress', () => {
  let stack: Stack;
  before(async () => {
    stack = await startStack();
  });
  after(async () => {
    await stack?.close();
  });

  it(`${AGENTS} agents × ${REQUESTS_PER_AGENT} keep-alive requests × ${ROUNDS} rounds with fresh tokens: nothing lost or truncated`, { timeout: 180_000 }, async () => {
    const port = (stack.egress.endpoint as { port: number }).port;
    const outcome: Outcome = { ok: 0, failures: [] };
    const h1Agents = Array.from({ length: AGENTS / 2 }, () => new HttpAgent({ keepAlive: true, maxSockets: 1 }));
    const h2Sessions = Array.from({ length: AGENTS / 2 }, () => {
      const s = h2connect(`http://127.0.0.1:${port}`);
      s.on('error', (e) => outcome.failures.push(`h2c session: ${e.message}`));
      return s;
    });
    try {
      for (let round = 0; round < ROUNDS; round++) {
        const tokens = await Promise.all(Array.from({ length: TOKENS_PER_ROUND }, () => stack.issuer.sessionBound(stack.pki.clients.client!.cert)));
        const work = Array.from({ length: AGENTS }, async (_, a) => {
          const token = tokens[a % TOKENS_PER_ROUND] as string;
          for (let i = 0; i < REQUESTS_PER_AGENT; i++) {
            const tag = `r${round}a${a}i${i}`;
            if (a < AGENTS / 2) await h1Get(port, h1Agents[a] as HttpAgent, token, tag, outcome);
            else await h2cGet(h2Sessions[a - AGENTS / 2] as ClientHttp2Session, token, tag, outcome);
          }
        });
        await withTimeout(Promise.all(work), 120_000, `round ${round} to finish (${outcome.ok} answered so far)`);
      }
    } finally {
      for (const a of h1Agents) a.destroy();
      for (const s of h2Sessions) s.destroy();
    }
    const total = AGENTS * REQUESTS_PER_AGENT * ROUNDS;
    assert.deepEqual(outcome.failures.slice(0, 10), [], `${outcome.failures.length} of ${total} requests failed`);
    assert.equal(outcome.ok, total);
    // Every token used was new to the connection: one proof per (token, upstream connection).
    assert.ok(stack.egress.stats.proofsSigned >= ROUNDS * TOKENS_PER_ROUND, `proofs signed: ${stack.egress.stats.proofsSigned}`);
    assert.deepEqual(stack.egress.stats.failures, {});
    assert.deepEqual(stack.ingress.stats.failures, {});
    // Back to rest: no request in flight, no agent connection, on either side.
    await waitFor(() => stack.egress.state().activeRequests === 0 && stack.egress.state().agentConnections === 0 && stack.ingress.state().activeRequests === 0, {
      timeoutMs: 5000,
      message: `both sidecars idle: ${JSON.stringify({ egress: stack.egress.state(), ingress: stack.ingress.state() })}`,
    });
    // And the next request succeeds.
    const next: Outcome = { ok: 0, failures: [] };
    const agent = new HttpAgent({ keepAlive: false });
    await h1Get(port, agent, await stack.issuer.sessionBound(stack.pki.clients.client!.cert), 'after', next);
    assert.deepEqual(next, { ok: 1, failures: [] });
  });
});
