// Elections from the candidate's side (paper §5.2, pre-vote from thesis §9.6): starting a
// campaign, and the step function of pre-candidates and candidates, which count votes until
// the tracker says the election is won or lost.

import { unappliedConfChange } from './conf-history.js';
import type { Raft } from './raft.js';
import { stepFollower } from './step-follower.js';
import { NONE, type Message, type Term } from './types.js';

/** The election timeout fired, or a transfer asked us to campaign. */
export function hup(r: Raft, transfer: boolean): void {
  // Votes are counted in the configuration in force, which moves only when changes are
  // applied: a node holding a committed change it has not applied would count in one more
  // than a step behind the group's, where two candidates could both win a term (etcd-io/raft
  // checks the same in hup). It campaigns once its caller applied the change.
  const pending = unappliedConfChange(r);
  if (pending !== 0) {
    r.emit('campaign-deferred', NONE, `committed membership change at ${pending} not applied yet`);
    // A transfer asked for this campaign: it happens once the change is applied.
    if (transfer) r.campaignAfterApply = true;
    return;
  }
  if (r.cfg.preVote && !transfer) campaign(r, 'pre-vote', false);
  else campaign(r, 'vote', transfer);
}

function campaign(r: Raft, kind: 'pre-vote' | 'vote', transfer: boolean): void {
  let term: Term;
  if (kind === 'pre-vote') {
    r.becomePreCandidate();
    term = r.term + 1;
  } else {
    r.becomeCandidate(transfer ? 'leadership transfer' : 'election timeout');
    term = r.term;
  }
  r.trk.recordVote(r.id, true);
  if (maybeEndElection(r)) return;
  const lastLogIndex = r.log.lastIndex();
  const lastLogTerm = r.log.lastTerm();
  for (const to of r.trk.voterIds()) {
    if (to === r.id) continue;
    r.send({ type: kind, from: r.id, to, term, lastLogIndex, lastLogTerm, transfer });
  }
}

/** Acts on the votes so far; returns whether the election ended. */
function maybeEndElection(r: Raft): boolean {
  const result = r.trk.tallyVotes();
  if (result === 'pending') return false;
  if (result === 'won') {
    if (r.role === 'pre-candidate') campaign(r, 'vote', false);
    else r.becomeLeader();
  } else {
    r.becomeFollower(r.term, NONE, `lost ${r.role === 'pre-candidate' ? 'pre-vote' : 'election'}`);
  }
  return true;
}

export function stepCandidate(r: Raft, m: Message): void {
  switch (m.type) {
    case 'append':
    case 'heartbeat':
    case 'snapshot':
      // Someone won this term (§5.2): follow them.
      r.becomeFollower(r.term, m.from, `leader ${m.from} elected in term ${r.term}`);
      stepFollower(r, m);
      return;
    case 'vote-resp':
    case 'pre-vote-resp': {
      const mine = r.role === 'pre-candidate' ? 'pre-vote-resp' : 'vote-resp';
      if (m.type !== mine) return;
      r.trk.recordVote(m.from, m.granted);
      maybeEndElection(r);
      return;
    }
    case 'read-index':
      r.refuseRead(m.from, m.requestId);
      return;
    default:
      return;
  }
}
