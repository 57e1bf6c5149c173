// `flotilla member list` (and add, promote, remove, which print the same table) says what an
// even number of voters costs: 2 survive no failure, 2n no more than 2n - 1.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import type { MembersResponse } from '../../src/client/index.js';
import { renderMembers } from '../../src/cli/member.js';

function answer(voters: number[], outgoing: number[] = []): MembersResponse {
  const ids = [...new Set([...voters, ...outgoing])];
  return {
    memberId: 1,
    leader: 1,
    groups: [{ group: 0, voters, learners: [], outgoing }],
    members: ids.map((id) => ({
      id,
      peer: `127.0.0.1:${7000 + id}`,
      client: `http://127.0.0.1:${8000 + id}`,
      role: 'voter',
      queueRole: 'voter',
      autoPromote: false,
    })),
    removed: [],
    queueGroupFollows: true,
  };
}

void test('an even number of voters is pointed out; an odd one, or a joint change, is not', () => {
  assert.match(renderMembers(answer([1, 2])), /note: 2 voters: a quorum needs both/);
  assert.match(
    renderMembers(answer([1, 2, 3, 4])),
    /note: 4 voters survive 1 failure, as 3 do, and need 3 for a quorum/,
  );
  assert.match(renderMembers(answer([1, 2, 3, 4, 5, 6])), /survive 2 failures, as 5 do/);
  for (const voters of [[1], [1, 2, 3], [1, 2, 3, 4, 5]])
    assert.doesNotMatch(renderMembers(answer(voters)), /note:/, `${voters.length} voters`);
  assert.doesNotMatch(renderMembers(answer([1, 2], [1, 2, 3])), /note:/, 'joint');
});
