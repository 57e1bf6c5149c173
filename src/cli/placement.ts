// `flotilla node drain ID`, `flotilla node undrain ID` and `flotilla placement`: draining a
// member before removing it, and what the placement loop is doing (docs/DESIGN.md,
// "Placement"). Requests go to the meta group's leader, where the loop runs (any endpoint
// forwards them).

import type { Command } from 'commander';
import type { FlotillaClient, PlacementResponse, PlacementStepJson } from '../client/index.js';
import { tokenOption, type ClusterOptions } from './token.js';

type WithClient = <T>(opts: ClusterOptions, fn: (c: FlotillaClient) => Promise<T>) => Promise<void>;

function showStep(s: PlacementStepJson): string {
  switch (s.kind) {
    case 'add':
      return `add range ${s.range} on ${s.to}`;
    case 'remove':
      return `remove range ${s.range} from ${s.from}`;
    case 'move':
      return `move range ${s.range} from ${s.from} to ${s.to}`;
    case 'transfer':
      return `leader of range ${s.range} from ${s.from} to ${s.to}`;
  }
}

const list = (ids: readonly number[]): string => (ids.length === 0 ? 'none' : ids.join(', '));

/** The loop's state, a line per fact. */
export function renderPlacement(p: PlacementResponse): string {
  const lines = [
    `placement loop: ${p.enabled ? (p.active ? `running on node ${p.leader}` : 'not running on the answering node') : 'off'}`,
    `replicas per range: ${p.replicasPerRange}${p.target !== null && p.target !== p.replicasPerRange ? ` (${p.target} with these members)` : ''}`,
    `draining: ${list(p.draining)}${p.forced.length === 0 ? '' : ` (forced: ${list(p.forced)})`}`,
  ];
  // First after the facts, and plainly: a drain that waits is what an operator must see.
  if (p.drainBlocked !== null)
    lines.push(`DRAIN BLOCKED (${p.drainBlocked.reason}): ${p.drainBlocked.message}`);
  // From a node of an older release: `current` alone.
  const now = p.running ?? (p.current === null ? [] : [p.current]);
  if (p.active) {
    lines.push(`placing on: ${list(p.nodes)}`);
    // Steps that wait with none under way look like work stalled: say that they wait.
    const waiting = p.ready === false && p.pending > 0 && now.length === 0;
    lines.push(
      `pending steps: ${p.pending}${p.phase !== null && p.phase !== 'none' ? ` (${p.phase})` : ''}` +
        (waiting
          ? ', none to take now: each touches a range changed lately or backing off, or would not even the counts'
          : ''),
    );
  }
  for (const step of now) lines.push(`now: ${showStep(step)}`);
  if (p.last !== null)
    lines.push(
      `last: ${showStep(p.last.step)}: ${p.last.outcome} in ${p.last.tookMs} ms` +
        (p.last.error === undefined ? '' : ` (${p.last.error})`),
    );
  lines.push(`steps: ${p.stepsDone} done, ${p.stepsFailed} failed`);
  for (const b of p.backingOff)
    lines.push(`range ${b.range}: ${b.failures} failed steps, tried again in ${b.retryInMs} ms`);
  for (const why of p.blocked) lines.push(`blocked: ${why}`);
  return lines.join('\n') + '\n';
}

export function placementCommands(
  program: Command,
  withClient: WithClient,
  defaultEndpoints: string,
  int: (name: string, min?: number, max?: number) => (v: string) => number,
): void {
  const placement = program
    .command('placement')
    .description('what the placement loop is doing: nodes draining, steps pending, the last step')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption())
    .option('--json', 'print the answer as JSON')
    .action(async (o: { json?: boolean }) =>
      withClient(placement.opts<ClusterOptions>(), async (c) => {
        const r = await c.placement();
        if (o.json === true) return r;
        process.stdout.write(renderPlacement(r));
        return undefined;
      }),
    );
  const node = program
    .command('node')
    .description('drain a member (move its ranges away) before removing it, or undo that')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  for (const [name, what] of [
    [
      'drain',
      'move the replicas of ranges off member ID (flotilla placement shows progress); remove it once it holds none',
    ],
    ['undrain', 'let member ID hold ranges again'],
  ] as const) {
    const cmd = node
      .command(name)
      .description(what)
      .argument('<id>', 'the member', int('<id>', 1, 2 ** 31))
      .option('--json', 'print the answer as JSON');
    if (name === 'drain')
      cmd.option(
        '--force',
        'move the replicas off even when too few members remain to keep replicasPerRange of each range',
      );
    cmd.action(async (id: number, o: { json?: boolean; force?: boolean }) =>
      withClient(node.opts<ClusterOptions>(), async (c) => {
        const r =
          name === 'drain'
            ? await c.drainNode(id, { force: o.force === true })
            : await c.undrainNode(id);
        if (o.json === true) return r;
        process.stdout.write(renderPlacement(r));
        return undefined;
      }),
    );
  }
}
