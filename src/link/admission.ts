/**
 * Whom a server admits (docs/PROTOCOL.md, "One partner at a time" and
 * "The resume handshake"), as a pure decision: the server describes its
 * current partner and the newcomer's request, and carries out the answer.
 */

/**
 * The server's current partner, as far as the newcomer is concerned:
 * - none: no session, or an ended one;
 * - live: a live link that was not checked (the newcomer claims its session and proves it instead);
 * - answering / silent: a live link that answered the check PING within 2 s, or did not;
 * - held: its link is lost and its streams wait for a resumption.
 */
export type CurrentPartner = 'none' | 'live' | 'answering' | 'silent' | 'held';

/**
 * What the newcomer asks: plain (it does not resume sessions), new (it
 * resumes, and starts a new session), resume-current (it asks to resume the
 * current partner's session), resume-other (a session this server does not hold).
 */
export type AdmissionRequest = 'plain' | 'new' | 'resume-current' | 'resume-other';

export interface AdmissionInput {
  readonly current: CurrentPartner;
  /** The current session resumes (it has a resumption identity). */
  readonly currentResumable: boolean;
  readonly request: AdmissionRequest;
  /** resume-current only: the newcomer's proof matches the session. */
  readonly proofValid: boolean;
}

/** What becomes of the current partner when a newcomer starts a fresh session. */
export type OldPartnerFate =
  | { readonly kind: 'keep' }
  /** GOAWAY normal to the old link: it did not answer. */
  | { readonly kind: 'replace' }
  /** The held (or resumable) session ends: its streams cannot go on with this newcomer. */
  | { readonly kind: 'abandon'; readonly reason: string };

export type Admission =
  | { readonly kind: 'refuse-busy' }
  | { readonly kind: 'refuse-proof' }
  | { readonly kind: 'resume' }
  | { readonly kind: 'fresh'; readonly old: OldPartnerFate };

/** The newcomer's request: what its resume handshake asked (null: it does not resume), and whether it named the current session. */
export function admissionRequest(resumeKind: 'new' | 'resume' | null, claimsCurrent: boolean): AdmissionRequest {
  if (resumeKind === null) return 'plain';
  if (resumeKind === 'new') return 'new';
  return claimsCurrent ? 'resume-current' : 'resume-other';
}

/** Does the newcomer's admission wait for a check PING to the current partner? */
export function needsPartnerCheck(current: CurrentPartner, request: AdmissionRequest): boolean {
  return current === 'live' && request !== 'resume-current';
}

export function decideAdmission(input: AdmissionInput): Admission {
  const { current, request } = input;
  // A live partner keeps its place unless it failed the check, or the newcomer proves it is that partner.
  if (current === 'answering' || (current === 'live' && request !== 'resume-current')) return { kind: 'refuse-busy' };
  if (request === 'resume-current' && current !== 'none') {
    return input.proofValid ? { kind: 'resume' } : { kind: 'refuse-proof' };
  }
  if (current === 'none') return { kind: 'fresh', old: { kind: 'keep' } };
  if (request === 'plain') {
    return current === 'held'
      ? { kind: 'fresh', old: { kind: 'abandon', reason: 'cannot resume: the new partner does not resume sessions' } }
      : { kind: 'fresh', old: { kind: 'replace' } };
  }
  if (!input.currentResumable) return { kind: 'fresh', old: { kind: 'replace' } };
  const why = request === 'new' ? 'the partner started a new session' : 'the partner asked to resume another session';
  return { kind: 'fresh', old: { kind: 'abandon', reason: `cannot resume: ${why}` } };
}
