// Runs every transcript in test/raft/testdata. Each block is a command, a `----` line and the
// expected output up to a blank line. Set REWRITE=1 to regenerate the expected output after
// an intended behaviour change, then review the diff like any other code change.

import assert from 'node:assert/strict';
import { readFileSync, readdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { repoRoot } from '../support/root.js';
import { Interaction, parseCommand } from './interaction.js';

const dir = join(repoRoot(), 'test', 'raft', 'testdata');
const rewrite = process.env['REWRITE'] === '1';
// TRANSCRIPT=a.txt,b.txt runs (and with REWRITE=1 rewrites) only those files: a new transcript
// can be written without touching the expected output of the others.
const only = process.env['TRANSCRIPT']?.split(',') ?? null;

interface Block {
  command: string;
  expected: string;
  /** Lines before the command (comments, blank lines), kept on rewrite. */
  preamble: string[];
}

function parse(textIn: string): { blocks: Block[]; trailer: string[] } {
  const lines = textIn.split('\n');
  const blocks: Block[] = [];
  let preamble: string[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = lines[i] as string;
    if (line.trim() === '' || line.startsWith('#')) {
      preamble.push(line);
      i++;
      continue;
    }
    const command = line;
    if (lines[i + 1] !== '----')
      throw new Error(`Expected ---- after "${command}" at line ${i + 2}`);
    i += 2;
    const out: string[] = [];
    while (i < lines.length && (lines[i] as string).trim() !== '') out.push(lines[i++] as string);
    blocks.push({ command, expected: out.join('\n'), preamble });
    preamble = [];
  }
  return { blocks, trailer: preamble };
}

for (const file of readdirSync(dir)
  .filter((f) => f.endsWith('.txt') && (only === null || only.includes(f)))
  .sort()) {
  void test(`transcript ${file}`, () => {
    const path = join(dir, file);
    const { blocks, trailer } = parse(readFileSync(path, 'utf8'));
    const env = new Interaction();
    const rewritten: string[] = [];
    for (const b of blocks) {
      const actual = env.run(parseCommand(b.command));
      rewritten.push(...b.preamble, b.command, '----', actual);
      if (!rewrite) assert.equal(actual, b.expected, `${file}: output of "${b.command}" differs`);
    }
    if (rewrite) writeFileSync(path, [...rewritten, ...trailer].join('\n'));
  });
}
