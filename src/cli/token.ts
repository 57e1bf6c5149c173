// `--token` of every command that talks to a cluster: the bearer token its requests present
// to a cluster that requires one (API.md, "Authentication"). FLOTILLA_TOKEN sets it too, and
// is the better way: a flag shows in the process list and the shell's history.

import { randomBytes } from 'node:crypto';
import { Option, type Command } from 'commander';
import { roles, sha256, type Role } from '../api/auth.js';
import { UsageError } from './usage-error.js';

export function tokenOption(): Option {
  return new Option(
    '--token <token>',
    'bearer token, for a cluster that requires one (better: FLOTILLA_TOKEN, which a process list does not show)',
  ).env('FLOTILLA_TOKEN');
}

/** The options every cluster command has. */
export interface ClusterOptions {
  readonly endpoints: string;
  readonly token?: string;
}

/**
 * The URLs of `--endpoints`, comma-separated. None, or one that is not an http(s) URL, is a
 * usage error (exit code 2): the client's own check said it as a failure (exit code 1), and a
 * save as "No endpoint served a backup: " with nothing after it.
 */
export function endpointList(text: string): string[] {
  const endpoints = text
    .split(',')
    .map((e) => e.trim())
    .filter(Boolean);
  if (endpoints.length === 0)
    throw new UsageError(
      "--endpoints lists no URL: give the nodes' base URLs, such as http://127.0.0.1:8001",
    );
  for (const e of endpoints)
    if (!URL.canParse(e) || !/^https?:$/.test(new URL(e).protocol))
      throw new UsageError(
        `--endpoints: ${JSON.stringify(e)} is not an http:// or https:// URL: give a node's base URL, such as http://127.0.0.1:8001`,
      );
  return endpoints;
}

/**
 * `flotilla token --name NAME --role ROLE`: a new random token, and the entry of the tokens
 * file that admits it (by digest, so the file never holds the token).
 */
export function tokenCommand(program: Command): void {
  program
    .command('token')
    .description('make a random bearer token and its tokens file entry (authTokensFile)')
    .requiredOption('--name <name>', 'who holds it: named in logs and refusals')
    .addOption(
      new Option('--role <role>', 'what it may do').choices([...roles]).makeOptionMandatory(),
    )
    .action((o: { name: string; role: Role }) => {
      // 32 random bytes in base64url: 256 bits, in the bearer alphabet.
      const token = randomBytes(32).toString('base64url');
      const entry = { name: o.name, role: o.role, sha256: sha256(token).toString('hex') };
      process.stdout.write(`${JSON.stringify({ token, entry }, null, 2)}\n`);
    });
}
