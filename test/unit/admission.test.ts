/**
 * Server admission (src/link/admission.ts) as a table: the current partner,
 * the newcomer's request, and the decision.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { admissionRequest, decideAdmission, needsPartnerCheck, type AdmissionInput, type AdmissionRequest, type CurrentPartner } from '../../src/link/admission.js';

const rows: ReadonlyArray<readonly [CurrentPartner, boolean, AdmissionRequest, boolean, string]> = [
  // current, current resumable, request, proof valid, decision
  ['none', false, 'plain', false, 'fresh/keep'],
  ['none', false, 'new', false, 'fresh/keep'],
  ['none', false, 'resume-other', false, 'fresh/keep'],
  ['answering', false, 'plain', false, 'refuse-busy'],
  ['answering', true, 'new', false, 'refuse-busy'],
  ['answering', true, 'resume-other', false, 'refuse-busy'],
  ['live', true, 'plain', false, 'refuse-busy'],
  ['silent', false, 'plain', false, 'fresh/replace'],
  ['silent', false, 'new', false, 'fresh/replace'],
  ['silent', true, 'new', false, 'fresh/abandon'],
  ['silent', true, 'resume-other', false, 'fresh/abandon'],
  ['held', true, 'plain', false, 'fresh/abandon'],
  ['held', true, 'new', false, 'fresh/abandon'],
  ['held', true, 'resume-other', false, 'fresh/abandon'],
  ['held', true, 'resume-current', true, 'resume'],
  ['held', true, 'resume-current', false, 'refuse-proof'],
  ['live', true, 'resume-current', true, 'resume'],
  ['live', true, 'resume-current', false, 'refuse-proof'],
];

test('admission decisions, row by row', () => {
  for (const [current, currentResumable, request, proofValid, expected] of rows) {
    const input: AdmissionInput = { current, currentResumable, request, proofValid };
    const d = decideAdmission(input);
    const got = d.kind === 'fresh' ? `fresh/${d.old.kind}` : d.kind;
    assert.equal(got, expected, JSON.stringify(input));
  }
});

test('abandon reasons name what the newcomer did', () => {
  const reason = (current: CurrentPartner, request: AdmissionRequest): string => {
    const d = decideAdmission({ current, currentResumable: true, request, proofValid: false });
    assert.ok(d.kind === 'fresh' && d.old.kind === 'abandon');
    return d.old.reason;
  };
  assert.match(reason('held', 'plain'), /does not resume sessions/);
  assert.match(reason('held', 'new'), /started a new session/);
  assert.match(reason('silent', 'resume-other'), /another session/);
});

test('only a live partner that the newcomer does not claim is checked with a PING', () => {
  assert.equal(needsPartnerCheck('live', 'plain'), true);
  assert.equal(needsPartnerCheck('live', 'new'), true);
  assert.equal(needsPartnerCheck('live', 'resume-other'), true);
  assert.equal(needsPartnerCheck('live', 'resume-current'), false);
  for (const current of ['none', 'held'] as const) assert.equal(needsPartnerCheck(current, 'plain'), false);
});

test('the request a newcomer makes, from its resume handshake', () => {
  assert.equal(admissionRequest(null, false), 'plain');
  assert.equal(admissionRequest('new', false), 'new');
  assert.equal(admissionRequest('resume', true), 'resume-current');
  assert.equal(admissionRequest('resume', false), 'resume-other');
});
