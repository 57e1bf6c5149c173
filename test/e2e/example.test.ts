// The example application (examples/board) in a real browser (Debian's headless Chromium driven
// by playwright-core), against a cluster of three `flotilla start` processes: a task added in
// one browser reaches the other through the watch; two users claiming the same task at once
// get exactly one winner and both pages agree on who; bad input is refused with its code on the
// page; killing the leader's process (kill -9) leaves the board working; a restarted board
// server is followed again from the last revision each page saw; and no page logs a console
// error it should not. Screenshots go to docs/screenshots/ (example.png, example-failover.png).

import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import { existsSync, mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Browser, Page } from 'playwright-core';
import { repoRoot } from '../support/root.js';
import { chromiumPath, launch } from './browser.js';
import { TestCluster } from './harness.js';

const shots = join(repoRoot(), 'docs', 'screenshots');
const boardMain = join(repoRoot(), 'dist', 'examples', 'board', 'main.js');

interface App {
  readonly proc: ChildProcess;
  readonly url: string;
  readonly output: string[];
}

/** Starts the board's server; resolves with its URL once it says it listens (bounded). */
async function startApp(endpoints: readonly string[], port = 0): Promise<App> {
  const proc = spawn(
    process.execPath,
    [boardMain, '--endpoints', endpoints.join(','), '--port', String(port)],
    { stdio: ['ignore', 'pipe', 'pipe'] },
  );
  const output: string[] = [];
  const url = await new Promise<string>((resolve, reject) => {
    const timer = setTimeout(
      () => reject(new Error(`The board did not start within 15 s: ${output.join('')}`)),
      15_000,
    );
    const see = (b: Buffer): void => {
      output.push(b.toString('utf8'));
      const m = /^Board: (\S+)/m.exec(output.join(''));
      if (m !== null) {
        clearTimeout(timer);
        resolve(m[1] as string);
      }
    };
    proc.stdout.on('data', see);
    proc.stderr.on('data', see);
    proc.once('exit', (code) => {
      clearTimeout(timer);
      reject(new Error(`The board exited (${code}) before it listened: ${output.join('')}`));
    });
  });
  return { proc, url, output };
}

async function stopApp(app: App): Promise<void> {
  if (app.proc.exitCode !== null || app.proc.signalCode !== null) return;
  const exited = new Promise((r) => app.proc.once('exit', r));
  app.proc.kill('SIGTERM');
  await exited;
}

/** What a page logged that it should not have; `expected` patterns are allowed (and counted). */
class Problems {
  readonly seen: string[] = [];
  private allowed: RegExp | null = null;
  readonly allowedSeen: string[] = [];

  watch(page: Page, name: string): void {
    page.on('console', (m) => {
      if (m.type() === 'error') this.add(`console error on ${name}: ${m.text()}`);
    });
    page.on('pageerror', (e) => this.add(`uncaught on ${name}: ${e.message}`));
    page.on('dialog', (d) => {
      this.add(`native dialog on ${name}: ${d.message()}`);
      void d.dismiss();
    });
  }

  /** While `fn` runs, messages matching `pattern` are expected rather than problems. */
  async allowing<T>(pattern: RegExp, fn: () => Promise<T>): Promise<T> {
    this.allowed = pattern;
    try {
      return await fn();
    } finally {
      this.allowed = null;
    }
  }

  private add(line: string): void {
    if (this.allowed?.test(line) === true) this.allowedSeen.push(line);
    else this.seen.push(line);
  }
}

/**
 * Waits until `expression` (JavaScript run in the page, given as text: the test tree has no
 * DOM types) is true; fails after `timeoutMs` with what `seen` evaluates to then. Polls with
 * page.evaluate, which runs outside the page's content security policy.
 */
async function until(page: Page, expression: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    const probe = `(() => { try { return Boolean(${expression}); } catch { return false; } })()`;
    if ((await page.evaluate(probe)) === true) return;
    if (Date.now() > deadline) {
      const seen = await page.evaluate<unknown>(seenOnPage);
      throw new Error(
        `Not true within ${timeoutMs} ms: ${expression.replace(/\s+/g, ' ')}\nthe page showed: ${JSON.stringify(seen)}`,
      );
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

/** The page's state as a test failure reports it. */
const seenOnPage = `({
  conn: document.getElementById('conn')?.textContent,
  member: document.getElementById('member')?.textContent,
  error: document.getElementById('error')?.textContent,
  message: document.getElementById('message')?.textContent,
  tasks: [...document.querySelectorAll('#tasks li')].map((li) => li.textContent),
})`;

const hasTask = (title: string): string =>
  `[...document.querySelectorAll('#tasks li .title')].some((t) => t.textContent === ${JSON.stringify(title)})`;
const rowOf = (title: string): string =>
  `[...document.querySelectorAll('#tasks li')].find((li) => li.querySelector('.title').textContent === ${JSON.stringify(title)})`;

async function addTask(page: Page, title: string): Promise<void> {
  await page.fill('#title', title);
  await page.click('#add-form button[type=submit]');
}

async function openBoard(browser: Browser, url: string, user: string, p: Problems): Promise<Page> {
  const context = await browser.newContext({ viewport: { width: 1000, height: 700 } });
  const page = await context.newPage();
  p.watch(page, user);
  await page.goto(url);
  await page.fill('#name', user);
  await until(page, `document.getElementById('conn').className === 'live'`, 10_000);
  return page;
}

async function post(url: string, path: string, body: unknown): Promise<Record<string, unknown>> {
  const res = await fetch(new URL(path, url), {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  return (await res.json()) as Record<string, unknown>;
}

void test('the example board in two browsers: watch, a claim race, bad input, failover, a restarted server', async (t) => {
  assert.ok(
    existsSync(chromiumPath),
    `${chromiumPath} is missing: install Debian's chromium package (.ci/run does)`,
  );
  assert.ok(existsSync(boardMain), `${boardMain} is missing: build first`);
  mkdirSync(shots, { recursive: true });
  const cluster = await TestCluster.create({ nodes: 3 });
  const problems = new Problems();
  let profile: string | null = null;
  let browser: Browser | null = null;
  const apps: App[] = [];
  try {
    await cluster.start();
    apps.push(await startApp(cluster.endpoints()));
    const url = (apps[0] as App).url;
    const launched = await launch();
    browser = launched.browser;
    profile = launched.profile;
    // Two browser contexts: two users, with nothing shared between their pages.
    const ann = await openBoard(browser, url, 'ann', problems);
    const bob = await openBoard(browser, url, 'bob', problems);

    await t.test('both pages show the three members and one leader', async () => {
      for (const p of [ann, bob])
        await until(
          p,
          `document.querySelectorAll('#members li').length === 3 &&
           document.querySelectorAll('#members li.leader').length === 1`,
          10_000,
        );
    });

    await t.test('a task added in one browser shows in the other through the watch', async () => {
      await addTask(ann, 'Write the release notes');
      await until(ann, hasTask('Write the release notes'));
      // Bob's page loaded the board before the task existed and never loads it again: only
      // the event stream can bring it.
      await until(bob, hasTask('Write the release notes'));
      await addTask(bob, 'Review the failover chapter');
      await until(ann, hasTask('Review the failover chapter'));
    });

    await t.test(
      'two users claim the same task at once: exactly one wins, both pages agree',
      async () => {
        await addTask(ann, 'Fix the flaky test');
        for (const p of [ann, bob]) await until(p, hasTask('Fix the flaky test'));
        const claim = (p: Page): Promise<void> =>
          p.evaluate(
            `${rowOf('Fix the flaky test')}.querySelector('button[data-action=claim]').click()`,
          );
        // Each page's claim request is held until both pages have sent theirs, so that both
        // reach the server together: without it, the first claim's event could reach the
        // other page, and take its Claim button away, before the test clicks it there.
        let sent = 0;
        let bothSent = (): void => {};
        const both = new Promise<void>((resolve) => (bothSent = resolve));
        const claimPath = '**/api/tasks/claim';
        for (const p of [ann, bob])
          await p.route(claimPath, async (route) => {
            if (++sent === 2) bothSent();
            await both;
            await route.continue();
          });
        await Promise.all([claim(ann), claim(bob)]);
        for (const p of [ann, bob])
          await until(
            p,
            `document.getElementById('message').dataset.outcome === 'won' ||
                        document.getElementById('message').dataset.outcome === 'lost'`,
          );
        for (const p of [ann, bob]) await p.unroute(claimPath);
        assert.equal(sent, 2, 'both pages sent a claim');
        const outcome = async (p: Page): Promise<string> =>
          p.evaluate<string>(`document.getElementById('message').dataset.outcome`);
        const outcomes = [await outcome(ann), await outcome(bob)].sort();
        assert.deepEqual(outcomes, ['lost', 'won'], 'exactly one of the two claims wins');
        const winner = (await outcome(ann)) === 'won' ? 'ann' : 'bob';
        const loser = winner === 'ann' ? bob : ann;
        assert.match(
          await loser.evaluate<string>(`document.getElementById('message').textContent`),
          new RegExp(`already claimed by ${winner}`),
        );
        for (const p of [ann, bob])
          await until(
            p,
            `${rowOf('Fix the flaky test')}.querySelector('.state').dataset.claimedBy === '${winner}'`,
          );
        // The winner finishes it; the other page learns of that through the watch too.
        const winnerPage = winner === 'ann' ? ann : bob;
        await winnerPage.evaluate(
          `${rowOf('Fix the flaky test')}.querySelector('button[data-action=done]').click()`,
        );
        await until(loser, `${rowOf('Fix the flaky test')}.classList.contains('done')`);
        await addTask(bob, 'Try the board on a phone');
        for (const p of [ann, bob]) await until(p, hasTask('Try the board on a phone'));
        await ann.screenshot({ path: join(shots, 'example.png') });

        // The same race, tighter: eight users at once through the API, one winner, named to all.
        const { task } = (await post(url, '/api/tasks', { user: 'ann', title: 'Race' })) as {
          task: { id: string };
        };
        const answers = await Promise.all(
          Array.from({ length: 8 }, (_, i) =>
            post(url, '/api/tasks/claim', { id: task.id, user: `racer${i}` }),
          ),
        );
        const won = answers.filter((a) => a['won'] === true);
        assert.equal(won.length, 1, JSON.stringify(answers));
        const named = new Set(answers.map((a) => (a['task'] as { claimedBy: string }).claimedBy));
        assert.deepEqual([...named], [(won[0]?.['task'] as { claimedBy: string }).claimedBy]);
      },
    );

    await t.test('bad input is refused with its code, shown on the page', async () => {
      // The refusal is an HTTP 400, which the browser logs as a failed resource: expected here.
      await problems.allowing(/status of 400/, async () => {
        await addTask(ann, '   ');
        await until(
          ann,
          `document.getElementById('error').textContent.startsWith('TITLE_INVALID')`,
        );
      });
      assert.equal(problems.allowedSeen.length, 1, problems.allowedSeen.join('\n'));
      for (const [body, code] of [
        [{ user: 'ann', title: 'x'.repeat(201) }, 'TITLE_INVALID'],
        [{ user: '', title: 'fine' }, 'NAME_INVALID'],
        [{ user: 'a\u0007b', title: 'fine' }, 'NAME_INVALID'],
      ] as const) {
        const r = await post(url, '/api/tasks', body);
        assert.equal((r['error'] as { code: string } | undefined)?.code, code, JSON.stringify(r));
      }
      const r = await post(url, '/api/tasks/claim', { id: '../next', user: 'ann' });
      assert.equal((r['error'] as { code: string } | undefined)?.code, 'BAD_REQUEST');
    });

    await t.test("kill -9 of the leader's process: the board keeps working", async () => {
      const leader = await cluster.waitForLeader();
      await cluster.kill(leader);
      await addTask(bob, 'Added after the failover');
      for (const p of [ann, bob]) await until(p, hasTask('Added after the failover'), 20_000);
      // The pages show the member go down and another lead.
      for (const p of [ann, bob])
        await until(
          p,
          `document.querySelector('#members li.down')?.textContent === 'node ${leader}: down' &&
           document.querySelectorAll('#members li.leader').length === 1`,
          10_000,
        );
      const answered = await bob.evaluate<string>(`document.getElementById('member').textContent`);
      assert.notEqual(answered, `answered by node ${leader}`, 'the dead leader cannot answer');
      assert.match(answered, /^answered by node \d$/);
      await bob.screenshot({ path: join(shots, 'example-failover.png') });
    });

    await t.test(
      'a restarted board server: pages show reconnecting, then resume from their last revision',
      async () => {
        const port = new URL(url).port;
        await problems.allowing(
          /api\/events|ERR_CONNECTION_REFUSED|Failed to load resource/,
          async () => {
            await stopApp(apps[0] as App);
            for (const p of [ann, bob])
              await until(p, `document.getElementById('conn').className === 'reconnecting'`);
            // A change made while no page could hear of it, straight through the client.
            const client = cluster.client();
            try {
              const task = {
                id: 't000900',
                title: 'Made while the board was down',
                createdBy: 'ops',
                createdAtMs: 0,
                claimedBy: null,
                done: false,
              };
              await client.put(`board/tasks/${task.id}`, JSON.stringify(task));
            } finally {
              await client.close();
            }
            apps.push(await startApp(cluster.endpoints(), Number(port)));
            for (const p of [ann, bob]) {
              await until(p, `document.getElementById('conn').className === 'live'`, 10_000);
              await until(p, hasTask('Made while the board was down'), 10_000);
            }
          },
        );
      },
    );

    await t.test('the board holds at most 50 tasks', async () => {
      let added = 0;
      for (let i = 0; i < 60; i++) {
        const r = await post(url, '/api/tasks', { user: 'ann', title: `Filler ${i}` });
        if (r['error'] !== undefined) {
          assert.equal((r['error'] as { code: string }).code, 'BOARD_FULL', JSON.stringify(r));
          break;
        }
        added++;
      }
      const board = (await (await fetch(new URL('/api/board', url))).json()) as {
        tasks: unknown[];
      };
      assert.equal(board.tasks.length, 50, `added ${added} before the board was full`);
    });

    assert.deepEqual(problems.seen, [], 'the pages logged errors');
  } finally {
    await browser?.close();
    if (profile !== null) rmSync(profile, { recursive: true, force: true });
    for (const app of apps) await stopApp(app);
    await cluster.stop();
  }
});
