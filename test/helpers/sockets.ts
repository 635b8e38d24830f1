import { execFileSync } from 'node:child_process';

/** Sockets in CLOSE-WAIT on local port `port` (`ss` from iproute2): the peer closed, we did not. */
export function closeWaitSockets(port: number): number {
  const out = execFileSync('ss', ['-Htan', 'state', 'close-wait', `( sport = :${port} )`], { encoding: 'utf8' });
  return out.split('\n').filter((l) => l.trim() !== '').length;
}

/** The port of a sidecar's TCP endpoint. */
export const portOf = (endpoint: unknown): number => (endpoint as { port: number }).port;
