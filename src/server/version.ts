// This build's version: the package's, from the package.json the build ships beside dist/
// (`flotilla --version`, and the node's flotilla_build_info gauge).

import { readFileSync } from 'node:fs';

let cached: string | undefined;

export function packageVersion(): string {
  if (cached !== undefined) return cached;
  try {
    const p = JSON.parse(
      readFileSync(new URL('../../../package.json', import.meta.url), 'utf8'),
    ) as { version?: unknown };
    cached = typeof p.version === 'string' ? p.version : 'unknown';
  } catch {
    cached = 'unknown';
  }
  return cached;
}
