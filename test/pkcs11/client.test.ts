/**
 * SessionBoundClient with a P-256 key generated inside SoftHSM2 (never extractable): the TLS
 * handshake signs through OpenSSL's pkcs11 engine, the proof through C_Sign, and the resource
 * server's verifier (real TLS on loopback, HTTP/2) accepts the binding.
 */
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { connect as tlsConnect, createSecureContext, type TLSSocket } from 'node:tls';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import pkcs11js from 'pkcs11js';
import { createSessionBindingProof, deriveSessionExporter, PROOF_HEADER } from '@tether/core';
import { openClientKey, SessionBoundClient, type ExternalClientKey } from '@tether/core/client';
import { Pkcs11Key } from '@tether/pkcs11';
import { removeSoftHsm, softHsm, TOKEN_LABEL, type SoftHsm } from '../helpers/softhsm.js';
import { testPki } from '../helpers/pki.js';
import { TestIssuer } from '../helpers/issuer.js';
import { startEchoServer, testVerifier, type RunningServer } from '../helpers/servers.js';
import { withTimeout } from '../helpers/wait.js';

let hsm: SoftHsm;
let issuer: TestIssuer;
let server: RunningServer;

before(async () => {
  hsm = await softHsm();
  issuer = await TestIssuer.create();
  server = await startEchoServer(await testPki('p256'), testVerifier(issuer));
});

after(async () => {
  await server?.close();
  await removeSoftHsm();
});

const ca = async () => (await testPki('p256')).ca.cert;

/** Open the token key directly (to count its C_Sign calls). */
async function openKey(which: 'p256' | 'rsa' = 'p256'): Promise<Pkcs11Key> {
  const { key } = await openClientKey(hsm.keys[which].uri, hsm.keys[which].cert, { modulePath: hsm.modulePath });
  assert.ok(key instanceof Pkcs11Key);
  return key;
}

describe('the key stays inside the token', () => {
  test('generated sensitive and never extractable; reading its value fails', () => {
    const api = new pkcs11js.PKCS11();
    api.load(hsm.modulePath);
    try {
      api.C_Initialize();
    } catch (error) {
      assert.match(String(error), /CKR_CRYPTOKI_ALREADY_INITIALIZED/);
    }
    const slot = api.C_GetSlotList(true).find((s) => api.C_GetTokenInfo(s).label.trim() === TOKEN_LABEL);
    assert.ok(slot);
    const session = api.C_OpenSession(slot, pkcs11js.CKF_SERIAL_SESSION);
    try {
      api.C_Login(session, pkcs11js.CKU_USER, hsm.pin);
      api.C_FindObjectsInit(session, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_PRIVATE_KEY },
        { type: pkcs11js.CKA_LABEL, value: hsm.keys.p256.label },
      ]);
      const [handle] = api.C_FindObjects(session, 2);
      api.C_FindObjectsFinal(session);
      assert.ok(handle);
      const [sensitive, extractable, neverExtractable] = api.C_GetAttributeValue(session, handle, [
        { type: pkcs11js.CKA_SENSITIVE },
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      ]);
      assert.deepEqual(sensitive?.value, Buffer.from([1]));
      assert.deepEqual(extractable?.value, Buffer.from([0]));
      assert.deepEqual(neverExtractable?.value, Buffer.from([1]));
      // The private value cannot be read...
      assert.throws(() => api.C_GetAttributeValue(session, handle, [{ type: pkcs11js.CKA_VALUE }]), /CKR_ATTRIBUTE_SENSITIVE/);
      // ...nor wrapped out of the token with a key of our own.
      const wrapping = api.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        { type: pkcs11js.CKA_WRAP, value: true },
        { type: pkcs11js.CKA_TOKEN, value: false },
      ]);
      assert.throws(() => api.C_WrapKey(session, { mechanism: pkcs11js.CKM_AES_KEY_WRAP_PAD }, wrapping, handle, Buffer.alloc(4096)), /CKR_KEY_UNEXTRACTABLE|CKR_KEY_NOT_WRAPPABLE/);
    } finally {
      api.C_CloseSession(session);
    }
  });
});

describe('SessionBoundClient with a pkcs11: key', () => {
  test('1000 requests over one connection: one C_Sign for the proof, one verification at the server', async () => {
    const key = await openKey();
    const afterProbe = key.signatures;
    const client = new SessionBoundClient({ cert: hsm.keys.p256.cert, key, ca: await ca(), timeoutMs: 10_000 });
    const before = { ...server.verifier.stats };
    try {
      const token = await issuer.sessionBound(hsm.keys.p256.cert);
      for (let i = 0; i < 1000; i++) {
        const response = await client.request(`${server.url}/n/${i}`, { token });
        assert.equal(response.status, 200, response.body.toString());
      }
      assert.equal(client.stats.connectionsOpened, 1);
      assert.equal(client.stats.proofsSigned, 1);
      assert.equal(key.signatures - afterProbe, 1, 'C_Sign calls for proofs');
      assert.equal(server.verifier.stats.proofVerifications - before.proofVerifications, 1);
      assert.equal(server.verifier.stats.accepted - before.accepted, 1000);
    } finally {
      await client.close();
      await key.close();
    }
  });

  test('SessionBoundClient.create opens the URI (HTTP/1.1 too) and close() releases it; a later client still works', async () => {
    for (const protocol of ['h2', 'http/1.1'] as const) {
      const client = await SessionBoundClient.create({ cert: hsm.keys.p256.cert, key: hsm.keys.p256.uri, pkcs11: { modulePath: hsm.modulePath }, ca: await ca(), protocol, timeoutMs: 10_000 });
      try {
        const token = await issuer.sessionBound(hsm.keys.p256.cert);
        const response = await client.request(`${server.url}/create`, { token });
        assert.equal(response.status, 200, response.body.toString());
        assert.equal(JSON.parse(response.body.toString()).principal.binding, 'session');
      } finally {
        await client.close();
      }
    }
  });

  test('an RSA key in the token signs PS256 proofs and the handshake', async () => {
    const rsaServer = await startEchoServer(await testPki('rsa'), testVerifier(issuer));
    const key = await openKey('rsa');
    const client = new SessionBoundClient({ cert: hsm.keys.rsa.cert, key, ca: (await testPki('rsa')).ca.cert, timeoutMs: 10_000 });
    try {
      assert.equal(key.alg, 'PS256');
      const token = await issuer.sessionBound(hsm.keys.rsa.cert);
      for (let i = 0; i < 3; i++) assert.equal((await client.request(`${rsaServer.url}/rsa`, { token })).status, 200);
      assert.equal(client.stats.proofsSigned, 1);
    } finally {
      await client.close();
      await key.close();
      await rsaServer.close();
    }
  });

  test('a stolen token with its proof fails on another connection', async () => {
    const key = await openKey();
    const pki = await testPki('p256');
    const token = await issuer.sessionBound(hsm.keys.p256.cert);
    // The victim's connection, made with the token-held key, and the proof for it.
    const context = createSecureContext({ cert: hsm.keys.p256.cert, ...key.tlsKey, ca: pki.ca.cert });
    const victim: TLSSocket = tlsConnect({ host: '127.0.0.1', port: server.port, secureContext: context, servername: 'localhost', ALPNProtocols: ['h2'] });
    try {
      await withTimeout(once(victim, 'secureConnect'), 10_000, 'victim handshake');
      const proof = await createSessionBindingProof({
        privateKey: key as ExternalClientKey,
        alg: key.alg,
        certificate: new X509Certificate(hsm.keys.p256.cert),
        accessToken: token,
        ekm: deriveSessionExporter(victim, ['TLSv1.3']),
      });
      // The thief replays both on its own connection (its own certificate: it cannot use the key).
      const thief = new SessionBoundClient({ cert: pki.clients.attacker!.cert, key: pki.clients.attacker!.key, ca: pki.ca.cert, timeoutMs: 10_000 });
      try {
        const response = await thief.request(`${server.url}/steal`, { headers: { authorization: `Bearer ${token}`, [PROOF_HEADER]: proof } });
        assert.equal(response.status, 401);
        assert.match(String(response.headers['www-authenticate']), /invalid_proof|invalid_token|use_session_binding/);
      } finally {
        await thief.close();
      }
    } finally {
      victim.destroy();
      await key.close();
    }
  });
});

describe('errors', () => {
  const code = (c: string) => (error: unknown) => {
    assert.equal((error as { code?: string }).code, c, String(error));
    return true;
  };

  test('wrong PIN, missing key, missing token, missing module, bad URI, wrong certificate; the PIN is never in a message', async () => {
    const cert = hsm.keys.p256.cert;
    const open = (uri: string, modulePath: string | undefined = hsm.modulePath) => openClientKey(uri, cert, modulePath === undefined ? {} : { modulePath });
    const messages: string[] = [];
    const collect = (c: string) => (error: unknown) => {
      messages.push(String((error as Error).message));
      return code(c)(error);
    };
    await assert.rejects(open(`${hsm.keys.p256.bareUri}?pin-value=99999999`), collect('ERR_PKCS11_PIN'));
    await assert.rejects(open(`pkcs11:token=${TOKEN_LABEL};object=nope?pin-value=${hsm.pin}`), collect('ERR_PKCS11_KEY_NOT_FOUND'));
    await assert.rejects(open(`pkcs11:token=absent;object=agent?pin-value=${hsm.pin}`), collect('ERR_PKCS11_TOKEN_NOT_FOUND'));
    await assert.rejects(open(hsm.keys.p256.uri, '/nonexistent/libpkcs11.so'), collect('ERR_PKCS11_MODULE'));
    await assert.rejects(open(`pkcs11:token=${TOKEN_LABEL};object=agent;colour=blue`), collect('ERR_PKCS11_URI'));
    await assert.rejects(open(hsm.keys.p256.bareUri), collect('ERR_PKCS11_PIN'));
    await assert.rejects(openClientKey(hsm.keys.p256.uri, hsm.keys.rsa.cert, { modulePath: hsm.modulePath }), collect('ERR_PKCS11_KEY_MISMATCH'));
    const otherP256 = (await testPki('p256')).clients.client!.cert;
    await assert.rejects(openClientKey(hsm.keys.p256.uri, otherP256, { modulePath: hsm.modulePath }), collect('ERR_PKCS11_KEY_MISMATCH'));
    assert.equal(messages.length, 8);
    for (const message of messages) {
      assert.ok(!message.includes(hsm.pin) && !message.includes('99999999'), message);
    }
  });

  test('the constructor refuses a URI (it needs create()); a closed key refuses to sign', async () => {
    assert.throws(() => new SessionBoundClient({ cert: hsm.keys.p256.cert, key: hsm.keys.p256.uri }), /SessionBoundClient.create/);
    const key = await openKey();
    await key.close();
    await assert.rejects(key.sign('ES256', Buffer.from('x')), code('ERR_PKCS11_CLOSED'));
  });
});
