// The --quiesce sampler's reading of a node's metrics: the labelled lines a node writes (every
// metric carries its node label), and a scrape without them (a node without quiescing's
// metrics, a page cut short) counted as nothing rather than as zero quiesced groups.

import assert from 'node:assert/strict';
import { test } from 'node:test';
import { formatQuiesce, parseQuiesceMetrics } from './quiesce-sampler.js';

const scrape = [
  '# HELP flotilla_raft_groups Raft groups this node runs, by state',
  '# TYPE flotilla_raft_groups gauge',
  'flotilla_raft_groups{state="quiesced",node="2"} 7',
  'flotilla_raft_groups{state="awake",node="2"} 3',
  '# TYPE flotilla_quiesce_woken_by_silence gauge',
  'flotilla_quiesce_woken_by_silence{node="2"} 4',
  '',
].join('\n');

void test('reads the quiesced, awake and woken gauges of a labelled scrape', () => {
  assert.deepEqual(parseQuiesceMetrics(scrape), { quiesced: 7, awake: 3, woken: 4 });
});

void test('a scrape missing a gauge gives nothing, not zeros', () => {
  for (const drop of ['state="quiesced"', 'state="awake"', 'woken_by_silence{']) {
    const cut = scrape
      .split('\n')
      .filter((l) => !l.includes(drop))
      .join('\n');
    assert.equal(parseQuiesceMetrics(cut), null, `without ${drop}`);
  }
});

void test('the summary line gives the share quiesced and the wakes per node', () => {
  const line = formatQuiesce({
    samples: 10,
    groupSamples: 200,
    quiescedSamples: 150,
    wokenBySilence: new Map([
      [1, 3],
      [2, 0],
    ]),
  });
  assert.equal(
    line,
    '  quiesce: 75% of 200 group samples quiesced (10 scrapes); woken by silence: n1 3, n2 0',
  );
});
