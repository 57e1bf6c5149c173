// `flotilla member ...` and `flotilla leader transfer`: the cluster's membership from the
// command line. Changes go to the key-value group's leader (any endpoint forwards them); the
// queue group follows by itself (docs/DESIGN.md, "Membership").

import type { Command } from 'commander';
import type { FlotillaClient, MembersResponse } from '../client/index.js';
import { Deadline } from '../api/deadline.js';
import { sleep } from '../client/util.js';
import { table } from './text-table.js';
import { tokenOption, type ClusterOptions } from './token.js';

/** How long `leader transfer` watches for the new leader before it says it has not taken over. */
const transferWaitMs = 5_000;

type WithClient = <T>(opts: ClusterOptions, fn: (c: FlotillaClient) => Promise<T>) => Promise<void>;

/** The members as a table: id, addresses, role in each group, the leader's view of its log. */
export function renderMembers(r: MembersResponse): string {
  const rows = [['ID', 'PEER', 'CLIENT', 'ROLE', 'QUEUE-ROLE', 'MATCH', 'LAG', 'AUTO-PROMOTE']];
  for (const m of r.members)
    rows.push([
      m.id === r.leader ? `${m.id}*` : String(m.id),
      m.peer,
      m.client,
      m.role,
      m.queueRole,
      m.match === undefined ? '' : String(m.match),
      m.lag === undefined ? '' : String(m.lag),
      // A voter's flag says it has held a log (a mark for its recovery), not a promotion.
      m.autoPromote && m.role === 'learner' ? 'yes' : '',
    ]);
  const lines = table(rows);
  if (r.removed.length > 0) lines.push(`removed: ${r.removed.join(', ')}`);
  if (!r.queueGroupFollows) lines.push('queue group: still following the last change');
  const note = votersNote(r.groups.find((g) => g.group === 0));
  if (note !== null) lines.push(note);
  return lines.join('\n') + '\n';
}

/**
 * What an even number of voters costs, said where an operator looks after a change: a quorum
 * is a majority, so 2 voters survive no failure (either one stops writes) and 2n survive no
 * more than 2n - 1 do.
 */
function votersNote(kv: MembersResponse['groups'][number] | undefined): string | null {
  if (kv === undefined || kv.outgoing.length > 0) return null;
  const n = kv.voters.length;
  if (n === 2)
    return 'note: 2 voters: a quorum needs both, so either one failing stops writes; a third voter survives one failure';
  if (n >= 4 && n % 2 === 0)
    return `note: ${n} voters survive ${n / 2 - 1} failure${n === 4 ? '' : 's'}, as ${n - 1} do, and need ${n / 2 + 1} for a quorum`;
  return null;
}

export function memberCommands(
  program: Command,
  withClient: WithClient,
  defaultEndpoints: string,
  int: (name: string, min?: number, max?: number) => (v: string) => number,
): void {
  const member = program
    .command('member')
    .description('list, add, promote and remove the members of the cluster')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  const opts = () => member.opts<ClusterOptions>();
  const show = (r: MembersResponse, json: boolean | undefined): MembersResponse | undefined => {
    if (json === true) return r;
    process.stdout.write(renderMembers(r));
    return undefined;
  };
  const id = (name: string) => int(name, 1, 2 ** 31);
  member
    .command('list')
    .description('the members: role in each Raft group, and on the leader, match index and lag')
    .option('--json', 'print the answer as JSON')
    .action(async (o: { json?: boolean }) =>
      withClient(opts(), async (c) => show(await c.members(), o.json)),
    );
  for (const [name, learner, what] of [
    [
      'add',
      false,
      'add a voter (it counts toward quorums at once); then start it with flotilla start --join',
    ],
    [
      'add-learner',
      true,
      'add a learner (replicated to, no vote); start it with flotilla start --join, promote it once caught up',
    ],
  ] as const)
    member
      .command(name)
      .description(what)
      .argument('<id>', 'the new member id (never one removed before)', id('<id>'))
      .argument('<peer>', 'its peer address, host:port')
      .argument(
        '<client>',
        'its client URL, e.g. http://127.0.0.1:8004 (https://127.0.0.1:8004 with TLS)',
      )
      .option('--json', 'print the answer as JSON')
      .action(async (n: number, peer: string, client: string, o: { json?: boolean }) =>
        withClient(opts(), async (c) =>
          show(await c.addMember({ id: n, peer, client }, { learner }), o.json),
        ),
      );
  member
    .command('promote')
    .description('make a learner a voter, once it caught up (member list shows its lag)')
    .argument('<id>', 'the learner', id('<id>'))
    .option('--json', 'print the answer as JSON')
    .action(async (n: number, o: { json?: boolean }) =>
      withClient(opts(), async (c) => show(await c.promoteMember(n), o.json)),
    );
  member
    .command('remove')
    .description(
      'remove a member for good: its id and data directory are never used again (drain it first if it holds ranges)',
    )
    .argument('<id>', 'the member', id('<id>'))
    .option(
      '--force',
      'remove it even though it holds replicas of ranges, or the voters left would lack a quorum of members heard from lately (it and they are gone for good)',
    )
    .option('--json', 'print the answer as JSON')
    .action(async (n: number, o: { json?: boolean; force?: boolean }) =>
      withClient(opts(), async (c) =>
        show(await c.removeMember(n, { force: o.force === true }), o.json),
      ),
    );

  const leader = program
    .command('leader')
    .description("the key-value group's leader")
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  leader
    .command('transfer')
    .description(
      'hand leadership to another voter (default: one heard from lately, the most caught up)',
    )
    .option('--to <id>', 'the voter to hand it to', id('--to'))
    .action(async (o: { to?: number }) =>
      withClient(leader.opts<ClusterOptions>(), async (c) => {
        const before = (await c.clusterStatus()).leader;
        if (o.to !== undefined && o.to === before) {
          process.stdout.write(`node ${before} already leads: nothing to transfer\n`);
          return undefined;
        }
        await c.transferLeadership(o.to === undefined ? {} : { to: o.to });
        // The answer means the transfer started; say how it ended, within a bound (a transfer
        // not completed within an election timeout is abandoned by the leader). A status that
        // cannot be read meanwhile ends the watch, not the command: the transfer went ahead.
        const deadline = new Deadline(transferWaitMs);
        let now = before;
        try {
          while (!deadline.signal.aborted) {
            now = (await c.clusterStatus({ signal: deadline.signal })).leader;
            if (now !== before && now !== 0) break;
            await sleep(100, deadline.signal);
          }
        } catch {
          now = 0;
        } finally {
          deadline[Symbol.dispose]();
        }
        const was = before === 0 ? '' : ` (node ${before} led before)`;
        process.stdout.write(
          now !== before && now !== 0
            ? `node ${now} leads now${was}\n`
            : `leadership transfer${o.to === undefined ? '' : ` to ${o.to}`} started; ` +
                `no new leader seen within ${transferWaitMs / 1000} s (member list shows the followers' lag)\n`,
        );
        return undefined;
      }),
    );
}
