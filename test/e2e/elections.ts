// Who started each election of a Raft group in a run of real processes, and why, read from the
// nodes' own logs (JSON lines at level info: the core's events with their reasons, and the
// node's event-loop stall warnings, src/server/loop-health.ts).
//
// A test that restarts members in turn expects at most one election per restart of a group's
// leader (its hand-off, or the election once it left). Any other election needs a cause. On a
// machine with more runnable work than cores a member's event loop can go unscheduled for
// longer than an election timeout, and then an election is the protocol working as designed: a
// follower silent that long leaves its leader without a quorum's answer (check-quorum steps it
// down), a leader silent that long lets a follower's election timer fire. Every such stall is
// logged by the node it happened to, with when it ended; an extra election with no stall near it
// has no such excuse, and is what a fault looks like (a restarted follower disrupting its leader
// despite pre-vote, a hand-off racing a restart).

/** One JSON log line of a node, with the fields the judgement reads. */
export interface NodeLogLine {
  readonly node: number;
  readonly atMs: number;
  /** The Raft group; 0 (the key-value group) when the line names none. */
  readonly group: number;
  readonly msg: string;
  readonly term?: number;
  readonly reason?: string;
  readonly stalledMs?: number;
}

/** The lines of `text` (everything node `node` wrote, all its runs) that are JSON log lines. */
export function parseNodeLog(node: number, text: string): NodeLogLine[] {
  const out: NodeLogLine[] = [];
  for (const raw of text.split('\n')) {
    if (!raw.startsWith('{')) continue;
    let rec: Record<string, unknown>;
    try {
      rec = JSON.parse(raw) as Record<string, unknown>;
    } catch {
      continue; // the cut first line of a log kept only in part
    }
    if (typeof rec['time'] !== 'number' || typeof rec['msg'] !== 'string') continue;
    const num = (k: string): number | undefined => {
      const v = rec[k];
      return typeof v === 'number' ? v : undefined;
    };
    const term = num('term');
    const stalledMs = num('stalledMs');
    out.push({
      node,
      atMs: rec['time'],
      group: num('group') ?? 0,
      msg: rec['msg'],
      ...(term === undefined ? {} : { term }),
      ...(typeof rec['reason'] === 'string' ? { reason: rec['reason'] } : {}),
      ...(stalledMs === undefined ? {} : { stalledMs }),
    });
  }
  return out;
}

/** A member the test stopped (SIGTERM) and started again, and whether it led the group then. */
export interface Restart {
  readonly node: number;
  /** When the test sent the signal, on the same clock as the logs. */
  readonly atMs: number;
  readonly led: boolean;
}

/** The first campaign in a term: the node that moved the group to it, and why. */
export interface Election {
  readonly group: number;
  readonly term: number;
  readonly node: number;
  readonly atMs: number;
  readonly reason: string;
}

export interface Stall {
  readonly node: number;
  readonly endMs: number;
  readonly stalledMs: number;
}

export interface ElectionVerdict {
  /** At most one per restart of the group's leader: the first election after its signal. */
  readonly restart: Election[];
  /** The others that an event-loop stall near them explains, with those stalls. */
  readonly stalled: { readonly election: Election; readonly stalls: Stall[] }[];
  /** The others: no restart of the leader and no stall accounts for them. */
  readonly unexplained: Election[];
  /** Terms in the range with no campaign in the logs. */
  readonly unrecorded: number[];
}

export interface JudgeOptions {
  readonly group: number;
  /** The elections judged are those of terms fromTerm + 1 .. toTerm. */
  readonly fromTerm: number;
  readonly toTerm: number;
  readonly restarts: readonly Restart[];
  /**
   * How long before a campaign a stall still explains it. The chain from a stall to a campaign
   * is a silence of an election timeout, a step-down or a pre-vote, then the campaign; on the
   * loaded machine that caused the stall each step is slowed too, by up to a second or two.
   */
  readonly evidenceMs: number;
}

const campaignMsg = 'become candidate';
const stallMsg = 'event loop stalled';

/** Sorts the group's elections in fromTerm+1..toTerm into a restart's, a stall's, or neither. */
export function judgeElections(lines: readonly NodeLogLine[], o: JudgeOptions): ElectionVerdict {
  const first = new Map<number, Election>();
  for (const l of lines) {
    if (l.group !== o.group || l.msg !== campaignMsg || l.term === undefined) continue;
    if (l.term <= o.fromTerm || l.term > o.toTerm) continue;
    const seen = first.get(l.term);
    if (seen === undefined || l.atMs < seen.atMs)
      first.set(l.term, {
        group: o.group,
        term: l.term,
        node: l.node,
        atMs: l.atMs,
        reason: l.reason ?? '',
      });
  }
  const unrecorded: number[] = [];
  for (let term = o.fromTerm + 1; term <= o.toTerm; term++)
    if (!first.has(term)) unrecorded.push(term);
  const elections = [...first.values()].sort((a, b) => a.atMs - b.atMs || a.term - b.term);
  const stalls: Stall[] = lines
    .filter((l) => l.msg.startsWith(stallMsg) && l.stalledMs !== undefined)
    .map((l) => ({ node: l.node, endMs: l.atMs, stalledMs: l.stalledMs as number }));
  const restarts = [...o.restarts].sort((a, b) => a.atMs - b.atMs);
  const claimed = new Set<Restart>();
  const verdict = {
    restart: [] as Election[],
    stalled: [] as { election: Election; stalls: Stall[] }[],
    unexplained: [] as Election[],
    unrecorded,
  };
  for (const e of elections) {
    // The restart whose signal came last before the campaign, if it stopped the leader and
    // has not been charged with an election yet.
    const round = restarts.filter((r) => r.atMs <= e.atMs).at(-1);
    if (round !== undefined && round.led && !claimed.has(round)) {
      claimed.add(round);
      verdict.restart.push(e);
      continue;
    }
    const near = stalls.filter(
      (s) => s.endMs - s.stalledMs <= e.atMs && s.endMs >= e.atMs - o.evidenceMs,
    );
    if (near.length > 0) verdict.stalled.push({ election: e, stalls: near });
    else verdict.unexplained.push(e);
  }
  return verdict;
}

/**
 * One election in words, with the group's step-downs in the evidence window before it and the
 * stalls given: what a person needs to tell an overloaded machine from a fault.
 */
export function describeElection(
  e: Election,
  lines: readonly NodeLogLine[],
  stalls: readonly Stall[],
  evidenceMs: number,
): string {
  const secs = (ms: number): string => `${(ms / 1000).toFixed(2)} s`;
  const stepDowns = lines
    .filter(
      (l) =>
        l.group === e.group &&
        l.msg === 'stepped down' &&
        l.atMs <= e.atMs &&
        l.atMs >= e.atMs - evidenceMs,
    )
    .map((l) => `node ${l.node} stepped down ${secs(e.atMs - l.atMs)} before (${l.reason ?? ''})`);
  // Per node: how many stalls, and the longest with when it ended (the causal one, mostly).
  const when = (endMs: number): string =>
    endMs <= e.atMs ? `${secs(e.atMs - endMs)} before` : `${secs(endMs - e.atMs)} after`;
  const stalled = [...new Set(stalls.map((s) => s.node))].sort().map((node) => {
    const mine = stalls.filter((s) => s.node === node);
    const longest = mine.reduce((a, b) => (b.stalledMs > a.stalledMs ? b : a));
    const times = mine.length === 1 ? 'once' : `${mine.length} times`;
    return `node ${node}'s event loop stalled ${times}, longest ${longest.stalledMs} ms ending ${when(longest.endMs)}`;
  });
  return [
    `term ${e.term}: node ${e.node} campaigned (${e.reason})`,
    ...stepDowns,
    ...(stalls.length === 0 ? [`no event-loop stall within ${secs(evidenceMs)} before`] : stalled),
  ].join('; ');
}
