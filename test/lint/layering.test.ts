// The layering of DESIGN.md ("The house") is lint rules; this lints planted imports against
// exactly those rules (exported by eslint.config.js), so a rule that stopped matching, or a
// pattern that let a forbidden layer through, fails here rather than silently.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { ESLint, type Linter } from 'eslint';
import tseslint from 'typescript-eslint';

const root = join(dirname(fileURLToPath(import.meta.url)), '..', '..', '..');

async function linter(): Promise<ESLint> {
  const config = (await import(join(root, 'eslint.config.js'))) as { layering: Linter.Config[] };
  return new ESLint({
    cwd: root,
    overrideConfigFile: true,
    overrideConfig: [
      { files: ['**/*.ts'], languageOptions: { parser: tseslint.parser } },
      ...config.layering,
    ],
  });
}

/** The messages of the import-restriction rule for `source` placed at `file`. */
async function refusals(eslint: ESLint, file: string, source: string): Promise<string[]> {
  const [result] = await eslint.lintText(`import { x } from '${source}';\nexport const y = x;\n`, {
    filePath: join(root, file),
  });
  return (result?.messages ?? [])
    .filter((m) => m.ruleId === 'no-restricted-imports')
    .map((m) => m.message);
}

const cases: [file: string, source: string, allowed: boolean][] = [
  // The core: itself and the shared base only.
  ['src/raft/node.ts', './log.js', true],
  ['src/raft/node.ts', '../base/errors.js', true],
  ['src/raft/node.ts', '../host/runtime.js', false],
  ['src/raft/node.ts', 'node:fs', false],
  ['src/raft/node.ts', 'msgpackr', false],
  ['src/base/limits.ts', '../raft/index.js', false],
  // Storage and transport: the core's types, never what sits above.
  ['src/storage/wal.ts', '../raft/index.js', true],
  ['src/storage/wal.ts', '../host/contracts.js', false],
  ['src/transport/tcp.ts', '../server/node.js', false],
  // The host: the core, the base and itself; no state machine, API or assembly.
  ['src/host/host.ts', './runtime.js', true],
  ['src/host/runtime.ts', '../raft/index.js', true],
  ['src/host/sessions.ts', '../base/limits.js', true],
  ['src/host/runtime.ts', '../kv/machine.js', false],
  ['src/host/runtime.ts', '../api/errors.js', false],
  ['src/host/runtime.ts', '../server/node.js', false],
  ['src/host/runtime.ts', '../storage/wal.js', false],
  ['src/host/host.ts', '../transport/tcp.js', false],
  // A state machine: the host's contract and the base; not the runtime, core or API.
  ['src/kv/machine.ts', '../host/contracts.js', true],
  ['src/kv/machine.ts', '../host/envelope.js', true],
  ['src/kv/machine.ts', '../base/limits.js', true],
  ['src/kv/machine.ts', './kv-store.js', true],
  ['src/kv/machine.ts', '../host/runtime.js', false],
  ['src/kv/machine.ts', '../host/host.js', false],
  ['src/kv/machine.ts', '../raft/index.js', false],
  ['src/kv/machine.ts', '../api/routes.js', false],
  ['src/kv/machine.ts', '../server/kv-service.js', false],
  ['src/queue/machine.ts', '../transport/tcp.js', false],
  ['src/queue/machine.ts', '../host/contracts.js', true],
  ['src/queue/codec.ts', '../base/limits.js', true],
  ['src/queue/machine.ts', './jobs.js', true],
  ['src/queue/machine.ts', '../host/sessions.js', false],
  ['src/queue/machine.ts', '../kv/machine.js', false],
  ['src/queue/machine.ts', '../raft/index.js', false],
  ['src/queue/machine.ts', '../server/node.js', false],
  // The ranges: state machines that may wrap the key-value store.
  ['src/ranges/meta-machine.ts', '../host/contracts.js', true],
  ['src/ranges/range-machine.ts', '../kv/machine.js', true],
  ['src/ranges/range-machine.ts', '../host/runtime.js', false],
  ['src/ranges/range-machine.ts', '../raft/index.js', false],
  ['src/ranges/range-machine.ts', '../server/node.js', false],
  // The assembly imports everything.
  ['src/server/node.ts', '../api/http.js', true],
  ['src/server/node.ts', '../host/host.js', true],
  ['src/server/node.ts', '../kv/machine.js', true],
  // An example: the public client, Node's modules and its own files, as an outside program.
  ['examples/board/server.ts', 'flotilla/client', true],
  ['examples/board/server.ts', 'node:http', true],
  ['examples/board/server.ts', './board.js', true],
  ['examples/board/server.ts', '../../src/client/index.js', false],
  ['examples/board/server.ts', '../other/x.js', false],
  ['examples/board/server.ts', 'flotilla/server', false],
  ['examples/board/server.ts', 'flotilla/client/watch.js', false],
  ['examples/board/server.ts', 'undici', false],
];

void test('each layer may import exactly what DESIGN.md says', { timeout: 60_000 }, async () => {
  const eslint = await linter();
  const wrong: string[] = [];
  for (const [file, source, allowed] of cases) {
    const seen = await refusals(eslint, file, source);
    if (allowed && seen.length > 0) wrong.push(`${file} may import ${source}, but: ${seen[0]}`);
    if (!allowed && seen.length === 0) wrong.push(`${file} must not import ${source}, but may`);
  }
  assert.deepEqual(wrong, []);
});
