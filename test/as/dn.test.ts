import { test } from 'node:test';
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { DnSyntaxError, dnEquals, parseNodeSubject, parseRfc4514, parseSubjectAltName, sanDnsMatches, sanEmailMatches, sanIpMatches, sanUriMatches, subjectMatches } from '@tether/as';
import { makeCertificate } from './helpers/setup.js';

test('RFC 4514: order reversed against the encoding, types by OID, values case/space-insensitive', () => {
  const a = parseRfc4514('CN=Alice,O=Example,C=US');
  const b = parseRfc4514('commonName = alice ,  o=EXAMPLE,2.5.4.6=us');
  assert.ok(dnEquals(a, b));
  assert.equal(a[0]?.[0]?.type, '2.5.4.6'); // most significant first
  assert.ok(!dnEquals(a, parseRfc4514('O=Example,CN=Alice,C=US')), 'RDN order matters');
  assert.ok(!dnEquals(a, parseRfc4514('CN=Alice,O=Example')), 'RDN count matters');
  assert.ok(!dnEquals(a, parseRfc4514('CN=Alice,OU=Example,C=US')), 'attribute type matters');
  assert.ok(dnEquals(parseRfc4514('CN=a  b,O=x'), parseRfc4514('CN= a b ,O=x')), 'insignificant space');
});

test('RFC 4514: escapes, hex pairs, multi-valued RDNs in any order', () => {
  assert.ok(dnEquals(parseRfc4514('CN=Smith\\, J,O=Example\\2C Inc.'), parseRfc4514('CN=Smith\\2C J,O=Example\\, Inc.')));
  assert.ok(dnEquals(parseRfc4514('CN=a+UID=x,O=b'), parseRfc4514('UID=x+CN=a,O=b')));
  assert.ok(!dnEquals(parseRfc4514('CN=a+UID=x,O=b'), parseRfc4514('CN=a,UID=x,O=b')), 'multi-valued RDN is not two RDNs');
  assert.ok(dnEquals(parseRfc4514('CN=Z\\C3\\BCrich'), parseRfc4514('CN=zürich')), 'UTF-8 hex pairs');
  assert.ok(dnEquals(parseRfc4514('CN=\\#hash'), parseRfc4514('CN=\\23hash')));
  assert.ok(dnEquals(parseRfc4514('OID.2.5.4.3=x'), parseRfc4514('cn=X')));
  assert.ok(dnEquals(parseRfc4514('E=a@b.c'), parseRfc4514('emailAddress=A@B.C')));
  assert.deepEqual(parseRfc4514('CN=a\\\\b'), [[{ type: '2.5.4.3', value: 'a\\b' }]]);
  assert.deepEqual(parseNodeSubject('CN=a\\\\b\\0A'), [[{ type: '2.5.4.3', value: 'a\\b' }]], 'escaped control characters');
});

test('RFC 4514: malformed names are refused', () => {
  for (const bad of ['', 'CN', 'CN=a,,O=b', 'CN=a,O=b\\', 'FOO=bar', 'CN=#0C03616263', 'CN=a"b', 'CN=a;O=b', 'CN=\\zz', 'CN=\\C3', '=x']) {
    assert.throws(() => parseRfc4514(bad), DnSyntaxError, bad);
  }
});

test('Node subject rendering of real certificates matches the registered RFC 4514 DN', async () => {
  const cert = await makeCertificate({
    subject: [
      { C: ['US'] },
      { O: ['Example, Inc.'] },
      { OU: ['Eng  Team'] },
      { CN: ['Smith + J <x>'], '0.9.2342.19200300.100.1.1': ['jsmith'] },
    ],
  });
  const x = new X509Certificate(cert.cert);
  assert.ok(subjectMatches(x.subject, parseRfc4514('UID=jsmith+CN=smith \\+ j \\<x\\>,OU=eng team,O=Example\\2C Inc.,C=us')), x.subject);
  assert.ok(!subjectMatches(x.subject, parseRfc4514('CN=Smith + J <x>,OU=Eng Team,O=Example\\, Inc.,C=US'.replace('+', '\\+').replace('<', '\\<').replace('>', '\\>'))), 'missing UID');
  assert.ok(!subjectMatches(x.subject, parseRfc4514('UID=jsmith+CN=Smith \\+ J \\<x\\>,OU=Eng Team,O=Example Inc.,C=US')), 'comma is significant');
  assert.ok(!subjectMatches(undefined, parseRfc4514('CN=x')));

  const tricky = await makeCertificate({ subject: [{ CN: [' lead', 'x'] }, { O: ['a=b;c"d'] }] });
  const t = new X509Certificate(tricky.cert);
  const parsed = parseNodeSubject(t.subject);
  assert.equal(parsed.length, 2);
  assert.deepEqual(parsed[1], [{ type: '2.5.4.10', value: 'a=b;c"d' }]);
  assert.ok(subjectMatches(t.subject, parseRfc4514('O=a=b\\;c\\"d,CN=lead+CN=x')), t.subject);
});

test('SAN matching: DNS, URI (SPIFFE), IP (v4, v6 forms), email; quoted values cannot smuggle entries', async () => {
  const cert = await makeCertificate({
    subject: 'CN=svc',
    san: [
      { type: 'dns', value: 'Svc.Example.test' },
      { type: 'url', value: 'spiffe://tether.local/svc' },
      { type: 'url', value: 'http://x/, URI:spiffe://tether.local/admin' },
      { type: 'ip', value: '10.1.2.3' },
      { type: 'ip', value: '2001:db8::1' },
      { type: 'email', value: 'Svc@Example.test' },
    ],
  });
  const x = new X509Certificate(cert.cert);
  assert.ok(sanDnsMatches(x, 'svc.example.test'));
  assert.ok(!sanDnsMatches(x, 'example.test'));
  assert.ok(sanUriMatches(x, 'spiffe://tether.local/svc'));
  assert.ok(sanUriMatches(x, 'SPIFFE://TETHER.LOCAL/svc'), 'scheme and host are case-insensitive');
  assert.ok(!sanUriMatches(x, 'spiffe://tether.local/SVC'), 'path is exact');
  assert.ok(!sanUriMatches(x, 'spiffe://tether.local/admin'), 'no entry smuggled through a comma');
  assert.ok(sanIpMatches(x, '10.1.2.3'));
  assert.ok(sanIpMatches(x, '2001:0db8:0:0::1'));
  assert.ok(!sanIpMatches(x, '10.1.2.4'));
  assert.ok(!sanIpMatches(x, 'not-an-ip'));
  assert.ok(sanEmailMatches(x, 'Svc@example.TEST'));
  assert.ok(!sanEmailMatches(x, 'svc@example.test'), 'local part is exact');
  const entries = parseSubjectAltName(x.subjectAltName);
  assert.equal(entries?.filter((e) => e.kind === 'URI').length, 2);
  assert.equal(parseSubjectAltName('DNS:"unterminated'), undefined);
});
