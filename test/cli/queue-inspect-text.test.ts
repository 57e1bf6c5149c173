// `flotilla queue inspect`'s text, from a made-up inspection: every row's columns start where
// its header's do as a terminal shows them, whatever the cells hold (a multi-line error, wide
// characters, an id longer than its header), and a job's data and error are previews cut with
// an ellipsis. The inspection of real data directories is queue-inspect.test.ts.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { inspectionText, maxDataColumns, maxErrorColumns } from '../../src/cli/queue-inspect.js';
import { displayWidth, table, truncate } from '../../src/cli/text-table.js';
import type { JobView, QueueStats } from '../../src/queue/index.js';
import type { QueueInspection } from '../../src/server/queue-inspect.js';

const bytes = (s: string): Uint8Array => new TextEncoder().encode(s);

function job(o: Partial<JobView> & Pick<JobView, 'id' | 'queue'>): JobView {
  return {
    name: 'n',
    payload: bytes('null'),
    state: 'waiting',
    priority: 0,
    attempts: 0,
    maxAttempts: 3,
    releases: 0,
    backoff: { kind: 'fixed', delayMs: 0, maxDelayMs: 0 },
    leaseMs: 30_000,
    addedAtMs: 1_700_000_000_000,
    runAtMs: 1_700_000_000_000,
    token: 0,
    leaseExpiresMs: 0,
    worker: null,
    progress: 0,
    finishedAtMs: 0,
    result: null,
    error: null,
    repeatId: null,
    ...o,
  };
}

function stats(queue: string, waiting: number): QueueStats {
  const zero = { waiting: 0, delayed: 0, active: 0, completed: 0, failed: 0, dead: 0 };
  return {
    queue,
    paused: false,
    counts: { ...zero, waiting, cancelled: 0 },
    rateLimit: null,
    concurrency: null,
    keepCompleted: { count: 1_000, ageMs: 0 },
    keepDead: { count: 1_000, ageMs: 0 },
    maxReleases: 3,
    totals: { added: 0, claimed: 0, completed: 0, failed: 0, dead: 0, leaseExpired: 0 },
  };
}

const longData = JSON.stringify({ text: 'x'.repeat(200), n: 1 });
const inspection: QueueInspection = {
  dataDir: '/data',
  storage: 'wal',
  snapshotIndex: 0,
  appliedIndex: 12,
  uncommitted: 0,
  timeMs: 1_700_000_000_000,
  queues: [stats('mail', 1_234_567), stats('a-much-longer-queue-name', 2)],
  jobs: [
    job({ id: '#1', queue: 'mail', payload: bytes(longData) }),
    job({
      id: 'an-id-much-longer-than-its-header-and-every-other',
      queue: 'a-much-longer-queue-name',
      state: 'dead',
      attempts: 3,
      releases: 12,
      payload: bytes('"日本語のデータ"'),
      // A command's standard error, as `queue work` records it: several lines.
      error: 'exit 1: line one\nline two\tand a tab',
    }),
    job({
      id: '#3',
      queue: 'mail',
      state: 'failed',
      attempts: 1,
      payload: bytes('{"emoji":"🚀🚀"}'),
      error: '失敗しました: '.repeat(20),
    }),
  ],
};

/** The terminal column where `cell` starts in `line`, looking from index `from` on. */
function startOf(line: string, cell: string, from = 0): number {
  const at = line.indexOf(cell, from);
  assert.ok(at >= 0, `"${cell}" in "${line}"`);
  return displayWidth(line.slice(0, at));
}

/** Where each of `cells` starts in `line`, in terminal columns, each looked for after the last. */
function startsOf(line: string, cells: readonly string[]): number[] {
  let from = 0;
  return cells.map((cell) => {
    const column = startOf(line, cell, from);
    from = line.indexOf(cell, from) + cell.length;
    return column;
  });
}

void test('every row of the text lines up with its header, whatever its cells hold', () => {
  const lines = inspectionText(inspection, {}).split('\n');
  const header = lines.find((l) => l.startsWith('ID')) as string;
  const rows = lines.slice(lines.indexOf(header) + 1);
  assert.equal(rows.length, 3, 'a multi-line error stays on its row');
  const columns = ['QUEUE', 'STATE', 'ATTEMPTS', 'RELEASES', 'RUN AT', 'DATA', 'LAST ERROR'];
  const at = startsOf(header, columns);
  const [first, second, third] = rows as [string, string, string];
  const cells: [string, string[]][] = [
    [first, ['mail', 'waiting', '0/3', '0', '2023-11-14T22:13:20.000Z', '{"text":"xxx']],
    [
      second,
      [
        'a-much-longer-queue-name',
        'dead',
        '3/3',
        '12',
        '2023-11-14T22:13:20.000Z',
        '"日本語のデータ"',
        'exit 1: line one line two and a tab',
      ],
    ],
    [third, ['mail', 'failed', '1/3', '0', '2023-11-14T22:13:20.000Z', '{"emoji":"🚀🚀"}', '失敗']],
  ];
  for (const [line, expected] of cells)
    assert.deepEqual(startsOf(line, expected), at.slice(0, expected.length), line);

  // The previews: cut with an ellipsis to their columns' limits, the rest left whole.
  const data = first.slice(first.indexOf('{"text"')).trimEnd();
  assert.ok(data.endsWith('…'), data);
  assert.equal(displayWidth(data), maxDataColumns);
  const error = third.slice(third.indexOf('失敗'));
  assert.ok(error.endsWith('…'), error);
  assert.ok(displayWidth(error) <= maxErrorColumns, `${displayWidth(error)} columns`);
  assert.ok(second.startsWith('an-id-much-longer-than-its-header-and-every-other  a-much'));

  // The queues' table likewise: a count wider than its header moves the next column along.
  const qHeader = lines[2] as string;
  const [mail, longer] = [lines[3] as string, lines[4] as string];
  const qAt = startsOf(qHeader, ['PAUSED', 'WAITING', 'DELAYED', 'ACTIVE']);
  assert.deepEqual(startsOf(mail, ['no', '1234567', '0', '0']), qAt, mail);
  assert.deepEqual(startsOf(longer, ['no', '2', '0', '0']), qAt, longer);
});

void test('widths are terminal columns: wide characters two, combining marks none', () => {
  assert.equal(displayWidth('abc'), 3);
  assert.equal(displayWidth('日本'), 4);
  assert.equal(displayWidth('🚀'), 2);
  assert.equal(displayWidth('e\u0301'), 1);
  assert.equal(truncate('日本語', 4), '日…');
  assert.equal(truncate('abcdef', 4), 'abc…');
  assert.equal(truncate('abcd', 4), 'abcd');
  assert.deepEqual(
    table([
      ['日本', 'x'],
      ['ab', 'y'],
    ]),
    ['日本  x', 'ab    y'],
  );
});
