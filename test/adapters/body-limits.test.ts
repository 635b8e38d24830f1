/**
 * Body limits behind the Express and Fastify adapters (issue 7, adversarial suite): the
 * session-binding check runs before the framework parses a body, so an unauthenticated request
 * with an oversized body gets the adapter's 401 (the parser never runs), while an authenticated
 * one gets the framework's 413 (`express.json({ limit })`: `entity.too.large`; Fastify
 * `bodyLimit`: `FST_ERR_CTP_BODY_TOO_LARGE`). Real TLS, real HTTP/1.1 and HTTP/2.
 */
import assert from 'node:assert/strict';
import { before, describe, it, type TestContext } from 'node:test';
import express, { type NextFunction, type Request, type Response } from 'express';
import type { SessionBoundVerifier } from '@tether/core';
import { SessionBoundClient } from '@tether/core/client';
import { principalOf as expressPrincipal } from '@tether/core/express';
import { principalOf as fastifyPrincipal, sessionBoundPlugin } from '@tether/core/fastify';
import type { DevPki } from '@tether/pki';
import { TestIssuer } from '../helpers/issuer.js';
import { closesWithin } from '../helpers/limits.js';
import { testPki } from '../helpers/pki.js';
import { testVerifier } from '../helpers/servers.js';
import { openRawConnection } from './raw.js';
import { assertRefusal, type AdapterServer } from './shared-suite.js';
import { startExpressEcho, startFastifyEcho } from './servers.js';

const UPLOAD = '/api/upload';
const LIMIT = 1024;
const JSON_TYPE = { 'content-type': 'application/json' };
const PROMPT_MS = 1000;

/** A JSON body of exactly `bytes` bytes. */
const jsonOf = (bytes: number): string => JSON.stringify({ data: 'a'.repeat(bytes - 11) });

interface Framework {
  name: string;
  protocol: 'h2' | 'http/1.1';
  /** The framework's error code for a body over the limit, as the 413 body carries it. */
  tooLarge: string;
  codeOf(body: Record<string, unknown>): unknown;
  /** Serve POST /api/upload behind the adapter with a 1 KiB body limit; `parsed` counts requests that reached the body parser. */
  start(pki: DevPki, verifier: SessionBoundVerifier, parsed: { n: number }): Promise<AdapterServer>;
}

const FRAMEWORKS: Framework[] = [
  {
    name: 'express middleware + express.json({ limit }), https',
    protocol: 'http/1.1',
    tooLarge: 'entity.too.large',
    codeOf: (body) => body.error,
    start: (pki, verifier, parsed) =>
      startExpressEcho(pki, verifier, {
        configure(app) {
          const count = (_req: Request, _res: Response, next: NextFunction) => {
            parsed.n++;
            next();
          };
          app.post(UPLOAD, count, express.json({ limit: LIMIT }), (req: Request, res: Response) => {
            res.json({ sub: expressPrincipal(req).sub, bytes: JSON.stringify(req.body).length });
          });
          // body-parser's errors carry `status` and `type`; answer them as JSON.
          app.use((error: { status?: number; type?: string }, _req: Request, res: Response, _next: NextFunction) => {
            res.status(error.status ?? 500).json({ error: error.type ?? 'internal' });
          });
        },
      }),
  },
  ...[false, true].map(
    (http2): Framework => ({
      name: `fastify plugin + route bodyLimit, ${http2 ? 'http2' : 'https'}`,
      protocol: http2 ? 'h2' : 'http/1.1',
      tooLarge: 'FST_ERR_CTP_BODY_TOO_LARGE',
      codeOf: (body) => body.code,
      start: (pki, verifier, parsed) =>
        startFastifyEcho(pki, verifier, {
          http2,
          async configure(app, v) {
            await app.register(sessionBoundPlugin, { verifier: v });
            app.post(
              UPLOAD,
              {
                bodyLimit: LIMIT,
                preParsing: async (_request, _reply, payload) => {
                  parsed.n++;
                  return payload;
                },
              },
              async (request) => ({ sub: fastifyPrincipal(request).sub, bytes: JSON.stringify(request.body).length }),
            );
          },
        }),
    }),
  ),
];

for (const framework of FRAMEWORKS) {
  describe(`body limits: ${framework.name}`, () => {
    let pki: DevPki;
    let issuer: TestIssuer;
    before(async () => {
      pki = await testPki();
      issuer = await TestIssuer.create();
    });

    const identity = () => pki.clients.client as { cert: string; key: string };

    async function serve(t: TestContext) {
      const verifier = testVerifier(issuer);
      const parsed = { n: 0 };
      const server = await framework.start(pki, verifier, parsed);
      t.after(() => server.close());
      const client = new SessionBoundClient({ ...identity(), ca: pki.ca.cert, protocol: framework.protocol });
      t.after(() => client.close());
      return { verifier, parsed, server, client, url: `${server.url}${UPLOAD}` };
    }

    it('authenticated: a body within the limit is parsed; one over it gets the framework 413', async (t) => {
      const { verifier, parsed, client, url } = await serve(t);
      const token = await issuer.sessionBound(identity().cert);
      const ok = await client.request(url, { method: 'POST', headers: JSON_TYPE, body: jsonOf(LIMIT), token });
      assert.equal(ok.status, 200, ok.body.toString());
      assert.deepEqual(JSON.parse(ok.body.toString()), { sub: 'user-1', bytes: LIMIT });
      const big = await client.request(url, { method: 'POST', headers: JSON_TYPE, body: jsonOf(2 * LIMIT), token });
      assert.equal(big.status, 413, big.body.toString());
      assert.equal(framework.codeOf(JSON.parse(big.body.toString()) as Record<string, unknown>), framework.tooLarge);
      assert.equal(verifier.stats.accepted, 2, 'both were verified first');
      assert.equal(parsed.n, 2);
    });

    it('unauthenticated: the same oversized body gets the adapter 401 first, and the parser never runs', async (t) => {
      const { verifier, parsed, client, url } = await serve(t);
      const noToken = await client.request(url, { method: 'POST', headers: JSON_TYPE, body: jsonOf(2 * LIMIT) });
      assertRefusal(noToken, 401, undefined);
      const other = await issuer.sessionBound((pki.clients.other as { cert: string }).cert);
      const foreign = await client.request(url, { method: 'POST', headers: JSON_TYPE, body: jsonOf(2 * LIMIT), token: other });
      assertRefusal(foreign, 401, 'invalid_token');
      assert.equal(parsed.n, 0, 'no body parser ran');
      assert.equal(verifier.stats.accepted, 0);
      assert.equal(verifier.stats.failures.no_token, 1);
      assert.equal(verifier.stats.failures.certificate_mismatch, 1);
    });

    it('unauthenticated, announcing a 1 GiB body: 401 at once, the body unread', async (t) => {
      const { verifier, parsed, server } = await serve(t);
      const token = await issuer.sessionBound(identity().cert);
      const connection = await openRawConnection(server.url, identity(), { protocol: framework.protocol, ca: pki.ca.cert });
      t.after(() => connection.close());
      const started = Date.now();
      const res = await connection.request({
        method: 'POST',
        path: UPLOAD,
        headers: [['authorization', `Bearer ${token}`], ['content-type', 'application/json'], ['content-length', String(2 ** 30)]],
        bodyPending: true,
      });
      assertRefusal(res, 401, 'use_session_binding');
      assert.ok(Date.now() - started < PROMPT_MS);
      if (framework.protocol === 'http/1.1') {
        assert.equal(res.headers.connection, 'close');
        assert.ok(await closesWithin(connection.socket, PROMPT_MS));
      }
      assert.equal(parsed.n, 0);
      assert.equal(verifier.stats.failures.proof_missing, 1);
    });

    if (framework.tooLarge === 'FST_ERR_CTP_BODY_TOO_LARGE') {
      it('authenticated, announcing a 1 GiB body: Fastify answers 413 at once from content-length, without reading it', async (t) => {
        const { verifier, parsed, server } = await serve(t);
        const token = await issuer.sessionBound(identity().cert);
        const connection = await openRawConnection(server.url, identity(), { protocol: framework.protocol, ca: pki.ca.cert });
        t.after(() => connection.close());
        const started = Date.now();
        const res = await connection.request({
          method: 'POST',
          path: UPLOAD,
          headers: [['authorization', `Bearer ${token}`], ['session-binding-proof', await connection.proof(token)], ['content-type', 'application/json'], ['content-length', String(2 ** 30)]],
          bodyPending: true,
        });
        assert.equal(res.status, 413, res.body);
        assert.equal(framework.codeOf(JSON.parse(res.body) as Record<string, unknown>), framework.tooLarge);
        assert.ok(Date.now() - started < PROMPT_MS);
        if (framework.protocol === 'http/1.1') {
          assert.equal(res.headers.connection, 'close');
          assert.ok(await closesWithin(connection.socket, PROMPT_MS));
        }
        assert.equal(verifier.stats.accepted, 1);
        assert.equal(parsed.n, 1);
      });
    }
  });
}
