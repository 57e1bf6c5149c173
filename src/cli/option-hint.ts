// What to say when the parser refuses an option that some command takes: `flotilla --endpoints
// URL kv get k` was answered with the program's whole help and nothing saying that
// `--endpoints` goes after the command's name.

import type { Command, CommanderError } from 'commander';

/** The most commands named in the hint; the rest are counted. */
const named = 3;

/** The commands under `root` (their paths from it, `kv put`) that take `flag`. */
function commandsTaking(root: Command, flag: string): string[] {
  const found: string[] = [];
  const visit = (c: Command, path: readonly string[]): void => {
    for (const sub of c.commands) {
      const at = [...path, sub.name()];
      if (sub.options.some((o) => o.long === flag || o.short === flag)) found.push(at.join(' '));
      visit(sub, at);
    }
  };
  visit(root, []);
  return found;
}

/**
 * A line for an unknown option that commands of `program` take: which, and that it goes after
 * the command's name; null for any other error, or an option no command takes.
 */
export function optionHint(program: Command, err: CommanderError): string | null {
  if (err.code !== 'commander.unknownOption') return null;
  const flag = /'(--?[^'=\s]+)/.exec(err.message)?.[1];
  if (flag === undefined) return null;
  const takers = commandsTaking(program, flag);
  if (takers.length === 0) return null;
  const more = takers.length > named ? `, and ${takers.length - named} more` : '';
  return (
    `${flag} is an option of ${takers.slice(0, named).join(', ')}${more}: ` +
    `give it after the command's name (flotilla ${takers[0] ?? ''} ... ${flag} ...)`
  );
}
