// `flotilla ranges`, `flotilla range split KEY` and `flotilla range move RANGE --from F --to T`:
// the ranges of the key-value store from the command line (docs/API.md, "Ranges"). A split
// goes to the leader of the range holding the key, a move to the leader of the range (any
// endpoint that holds the range forwards it).

import type { Command } from 'commander';
import { InvalidArgumentError, Option } from 'commander';
import type {
  FlotillaClient,
  MoveResponse,
  RangesResponse,
  ReadConsistency,
  SplitResponse,
} from '../client/index.js';
import { int } from './int-option.js';
import { table } from './text-table.js';
import { UsageError } from './usage-error.js';
import { tokenOption, type ClusterOptions } from './token.js';

type WithClient = <T>(opts: ClusterOptions, fn: (c: FlotillaClient) => Promise<T>) => Promise<void>;

/** A bound for a table: the key as JSON text, the key space's ends as -inf and +inf. */
function bound(key: string | null, end: boolean): string {
  if (key === null) return '+inf';
  if (key === '' && !end) return '-inf';
  return JSON.stringify(key);
}

/** The rows as a table (text-table.ts), a line each. */
function tableText(rows: string[][]): string {
  return table(rows).join('\n') + '\n';
}

/** Bytes for a table: B, KiB, MiB, GiB. */
export function showBytes(n: number): string {
  if (n < 1024) return `${n}B`;
  const units = ['KiB', 'MiB', 'GiB', 'TiB'];
  let v = n / 1024;
  let u = 0;
  for (; v >= 1024 && u < units.length - 1; u++) v /= 1024;
  return `${v.toFixed(1)}${units[u] as string}`;
}

/**
 * The ranges as a table: id, bounds, generation, replicas, leader, then the answering node's
 * figures (keys, size, writes and reads per second) and applied index.
 */
export function renderRanges(r: RangesResponse): string {
  const rows = [
    [
      'RANGE',
      'START',
      'END',
      'GEN',
      'REPLICAS',
      'LEADER',
      'KEYS',
      'SIZE',
      'WRITES/S',
      'READS/S',
      'APPLIED',
    ],
  ];
  const opt = (x: number | null, show: (n: number) => string = String) =>
    x === null ? '' : show(x);
  for (const x of r.ranges)
    rows.push([
      String(x.id),
      bound(x.start, false),
      bound(x.end, true),
      String(x.generation),
      x.replicas.join(','),
      opt(x.leader),
      opt(x.keys),
      opt(x.bytes, showBytes),
      opt(x.writesPerSec, (n) => n.toFixed(1)),
      opt(x.readsPerSec, (n) => n.toFixed(1)),
      opt(x.applied),
    ]);
  return (
    `map version ${r.version}; figures from node ${r.node} (keys, size and writes/s of its ` +
    `copy, about the same on every replica; reads/s it served itself)\n` +
    tableText(rows)
  );
}

export function renderSplit(r: SplitResponse): string {
  return tableText([
    ['RANGE', 'START', 'END', 'GEN', 'REPLICAS'],
    ...[r.left, r.right].map((x) => [
      String(x.id),
      bound(x.start, false),
      bound(x.end, true),
      String(x.generation),
      x.replicas.join(','),
    ]),
  ]);
}

export function renderMove(r: MoveResponse): string {
  const x = r.range;
  return tableText([
    ['RANGE', 'START', 'END', 'GEN', 'REPLICAS'],
    [
      String(x.id),
      bound(x.start, false),
      bound(x.end, true),
      String(x.generation),
      x.replicas.join(','),
    ],
  ]);
}

/** A range or node id on the command line: a non-negative integer. */
function id(what: string): (v: string) => number {
  return (v) => {
    const n = Number(v);
    if (!/^\d+$/.test(v) || !Number.isSafeInteger(n))
      throw new InvalidArgumentError(
        `${what} must be a non-negative integer, got ${JSON.stringify(v)}`,
      );
    return n;
  };
}

/**
 * A node id on the command line, as the server bounds it (`--from 0` was sent, and refused
 * BAD_REQUEST with exit code 1 naming the body's field "from" rather than the option).
 */
const nodeId = (what: string) => int(what, 1, 2 ** 31);

/**
 * `--replicas 1,2,3`: node ids, each a positive integer, none twice. Commander's option parser, so a bad
 * list is a usage error (one line, exit code 2) before any request, not a stack trace.
 */
export function parseIdList(text: string): number[] {
  const ids = text.split(',').map((x) => x.trim());
  for (const id of ids)
    if (!/^[1-9][0-9]{0,9}$/.test(id))
      throw new InvalidArgumentError(
        `--replicas takes comma-separated node ids, got ${JSON.stringify(text)}`,
      );
  const twice = ids.find((id, i) => ids.indexOf(id) !== i);
  if (twice !== undefined)
    throw new InvalidArgumentError(
      `--replicas names node ${twice} twice, got ${JSON.stringify(text)}`,
    );
  return ids.map(Number);
}

export function rangeCommands(
  program: Command,
  withClient: WithClient,
  defaultEndpoints: string,
): void {
  const ranges = program
    .command('ranges')
    .description(
      'the ranges of the key-value store: bounds, replicas, leader, keys, size, writes/s, reads/s',
    )
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption())
    .option('--json', 'print the answer as JSON')
    .addOption(
      new Option(
        '--consistency <level>',
        'the map as the answering node applied it (serializable), or after a read round on the meta group (linearizable, the default)',
      ).choices(['linearizable', 'lease', 'serializable']),
    )
    .action(async (o: { json?: boolean; consistency?: ReadConsistency }) =>
      withClient(ranges.opts<ClusterOptions>(), async (c) => {
        const r = await c.ranges(o.consistency === undefined ? {} : { consistency: o.consistency });
        if (o.json === true) return r;
        process.stdout.write(renderRanges(r));
        return undefined;
      }),
    );
  const range = program
    .command('range')
    .description('change the ranges of the key-value store')
    .option('--endpoints <urls>', 'comma-separated node URLs', defaultEndpoints)
    .addOption(tokenOption());
  range
    .command('split')
    .description('split the range holding KEY at KEY: the keys from KEY on form a new range')
    .argument('<key>', 'the first key of the new range (UTF-8)')
    .option(
      '--replicas <ids>',
      "the new range's replicas, comma-separated node ids: a subset of the range's voters (default: all of them)",
      parseIdList,
    )
    .option('--json', 'print the answer as JSON')
    .action(async (key: string, o: { json?: boolean; replicas?: number[] }) =>
      withClient(range.opts<ClusterOptions>(), async (c) => {
        const r = await c.splitRange(key, o.replicas === undefined ? {} : { replicas: o.replicas });
        if (o.json === true) return r;
        process.stdout.write(renderSplit(r));
        return undefined;
      }),
    );
  range
    .command('move')
    .description(
      "move one replica of RANGE from node F to node T (a member not holding it): T receives the range's state and votes before F leaves; answered once done",
    )
    .argument('<range>', 'the range id (3 or more: ranges 0-2 run on every member)', id('RANGE'))
    .requiredOption('--from <id>', 'the node giving its replica up', nodeId('--from'))
    .requiredOption('--to <id>', 'the node receiving the replica', nodeId('--to'))
    .option('--json', 'print the answer as JSON')
    .action(async (rangeId: number, o: { from: number; to: number; json?: boolean }) => {
      // The server refuses it INVALID_REQUEST; as a failure (exit code 1) it read as the
      // cluster's, where it is the command line's.
      if (o.from === o.to)
        throw new UsageError(
          `range move --from ${o.from} --to ${o.to}: a move from a node to itself changes nothing; give another --to`,
        );
      return withClient(range.opts<ClusterOptions>(), async (c) => {
        const r = await c.moveRange(rangeId, o.from, o.to);
        if (o.json === true) return r;
        process.stdout.write(renderMove(r));
        return undefined;
      });
    });
  range
    .command('transfer')
    .description(
      'hand the leadership of RANGE to node N, one of its voters: answered once N leads (ranges 1 and 2 are refused)',
    )
    .argument('<range>', 'the range id', id('RANGE'))
    .requiredOption('--to <id>', 'the voter to lead the range', nodeId('--to'))
    .option('--json', 'print the answer as JSON')
    .action(async (rangeId: number, o: { to: number; json?: boolean }) =>
      withClient(range.opts<ClusterOptions>(), async (c) => {
        const r = await c.transferRangeLeader(rangeId, o.to);
        if (o.json === true) return r;
        process.stdout.write(`range ${r.range} is led by node ${r.leader}\n`);
        return undefined;
      }),
    );
}
