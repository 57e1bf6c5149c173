// Histories on disk as JSON Lines: one operation per line, so a history written by a run that
// crashed half way is still readable up to its last complete line, and `grep` works on it.
// This is the module's only I/O; parseHistory is pure so tests and tools can use it on strings.

import { readFile, writeFile } from 'node:fs/promises';
import { CheckError, shown } from './errors.js';
import { defaultHistoryLimits, validateHistory, type History, type Operation } from './history.js';

export function formatHistory(history: History): string {
  return history.map((op) => JSON.stringify(op)).join('\n') + (history.length > 0 ? '\n' : '');
}

/** Writes `history` to `path` as JSONL, replacing any file there. */
export async function writeHistory(path: string, history: History): Promise<void> {
  await writeFile(path, formatHistory(history), 'utf8');
}

/** Parses JSONL (blank lines ignored) and validates the result as a history. */
export function parseHistory(text: string, limits = defaultHistoryLimits): Operation[] {
  const ops: Operation[] = [];
  const lines = text.split('\n');
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i]!.trim();
    if (line === '') continue;
    if (ops.length >= limits.maxOps) {
      throw new CheckError(
        'HISTORY_TOO_LARGE',
        `More than ${limits.maxOps} operations at line ${i + 1}`,
      );
    }
    try {
      ops.push(JSON.parse(line) as Operation);
    } catch (err) {
      const why = err instanceof Error ? err.message : String(err);
      throw new CheckError('INVALID_JSON', `Line ${i + 1}: ${why}, saw ${shown(line)}`);
    }
  }
  // The cast above is only a claim; validation makes it true or throws.
  validateHistory(ops, limits);
  return ops;
}

export async function readHistory(
  path: string,
  limits = defaultHistoryLimits,
): Promise<Operation[]> {
  return parseHistory(await readFile(path, 'utf8'), limits);
}
