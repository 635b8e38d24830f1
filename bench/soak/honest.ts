/**
 * The soak's honest workers: each holds a SessionBoundClient (HTTP/2 or HTTP/1.1), sends batches of
 * `tokensPerConnection` tokens x `requestsPerToken` requests with `inFlight` in flight, and after a
 * batch closes its connection and opens a new one with probability `churn`.
 */
import { SessionBoundClient } from '@tether/core';
import { REQUEST_TIMEOUT_MS } from '../deadline.js';
import { protocolOf, usesPerRequestClaims, type Protocol } from './config.js';
import { keepExample, type SoakRun, type Tally } from './run.js';

export async function honestWorker(run: SoakRun, tally: Tally, index: number): Promise<void> {
  const { config, client, ca } = run;
  const { honest } = tally;
  const protocol = protocolOf(index);
  const perRequestClaims = usesPerRequestClaims(index, config.perRequestFraction);
  const open = () => new SessionBoundClient({ cert: client.cert, key: client.key, ca, protocol, perRequestClaims, maxConnectionsPerOrigin: 2, timeoutMs: REQUEST_TIMEOUT_MS });
  let c = open();
  honest.connectionCycles++;
  const flush = () => {
    honest.retries += c.stats.retries;
    honest.connectionsOpened += c.stats.connectionsOpened;
    honest.proofsSigned += c.stats.proofsSigned;
  };
  while (run.running()) {
    const batch = await run.pool.take(config.tokensPerConnection);
    const jobs: string[] = [];
    for (let r = 0; r < config.requestsPerToken; r++) jobs.push(...batch);
    let next = 0;
    await Promise.all(
      Array.from({ length: config.inFlight }, async () => {
        while (next < jobs.length) await honestRequest(run, tally, c, `honest worker ${index} (${protocol})`, protocol, run.pool.renewed(jobs[next++] as string));
      }),
    );
    if (Math.random() < config.churn && run.running()) {
      flush();
      await c.close();
      c = open();
      honest.connectionCycles++;
    }
  }
  flush();
  await c.close();
}

/** One honest request: 200 counts as ok, any other status or a network error (after the client's retry) as lost. */
async function honestRequest(run: SoakRun, tally: Tally, c: SessionBoundClient, worker: string, protocol: Protocol, token: string): Promise<void> {
  const { honest, lostExamples } = tally;
  honest.requests++;
  honest.byProtocol[protocol]++;
  const id = run.outstanding.begin(`${worker} request ${honest.requests}`);
  try {
    const res = await c.request(`${run.origin}/soak/${protocol}`, { token });
    if (res.status === 200) honest.ok++;
    else {
      honest.lost++;
      honest.lostByStatus[res.status] = (honest.lostByStatus[res.status] ?? 0) + 1;
      keepExample(lostExamples, `${protocol} ${res.status} ${res.body.toString('utf8').slice(0, 200)}`);
    }
  } catch (error) {
    honest.lost++;
    honest.networkErrors++;
    keepExample(lostExamples, `${protocol} ${String(error)}`);
  } finally {
    run.outstanding.end(id);
  }
}
