// What the dashboard reads from the members' statuses, with no page around it: kept apart
// from the tabs' drawing so that it can be checked outside a browser
// (test/server/dashboard-view.test.ts).

/**
 * The member that leads, as the members say: the highest term's leader that answers. Not one
 * whose key-value group a failed disk write stopped: it keeps saying the role it had.
 */
export function leaderOf(c) {
  let best = null;
  for (const m of c.members) {
    const s = m.view?.status;
    if (
      m.error === null &&
      s?.role === 'leader' &&
      !stoppedGroupOf(s, 0) &&
      (best === null || s.term > best.view.status.term)
    )
      best = m;
  }
  return best;
}

/** Whether a failed disk write stopped group `group` on the member whose status this is. */
export function stoppedGroupOf(status, group) {
  return (status?.stoppedGroups ?? []).some((g) => g.group === group);
}

/**
 * What Raft group `group` holds, for the timeline and the snapshot transfers: every node runs
 * the first range (the key-value store, group 0), the job queue (1) and the range map (2);
 * a range split off later is the group of its id.
 */
export function groupName(group) {
  if (group === 0) return 'key-value';
  if (group === 1) return 'queue';
  if (group === 2) return 'range map';
  return `range ${group}`;
}
