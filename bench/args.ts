// Command-line options of the smaller bench scripts: node:util's parseArgs, plus --help (the
// script's options and their defaults) and a bad option said in one line with exit code 2,
// where parseArgs alone ignored --help by throwing a stack trace, as it did for a typo.

import { relative } from 'node:path';
import { parseArgs, type ParseArgsConfig } from 'node:util';

export type BenchArgsOutcome<T extends ParseArgsConfig> =
  | { readonly kind: 'values'; readonly parsed: ReturnType<typeof parseArgs<T>> }
  | { readonly kind: 'exit'; readonly code: 0 | 2; readonly text: string };

/** The usage text --help prints: every option, whether it takes a value, and its default. */
export function benchUsage(script: string, config: ParseArgsConfig): string {
  const lines = [`usage: node ${script} [options]`, 'options:'];
  for (const [name, o] of Object.entries(config.options ?? {})) {
    const flag = `--${name}${o.type === 'string' ? ' <value>' : ''}`;
    const dflt =
      o.default === undefined || o.default === false ? '' : ` (default: ${String(o.default)})`;
    lines.push(`  ${flag}${dflt}`);
  }
  lines.push('  -h, --help');
  return lines.join('\n');
}

/** Parses `args` as the script would; never exits, so it can be tested. */
export function tryBenchArgs<T extends ParseArgsConfig>(
  script: string,
  config: T,
  args: readonly string[],
): BenchArgsOutcome<T> {
  const end = args.indexOf('--');
  const flags = end === -1 ? args : args.slice(0, end);
  if (flags.includes('--help') || flags.includes('-h'))
    return { kind: 'exit', code: 0, text: benchUsage(script, config) };
  try {
    const parsed = parseArgs({ ...config, args: [...args] }) as ReturnType<typeof parseArgs<T>>;
    return { kind: 'values', parsed };
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (typeof code !== 'string' || !code.startsWith('ERR_PARSE_ARGS')) throw err;
    return {
      kind: 'exit',
      code: 2,
      text: `${script}: ${(err as Error).message} (--help lists the options)`,
    };
  }
}

/** parseArgs over this process's arguments; --help or a bad option prints and exits. */
export function benchArgs<T extends ParseArgsConfig>(config: T): ReturnType<typeof parseArgs<T>> {
  const script = relative(process.cwd(), process.argv[1] ?? 'bench');
  const r = tryBenchArgs(script, config, process.argv.slice(2));
  if (r.kind === 'values') return r.parsed;
  (r.code === 0 ? process.stdout : process.stderr).write(r.text + '\n');
  process.exit(r.code);
}

/**
 * The positional arguments of a script that takes no options: --help prints `usage` and
 * exits 0; a value `check` refuses is one line on stderr and exit 2.
 */
export function benchPositionals<T>(
  usage: string,
  check: (args: readonly string[]) => T | string,
): T {
  const args = process.argv.slice(2);
  if (args.includes('--help') || args.includes('-h')) {
    process.stdout.write(`usage: ${usage}\n`);
    process.exit(0);
  }
  const r = check(args);
  if (typeof r === 'string') {
    process.stderr.write(`${r}\nusage: ${usage}\n`);
    process.exit(2);
  }
  return r;
}

/** A bad option value: one line on stderr and exit 2, before the script does anything. */
export function benchRefuse(message: string): never {
  process.stderr.write(`${message}\n`);
  process.exit(2);
}

/** The integer option `--name` with value `v`, from 1 to `max`; anything else is refused. */
export function benchCount(name: string, v: string, max: number): number {
  const n = Number(v);
  if (!Number.isSafeInteger(n) || n < 1 || n > max)
    benchRefuse(`--${name} must be an integer from 1 to ${max}, got ${JSON.stringify(v)}`);
  return n;
}
