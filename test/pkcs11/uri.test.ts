/** RFC 7512 PKCS#11 URI parsing: attributes, percent-encoding, and clear refusals (ERR_PKCS11_URI). */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { parsePkcs11Uri } from '@tether/pkcs11';

const refused = (uri: string, message: RegExp) =>
  assert.throws(
    () => parsePkcs11Uri(uri),
    (error: unknown) => (error as { code?: string }).code === 'ERR_PKCS11_URI' && message.test((error as Error).message),
    uri,
  );

test('path and query attributes, percent-decoding, id as bytes', () => {
  assert.deepEqual(parsePkcs11Uri('pkcs11:token=tether;object=agent;type=private'), { token: 'tether', object: 'agent', type: 'private' });
  const uri = parsePkcs11Uri('PKCS11:token=My%20Token;object=a%2Fb;id=%01%ff;serial=42;slot-id=7;manufacturer=SoftHSM%20project?pin-source=file:/run/pin&module-path=/usr/lib/x.so');
  assert.equal(uri.token, 'My Token');
  assert.equal(uri.object, 'a/b');
  assert.deepEqual(uri.id, Buffer.from([0x01, 0xff]));
  assert.equal(uri.serial, '42');
  assert.equal(uri.slotId, 7n);
  assert.equal(uri.manufacturer, 'SoftHSM project');
  assert.equal(uri.pinSource, 'file:/run/pin');
  assert.equal(uri.modulePath, '/usr/lib/x.so');
  // pin-value in the path, as OpenSSL's engine accepts it; vendor attributes ignored; UTF-8 labels.
  assert.equal(parsePkcs11Uri('pkcs11:object=k;pin-value=1234').pinValue, '1234');
  assert.equal(parsePkcs11Uri('pkcs11:object=k;x-vendor=1').object, 'k');
  assert.equal(parsePkcs11Uri('pkcs11:object=%C3%A9t%C3%A9').object, 'été');
  assert.deepEqual(parsePkcs11Uri('pkcs11:'), {});
});

test('bad URIs are refused with ERR_PKCS11_URI and never echo a value', () => {
  refused('file:/etc/passwd', /must start with "pkcs11:"/);
  refused('pkcs11:token=a;colour=blue', /unknown attribute "colour"/);
  refused('pkcs11:token=a;token=b', /token appears twice/);
  refused('pkcs11:token', /without "="/);
  refused('pkcs11:object=a b', /must be percent-encoded/);
  refused('pkcs11:object=%zz', /must be percent-encoded/);
  refused('pkcs11:object=%ff%fe', /not UTF-8/);
  refused('pkcs11:type=secret', /type must be one of/);
  refused('pkcs11:slot-id=-1', /slot-id must be a decimal number/);
  refused('pkcs11:object=a#frag', /fragment/);
  refused('pkcs11:object=a?pin-value=1&pin-source=file:/x', /not both/);
  refused('pkcs11:object=a?token=b', /unknown attribute "token"/);
  refused(`pkcs11:object=${'a'.repeat(5000)}`, /longer than 4096/);
  try {
    parsePkcs11Uri('pkcs11:object=k;pin-value=se cret');
    assert.fail('accepted');
  } catch (error) {
    assert.ok(!(error as Error).message.includes('se cret'));
  }
});
