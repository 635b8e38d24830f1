/** The T6 decision (packages/as/src/t6.ts) row by row, as its doc comment's table states it. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { decideExchange, decideExternalExchange, type ExchangeRequester, type ExternalExchangeRequester, type SubjectBinding } from '@tether/as';

const T = 'A'.repeat(43);
const OTHER = 'B'.repeat(43);
const nobody: ExchangeRequester = { connectionThumbprint: undefined, dpopJkt: undefined, mtls: false, intendedRecipient: false, ownsToken: false };
const as = (over: Partial<ExchangeRequester>): ExchangeRequester => ({ ...nobody, ...over });

const rows: Array<[string, SubjectBinding, ExchangeRequester, string]> = [
  ['dpop, no proof', { kind: 'dpop', jkt: T }, as({ intendedRecipient: true, mtls: true }), 'refused dpop_subject_without_proof'],
  ['dpop, other key', { kind: 'dpop', jkt: T }, as({ dpopJkt: OTHER }), 'refused dpop_subject_key_mismatch'],
  ['dpop, its key', { kind: 'dpop', jkt: T }, as({ dpopJkt: T }), 'holder'],
  ['certificate, holder', { kind: 'certificate', thumbprint: T }, as({ connectionThumbprint: T, mtls: true }), 'holder'],
  ['session, holder', { kind: 'session', thumbprint: T }, as({ connectionThumbprint: T, mtls: true }), 'holder+proof'],
  ['session, recipient over mTLS', { kind: 'session', thumbprint: T }, as({ connectionThumbprint: OTHER, mtls: true, intendedRecipient: true }), 'recipient'],
  ['certificate, recipient without mTLS', { kind: 'certificate', thumbprint: T }, as({ intendedRecipient: true }), 'refused recipient_not_mtls'],
  ['session, a thief over mTLS', { kind: 'session', thumbprint: T }, as({ connectionThumbprint: OTHER, mtls: true }), 'refused not_holder_nor_recipient'],
  ['session, the token owner on another certificate', { kind: 'session', thumbprint: T }, as({ connectionThumbprint: OTHER, mtls: true, ownsToken: true }), 'refused not_holder_nor_recipient'],
  ['bearer, recipient', { kind: 'none' }, as({ intendedRecipient: true }), 'recipient'],
  ['bearer, owner', { kind: 'none' }, as({ ownsToken: true }), 'recipient'],
  ['bearer, anyone else', { kind: 'none' }, as({ mtls: true, connectionThumbprint: T }), 'refused not_recipient'],
];

test('T6 decision table', () => {
  for (const [label, subject, requester, expected] of rows) {
    const d = decideExchange(subject, requester);
    const got = !d.allowed ? `refused ${d.reason}` : d.role === 'holder' ? (d.mustProveSession ? 'holder+proof' : 'holder') : d.role;
    assert.equal(got, expected, label);
  }
});

test('T6 for subject tokens of a trusted external issuer', () => {
  const rows: Array<[string, ExternalExchangeRequester, string]> = [
    ['not listed, over mTLS', { listed: false, mtls: true, connectionThumbprint: T }, 'refused external_client_not_allowed'],
    ['listed, not mTLS-authenticated', { listed: true, mtls: false, connectionThumbprint: T }, 'refused external_not_mtls'],
    ['listed, mTLS but no certificate on this connection', { listed: true, mtls: true, connectionThumbprint: undefined }, 'refused external_not_mtls'],
    ['listed, mTLS', { listed: true, mtls: true, connectionThumbprint: T }, 'allowed'],
  ];
  for (const [label, requester, expected] of rows) {
    const d = decideExternalExchange(requester);
    assert.equal(d.allowed ? 'allowed' : `refused ${d.reason}`, expected, label);
  }
});
