// The dashboard's reading of the members' statuses, without a browser: which member it shows as
// the leader. A member whose key-value group a failed disk write stopped keeps saying the role
// it had; the page must not take it for the leader (the browser tests cover the rest).

import assert from 'node:assert/strict';
import { test } from 'node:test';

interface Member {
  readonly id: number;
  readonly error: string | null;
  readonly view: { readonly status: Record<string, unknown> };
}

interface ClusterView {
  leaderOf(c: { members: Member[] }): Member | null;
  stoppedGroupOf(status: Record<string, unknown>, group: number): boolean;
}

const view = (await import(
  new URL('../../../dashboard/members.js', import.meta.url).href
)) as ClusterView;

function member(id: number, role: string, term: number, stopped: number[] = []): Member {
  return {
    id,
    error: null,
    view: {
      status: {
        id,
        role,
        term,
        stoppedGroups: stopped.map((group) => ({ group, error: 'ENOSPC: no space left' })),
      },
    },
  };
}

void test('a member whose key-value group stopped is not shown as the leader', () => {
  // Node 3 led in term 1 when its disk filled; nodes 1 and 2 elected node 2 in term 2.
  const after = [member(1, 'follower', 2), member(2, 'leader', 2), member(3, 'leader', 1, [0])];
  assert.equal(view.leaderOf({ members: after })?.id, 2);
  // Before the others' election, the stopped member is the only one saying it leads: none does.
  const before = [member(1, 'follower', 1), member(2, 'follower', 1), member(3, 'leader', 1, [0])];
  assert.equal(view.leaderOf({ members: before }), null);
  // A stopped queue group does not make its member's key-value role stale.
  const queueStopped = [member(1, 'leader', 4, [1]), member(2, 'follower', 4)];
  assert.equal(view.leaderOf({ members: queueStopped })?.id, 1);
  assert.equal(view.stoppedGroupOf(after[2]?.view.status ?? {}, 0), true);
  assert.equal(view.stoppedGroupOf(after[1]?.view.status ?? {}, 0), false);
});
