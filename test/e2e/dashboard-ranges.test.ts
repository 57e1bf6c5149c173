// The dashboard's Ranges tab in a real browser (Debian's headless Chromium driven by
// playwright-core) against three `flotilla start` processes: the page shows the one range
// with its keys; a split typed into the page (and confirmed) shows as two ranges meeting at
// the key, holding the keys between them; writes on both sides show as writes per second on
// both rows; and the page logs no console error. The screenshot goes to docs/screenshots/.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Browser } from 'playwright-core';
import { repoRoot } from '../support/root.js';
import { chromiumPath, launch, openPage, post, until } from './browser.js';
import { TestCluster } from './harness.js';

const shots = join(repoRoot(), 'docs', 'screenshots');

/** The Ranges table as the page shows it: each row's cells' text. */
const rows = `[...document.querySelectorAll('#ranges tbody tr')].map((r) => [...r.cells].map((c) => c.textContent))`;

void test('the dashboard shows the ranges: a split from the page shows two ranges, with their keys and load', async () => {
  assert.ok(
    existsSync(chromiumPath),
    `${chromiumPath} is missing: install Debian's chromium package (.ci/run does)`,
  );
  mkdirSync(shots, { recursive: true });
  const cluster = await TestCluster.create({ nodes: 3 });
  let launched: { browser: Browser; profile: string } | null = null;
  const problems: string[] = [];
  try {
    await cluster.start();
    await cluster.waitForLeader();
    const base = cluster.member(1).client;
    for (const key of ['apple', 'banana', 'cherry', 'melon', 'plum', 'quince', 'zucchini'])
      await post(base, '/v1/kv/put', { key, value: `${key} value` });
    launched = await launch();
    const page = await openPage(launched.browser, `${base}/#ranges`, problems);

    // One range over the whole key space, with the seven keys.
    await until(
      page,
      `${rows}.length === 1 && ${rows}[0][1] === '(start)' && ${rows}[0][2] === '(end)' && ${rows}[0][6] === '7'`,
      15_000,
    );

    await page.fill('#split-key', 'melon');
    await page.click('#split-form button[type=submit]');
    await page.click('#confirm-ok');
    await until(
      page,
      `document.getElementById('split-result').textContent.startsWith('Split at "melon"')`,
      15_000,
    );
    // The stream shows the map with both halves: [start, melon) with three keys, [melon, end)
    // with four, each led by a member.
    await until(
      page,
      `${rows}.length === 2 &&
       ${rows}[0][2] === 'melon' && ${rows}[1][1] === 'melon' &&
       ${rows}[0][6] === '3' && ${rows}[1][6] === '4' &&
       ${rows}.every((r) => r[5].startsWith('node '))`,
      10_000,
    );
    const shown = await page.evaluate<string[][]>(rows);
    assert.equal(shown[0]?.[0], '0', 'the left half keeps range 0');
    assert.notEqual(shown[1]?.[0], '0');

    // Writes on both sides show as writes per second on both rows.
    const client = cluster.client();
    let writing = true;
    const load = (async () => {
      for (let i = 0; writing; i++) await client.put(i % 2 === 0 ? 'apple' : 'plum', String(i));
    })();
    try {
      await until(page, `${rows}.length === 2 && ${rows}.every((r) => Number(r[8]) >= 2)`, 10_000);
      await page.screenshot({ path: join(shots, 'ranges.png') });
    } finally {
      writing = false;
      await load;
      await client.close();
    }
    assert.deepEqual(problems, [], 'the page logged errors');
  } finally {
    if (launched !== null) {
      await launched.browser.close();
      rmSync(launched.profile, { recursive: true, force: true });
    }
    await cluster.stop();
  }
});
