// The dashboard in a real browser (Debian's headless Chromium driven by playwright-core) against
// a cluster of three `flotilla start` processes: the page shows three members and one leader,
// and names the Raft group of each line of the election timeline; a page opened at a follower
// does not say "No leader" before its node has heard from the others; a put from one page
// reaches a second browser through its watch, as text even when the key is markup; a dead job
// is retried from the page; killing the leader's process shows the new leader within 2 s, and
// the dead one down among the new leader's followers; and no page logs a console error (but a
// 503 for a read made while no leader is known, after the kill). Screenshots go to
// docs/screenshots/.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { repoRoot } from '../support/root.js';
import { chromiumPath, launch, openPage, post, until, type ExpectedErrors } from './browser.js';
import { TestCluster } from './harness.js';

const shots = join(repoRoot(), 'docs', 'screenshots');

/** The id of the row the page highlights as the leader's. */
const leaderRow = `document.querySelector('#members tr.leader')?.dataset.id`;

async function leaderRowId(page: Page): Promise<string | null> {
  return page.evaluate<string | null>(`${leaderRow} ?? null`);
}

void test('the dashboard in a browser: members and leader, put and watch, a dead job retried, failover within 2 s', async (t) => {
  assert.ok(
    existsSync(chromiumPath),
    `${chromiumPath} is missing: install Debian's chromium package (.ci/run does)`,
  );
  mkdirSync(shots, { recursive: true });
  const cluster = await TestCluster.create({ nodes: 3 });
  const launched: { browser: Browser; profile: string }[] = [];
  const problems: string[] = [];
  try {
    await cluster.start();
    const leader = await cluster.waitForLeader();
    const [first, second] = [1, 2, 3].filter((id) => id !== leader) as [number, number];
    const base = cluster.member(first).client;
    const a = await launch();
    launched.push(a);
    const b = await launch();
    launched.push(b);
    // From the leader's kill until another is elected, a read the pages make through their
    // members is refused 503 (NO_LEADER), as it should be, and the browser logs each refusal.
    let failingOver = false;
    const duringFailover: ExpectedErrors = {
      match: (m) => failingOver && m.text().includes('status of 503 (Service Unavailable)'),
      seen: [],
    };
    const page = await openPage(a.browser, `${base}/`, problems, duringFailover);

    await t.test('shows three members and one leader', async () => {
      await until(
        page,
        `document.querySelectorAll('#members tbody tr').length === 3 &&
         document.querySelectorAll('#members tr.leader').length === 1 &&
         [...document.querySelectorAll('#members tbody tr')].every((r) => r.textContent.includes('healthy'))`,
        10_000,
      );
      assert.equal(await leaderRowId(page), String(leader));
      await page.waitForSelector('#timeline li.k-become-leader', { timeout: 5_000 });
      // Each line names its group: the range map's elections (group 2) are not the queue's.
      await until(
        page,
        `['0', '1', '2'].every((g) => document.querySelector('#timeline li[data-group="' + g + '"]'))`,
      );
      const groups = await page.evaluate<Record<string, string[]>>(`(() => {
        const names = {};
        for (const li of document.querySelectorAll('#timeline li[data-group]')) {
          const name = li.querySelector('.group').textContent;
          names[li.dataset.group] ??= [];
          if (!names[li.dataset.group].includes(name)) names[li.dataset.group].push(name);
        }
        return names;
      })()`);
      assert.deepEqual(
        [groups['0'], groups['1'], groups['2']],
        [['key-value'], ['queue'], ['range map']],
        JSON.stringify(groups),
      );
      await page.screenshot({ path: join(shots, 'cluster.png') });
    });

    await t.test('a page opened at a follower never says there is no leader', async () => {
      // A node's first view for a page comes before it has heard from the others: every line
      // of the header from the start, recorded by a script the browser runs before the page's.
      const fresh = await b.browser.newPage();
      fresh.on('pageerror', (e) => problems.push(`uncaught on the fresh page: ${e.message}`));
      await fresh.addInitScript(`
        window.summaries = [];
        new MutationObserver(() => {
          const text = document.getElementById('summary')?.textContent;
          if (text !== undefined && window.summaries.at(-1) !== text) window.summaries.push(text);
        }).observe(document, { subtree: true, childList: true, characterData: true });
      `);
      await fresh.goto(`${cluster.member(second).client}/`);
      await until(
        fresh,
        `document.getElementById('summary').textContent.startsWith('Leader: node')`,
      );
      const seen = await fresh.evaluate<string[]>('window.summaries');
      await fresh.close();
      assert.deepEqual(
        seen.filter((s) => s.startsWith('No leader')),
        [],
        JSON.stringify(seen),
      );
    });

    await t.test(
      'a put from the page reaches a second browser through its watch, as text',
      async () => {
        const watcher = await openPage(
          b.browser,
          `${cluster.member(second).client}/#data`,
          problems,
          duringFailover,
        );
        await watcher.fill('#watch-prefix', 'dash/');
        await watcher.click('#watch-button');
        await until(
          watcher,
          `document.getElementById('watch-state').textContent.startsWith('Watching')`,
        );
        await page.goto(`${base}/#data`);
        const markup = 'dash/<img src=x onerror=alert(1)>';
        for (const [key, value] of [
          ['dash/hello', 'world'],
          [markup, '<script>alert(2)</script>'],
        ] as const) {
          await page.fill('#put-key', key);
          await page.fill('#put-value', value);
          await page.click('#put-form button[type=submit]');
          await until(
            page,
            `document.getElementById('put-result').textContent.startsWith(${JSON.stringify(`Put "${key}"`)})`,
          );
          await until(
            watcher,
            `[...document.querySelectorAll('#watch-events li')].some((li) => li.dataset.key === ${JSON.stringify(key)})`,
          );
        }
        // Browse the prefix: the key is shown as the text it is, and no element came of it.
        await page.fill('#browse-prefix', 'dash/');
        await page.click('#browse-form button[type=submit]');
        await page.waitForSelector('#keys tbody tr[data-key]', { timeout: 5_000 });
        for (const p of [page, watcher]) {
          const found = await p.evaluate<{ images: number; texts: string[] }>(`({
          images: document.querySelectorAll('main img, main script').length,
          texts: [...document.querySelectorAll('#keys code, #watch-events code')].map((c) => c.textContent),
        })`);
          assert.equal(found.images, 0, 'a key became markup');
          assert.ok(found.texts.includes(markup), JSON.stringify(found.texts));
        }
        await watcher.screenshot({ path: join(shots, 'watch.png') });
        await page.screenshot({ path: join(shots, 'data.png') });
      },
    );

    await t.test('a dead job is retried from the page', async () => {
      await post(base, '/v1/queue/add', { queue: 'mail', name: 'send', id: 'j1', maxAttempts: 1 });
      await post(base, '/v1/queue/add', {
        queue: 'mail',
        name: 'send',
        id: 'j2',
        data: { to: 'a@b.c' },
      });
      const claim = await post(base, '/v1/queue/claim', { queue: 'mail' });
      const jobs = claim['jobs'] as { job: { id: string }; token: number }[];
      assert.equal(jobs[0]?.job.id, 'j1');
      await post(base, '/v1/queue/fail', {
        queue: 'mail',
        id: 'j1',
        token: jobs[0]?.token,
        error: 'mailbox full',
        final: true,
      });
      await page.goto(`${base}/#queues`);
      await page.waitForSelector('#queues tr[data-queue="mail"]', { timeout: 5_000 });
      await page.click('#queues tr[data-queue="mail"] button:has-text("Jobs")');
      await page.waitForSelector('#jobs tr[data-job="j1"]', { timeout: 5_000 });
      await page.screenshot({ path: join(shots, 'queues.png') });
      await page.click('#jobs tr[data-job="j1"] button:has-text("Retry")');
      await page.click('#confirm-ok');
      await until(page, `document.getElementById('jobs-result').textContent.includes('retried')`);
      const got = await post(base, '/v1/queue/get', { queue: 'mail', id: 'j1' });
      assert.equal((got['job'] as { state: string }).state, 'waiting');
    });

    await t.test('replication and charts, operations, and a phone-sized screen', async () => {
      // The charts are the node's own: watch the leader's, which serves the writes.
      const leaderPage = await openPage(
        b.browser,
        `${cluster.member(leader).client}/#replication`,
        problems,
      );
      const client = cluster.client();
      let writing = true;
      const load = (async () => {
        for (let i = 0; writing; i++) {
          await client.put(`load/${i % 10}`, String(i));
          if (i % 4 === 0) await client.get(`load/${i % 10}`);
        }
      })();
      try {
        await leaderPage.waitForSelector('#followers tbody tr[data-id]', { timeout: 5_000 });
        await until(
          leaderPage,
          `!document.getElementById('chart-rate-text').textContent.includes('writes: 0/s') &&
           document.getElementById('chart-rate-text').textContent.includes('writes')`,
          5_000,
        );
        await leaderPage.screenshot({ path: join(shots, 'replication.png') });
      } finally {
        writing = false;
        await load;
        await client.close();
        await leaderPage.close();
      }
      await page.goto(`${base}/#operations`);
      await page.waitForSelector('#transfer-to option[value="1"]', {
        state: 'attached',
        timeout: 5_000,
      });
      await page.screenshot({ path: join(shots, 'operations.png') });
      await page.setViewportSize({ width: 390, height: 844 });
      // Every tab fits a phone's width (a wide table scrolls inside its own box), with the
      // tables filled: the queue and the keys written above.
      const ready: Record<string, string> = {
        data: '#keys tbody tr[data-key="dash/hello"]',
        ranges: '#ranges tbody tr',
        queues: '#queues tr[data-queue="mail"]',
        operations: '#transfer-to option[value="1"]',
        replication: '#followers tbody tr',
        cluster: '#members tr.leader',
      };
      for (const [tab, selector] of Object.entries(ready)) {
        await page.goto(`${base}/#${tab}`);
        await page.waitForSelector(selector, { state: 'attached', timeout: 5_000 });
        const overflow = await page.evaluate<number>(
          `document.documentElement.scrollWidth - document.documentElement.clientWidth`,
        );
        assert.ok(overflow <= 0, `the ${tab} tab is ${overflow} px wider than a phone's screen`);
        if (tab === 'data') {
          // A short key reads on one line, not cut every few letters by the other columns.
          const lines = await page.evaluate<number>(
            `document.querySelector('#keys tbody tr[data-key="dash/hello"] code').getClientRects().length`,
          );
          assert.equal(lines, 1, 'the key "dash/hello" is broken over lines on a phone');
        }
      }
      await page.screenshot({ path: join(shots, 'phone.png') });
      await page.setViewportSize({ width: 1280, height: 800 });
    });

    await t.test("killing the leader's process shows the new leader within 2 s", async () => {
      const old = JSON.stringify(String(leader));
      await until(page, `${leaderRow} === ${old}`);
      failingOver = true;
      await cluster.kill(leader);
      // The issue's bound: another leader shows within 2 s of the kill.
      await until(page, `${leaderRow} !== undefined && ${leaderRow} !== ${old}`, 2_000);
      await until(
        page,
        `document.querySelector('#members tr[data-id="${leader}"]').textContent.includes('down')`,
        2_000,
      );
      // The new leader's progress of the dead one is not shown as a healthy follower's.
      await until(
        page,
        `document.querySelector('#followers tr[data-id="${leader}"]').textContent.includes('down')`,
        5_000,
      );
      await page.screenshot({ path: join(shots, 'failover.png') });
      t.diagnostic(
        `expected console errors (503 while no leader was known): ${duringFailover.seen.length}`,
      );
    });

    assert.deepEqual(problems, [], 'the pages logged errors');
  } finally {
    for (const l of launched) {
      await l.browser.close();
      rmSync(l.profile, { recursive: true, force: true });
    }
    await cluster.stop();
  }
});
