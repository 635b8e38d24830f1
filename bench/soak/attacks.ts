/**
 * The soak's attackers: each cycle opens two connections with the honest client's certificate (A, B)
 * and one with another client's (evil), makes an honest exchange on A so that its binding is
 * cached, then sends every attack in ATTACKS around it, with honest controls that must still pass.
 */
import { randomBytes, randomUUID } from 'node:crypto';
import { openRawConnection, type RawConnection, type RawResponse } from '../../test/adapters/raw.js';
import { REQUEST_TIMEOUT_MS, withRunDeadline } from '../deadline.js';
import { protocolOf, type Protocol } from './config.js';
import { keepExample, type SoakRun, type Tally } from './run.js';

export interface Expected {
  status: number;
  error: string;
}

/** Every attack and what the server must answer (draft section 3.3; RFC 6750 section 3.1). */
export const ATTACKS: Record<string, Expected> = {
  't1-replay-other-connection': { status: 401, error: 'invalid_proof' },
  't2-other-certificate': { status: 401, error: 'invalid_token' },
  't4-stolen-token-and-proof': { status: 401, error: 'invalid_token' },
  'missing-proof': { status: 401, error: 'use_session_binding' },
  'proof-for-other-token': { status: 401, error: 'invalid_proof' },
  'stale-iat-same-connection': { status: 401, error: 'invalid_proof' },
  'duplicate-authorization': { status: 400, error: 'invalid_request' },
  'duplicate-proof': { status: 400, error: 'invalid_request' },
  'jti-replay': { status: 401, error: 'invalid_proof' },
  'garbage-proof': { status: 401, error: 'invalid_proof' },
  'tampered-signature': { status: 401, error: 'invalid_proof' },
};

const b64u = (n: number) => randomBytes(n).toString('base64url');

/** Random proofs of several shapes; none can verify. */
function garbageProof(): string {
  switch (Math.floor(Math.random() * 5)) {
    case 0:
      return b64u(1 + Math.floor(Math.random() * 300));
    case 1:
      return `${b64u(20)}.${b64u(60)}.${b64u(64)}`;
    case 2:
      return `${Buffer.from(JSON.stringify({ alg: 'ES256', typ: 'sbp+jwt' })).toString('base64url')}.${b64u(80)}.${b64u(64)}`;
    case 3:
      return `${Buffer.from(JSON.stringify({ alg: 'none' })).toString('base64url')}.${Buffer.from(JSON.stringify({ iat: Math.floor(Date.now() / 1000) })).toString('base64url')}.`;
    default:
      return `..${b64u(8)}`;
  }
}

function tamper(proof: string): string {
  const dot = proof.lastIndexOf('.');
  const sig = Buffer.from(proof.slice(dot + 1), 'base64url');
  sig[Math.floor(Math.random() * sig.length)]! ^= 1 + Math.floor(Math.random() * 255);
  return `${proof.slice(0, dot + 1)}${sig.toString('base64url')}`;
}

function errorOf(res: RawResponse): string | undefined {
  try {
    return (JSON.parse(res.body) as { error?: string }).error;
  } catch {
    return undefined;
  }
}

const bearer = (token: string, ...proofs: string[]): Array<[string, string]> => [['authorization', `Bearer ${token}`], ...proofs.map((p): [string, string] => ['session-binding-proof', p])];

/** One attacker's requests: each step has a deadline, and every answer is counted. */
class Attacker {
  readonly path: string;
  readonly #name: string;

  constructor(
    readonly run: SoakRun,
    readonly tally: Tally,
    index: number,
    readonly protocol: Protocol,
  ) {
    this.path = `/soak/attack/${protocol}`;
    this.#name = `attacker ${index} (${protocol})`;
  }

  /** `step` within REQUEST_TIMEOUT_MS, named while outstanding; a miss fails the attacker's cycle. */
  async timed<T>(what: string, step: Promise<T>): Promise<T> {
    const { outstanding } = this.run;
    const id = outstanding.begin(`${this.#name} ${what}`);
    try {
      return await withRunDeadline(`${this.#name} ${what}`, REQUEST_TIMEOUT_MS, outstanding, step);
    } finally {
      outstanding.end(id);
    }
  }

  /** Attack `name`: any 2xx is a wrong acceptance, anything but the expected status and error is unexpected. */
  async expect(name: string, conn: RawConnection, headers: Array<[string, string]>): Promise<void> {
    const want = ATTACKS[name] as Expected;
    const count = this.tally.attacks[name]!;
    count.sent++;
    const res = await this.timed(name, conn.request({ path: this.path, headers }));
    const error = errorOf(res);
    if (res.status >= 200 && res.status < 300) count.wronglyAccepted++;
    else if (res.status === want.status && error === want.error) count.refusedAsExpected++;
    else {
      count.unexpected++;
      keepExample(this.tally.unexpectedExamples, `${name} ${this.protocol}: ${res.status} ${res.body.slice(0, 200)}`);
    }
  }

  /** An honest request on an attacker's connection: anything but 200 is lost. */
  async control(conn: RawConnection, headers: Array<[string, string]>): Promise<void> {
    const controls = this.tally.attackControls;
    controls.sent++;
    const res = await this.timed('control', conn.request({ path: this.path, headers }));
    if (res.status === 200) controls.ok++;
    else {
      controls.lost++;
      keepExample(this.tally.lostExamples, `control ${this.protocol} ${res.status} ${res.body.slice(0, 200)}`);
    }
  }

  /** One cycle of every attack; the connections it opens go into `conns` for the caller to close. */
  async cycle(conns: RawConnection[]): Promise<void> {
    const { origin, client, attacker, ca, pool } = this.run;
    const opts = { protocol: this.protocol, ca } as const;
    const [token, other] = (await pool.take(2)) as [string, string];
    const a = await this.timed('connect', openRawConnection(origin, client, opts));
    conns.push(a);
    const b = await this.timed('connect', openRawConnection(origin, client, opts));
    conns.push(b);
    const evil = await this.timed('connect', openRawConnection(origin, attacker, opts));
    conns.push(evil);
    // An honest exchange on A first: the binding is cached there, then attacked around it.
    const captured = await a.proof(token);
    await this.control(a, bearer(token, captured));
    await this.expect('t1-replay-other-connection', b, bearer(token, captured));
    await this.expect('t2-other-certificate', evil, bearer(token, await evil.proof(token)));
    await this.expect('t4-stolen-token-and-proof', evil, bearer(token, captured));
    await this.expect('missing-proof', b, bearer(token));
    await this.expect('proof-for-other-token', b, bearer(other, await b.proof(token)));
    await this.expect('stale-iat-same-connection', a, bearer(token, await a.proof(token, { iat: Math.floor(Date.now() / 1000) - 3600 })));
    await this.expect('duplicate-authorization', a, [['authorization', `Bearer ${token}`], ['authorization', `Bearer ${other}`], ['session-binding-proof', captured]]);
    await this.expect('duplicate-proof', a, bearer(token, captured, captured));
    const single = await b.proof(other, { jti: randomUUID(), htm: 'GET', htu: `${origin}${this.path}` });
    await this.control(b, bearer(other, single));
    await this.expect('jti-replay', b, bearer(other, single));
    await this.expect('garbage-proof', a, bearer(token, garbageProof()));
    await this.expect('tampered-signature', b, bearer(token, tamper(await b.proof(token))));
    // The binding cached on A still serves the honest proof after all that.
    await this.control(a, bearer(token, captured));
  }
}

export async function attackerWorker(run: SoakRun, tally: Tally, index: number): Promise<void> {
  const protocol = protocolOf(index);
  const attacker = new Attacker(run, tally, index, protocol);
  while (run.running()) {
    const conns: RawConnection[] = [];
    try {
      await attacker.cycle(conns);
      tally.attackerCycles++;
    } catch (error) {
      tally.attackErrors++;
      keepExample(tally.unexpectedExamples, `attacker ${protocol}: ${String(error)}`);
    } finally {
      await Promise.all(conns.map((c) => c.close()));
    }
  }
}
