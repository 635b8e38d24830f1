/**
 * HTTP/2 server sessions that always end. Two failure modes of node:http2 servers, both seen in the
 * sidecars:
 *
 * 1. Rapid reset (CVE-2023-44487). nghttp2 counts streams the client resets; past its own limit
 *    (a burst of 1000, then 33 per second) it sends GOAWAY INTERNAL_ERROR and stops reading the
 *    connection, but Node is not told: the session stays open, never sees the client's FIN, and
 *    the socket sits in CLOSE-WAIT with unread bytes for as long as the process lives. The guard
 *    counts client resets itself, with a smaller budget, and destroys the session first
 *    (GOAWAY ENHANCE_YOUR_CALM, socket closed): the abuser loses its connection, nobody else
 *    notices.
 * 2. A session nobody reads any more, or a peer that vanished without a FIN. After any client
 *    reset, and whenever the session is idle for `idleTimeoutMs`, the guard sends a PING; no
 *    acknowledgement within `pingTimeoutMs` destroys the session.
 *
 * Protocol primitives stay free of node:http2; this is adapter code (`@tether/core/node`).
 */
import { constants, type Http2Session, type ServerHttp2Stream } from 'node:http2';

export interface Http2GuardOptions {
  /** Client stream resets allowed at once before the session is destroyed (default 200; nghttp2 gives up at 1000). */
  resetBurst?: number;
  /** Resets allowed per second once the burst is spent (default 20; nghttp2: 33). */
  resetsPerSecond?: number;
  /** A session quiet for this long is closed (GOAWAY, then destroyed if the peer lingers) when no stream is in flight, else PINGed, ms (default 120000; 0 = never). */
  idleTimeoutMs?: number;
  /** How long a liveness PING may go unanswered before the session is destroyed, ms (default 5000). */
  pingTimeoutMs?: number;
  /** Told once per session the guard destroys, with the reason. */
  onDestroy?: (reason: 'rapid_reset' | 'ping_timeout' | 'idle') => void;
}

export const HTTP2_GUARD_DEFAULTS = { resetBurst: 200, resetsPerSecond: 20, idleTimeoutMs: 120_000, pingTimeoutMs: 5000 } as const;

/** Time a gracefully closed idle session gets to finish before it is destroyed, ms. */
const IDLE_CLOSE_GRACE_MS = 1000;

/** Token bucket of client resets for one session. */
class ResetBudget {
  #tokens: number;
  #at = Date.now();

  constructor(
    private readonly burst: number,
    private readonly perSecond: number,
  ) {
    this.#tokens = burst;
  }

  /** Spend one reset; false when the budget is exhausted. */
  spend(): boolean {
    const now = Date.now();
    this.#tokens = Math.min(this.burst, this.#tokens + ((now - this.#at) / 1000) * this.perSecond);
    this.#at = now;
    this.#tokens -= 1;
    return this.#tokens >= 0;
  }
}

/** Whether a closed stream was reset by the client (not by us, not a clean end). */
function resetByPeer(stream: ServerHttp2Stream): boolean {
  const code = stream.rstCode;
  // `sentRstStream` exists since Node 9.4 but is missing from @types/node 20.
  return code !== undefined && code !== constants.NGHTTP2_NO_ERROR && (stream as { sentRstStream?: boolean }).sentRstStream !== true;
}

/**
 * Guard one server session (call it from the server's `'session'` event). Returns nothing; the
 * guard lives and dies with the session.
 */
export function guardHttp2Session(session: Http2Session, options: Http2GuardOptions = {}): void {
  const o = { ...HTTP2_GUARD_DEFAULTS, ...options };
  const budget = new ResetBudget(o.resetBurst, o.resetsPerSecond);
  let pinging = false;
  let done = false;
  const destroy = (reason: 'rapid_reset' | 'ping_timeout' | 'idle', code: number) => {
    if (done || session.destroyed) return;
    done = true;
    options.onDestroy?.(reason);
    session.destroy(undefined, code);
  };
  let open = 0;
  // Our own quiet timer, not session.setTimeout(): Node's session timer survives the session's
  // destruction (setTimeout(0) is ignored once destroyed) and holds the session, its socket and all
  // they reference until it fires (12 MiB over 2 000 short connections instead of 2 MiB).
  const quiet = o.idleTimeoutMs > 0 ? setTimeout(onQuiet, o.idleTimeoutMs).unref() : undefined;
  // Never re-armed once the session is closing: a stream may report its close after the session's.
  const activity = () => {
    if (!session.closed && !session.destroyed) quiet?.refresh();
  };
  const checkAlive = () => {
    if (pinging || session.destroyed || session.closed) return;
    pinging = true;
    const timer = setTimeout(() => destroy('ping_timeout', constants.NGHTTP2_NO_ERROR), o.pingTimeoutMs).unref();
    const sent = session.ping((error) => {
      clearTimeout(timer);
      pinging = false;
      if (error !== null && error !== undefined) return destroy('ping_timeout', constants.NGHTTP2_NO_ERROR);
      activity(); // alive: look again after the next quiet period
    });
    if (!sent) {
      clearTimeout(timer);
      destroy('ping_timeout', constants.NGHTTP2_NO_ERROR);
    }
  };
  function onQuiet(): void {
    // Quiet for a while: a session with streams in flight (a long poll, a slow answer) is only
    // checked for life; an empty one is closed (GOAWAY), and destroyed if the peer lingers.
    if (done || session.destroyed) return;
    if (open > 0) return checkAlive();
    session.close();
    setTimeout(() => destroy('idle', constants.NGHTTP2_NO_ERROR), IDLE_CLOSE_GRACE_MS).unref();
  }
  session.once('close', () => clearTimeout(quiet));
  session.on('stream', (stream: ServerHttp2Stream) => {
    open++;
    activity();
    stream.once('close', () => {
      open--;
      activity();
      if (!resetByPeer(stream)) return;
      if (!budget.spend()) destroy('rapid_reset', constants.NGHTTP2_ENHANCE_YOUR_CALM);
      else checkAlive();
    });
  });
}
