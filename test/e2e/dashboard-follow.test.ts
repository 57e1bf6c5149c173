// The dashboard follows the cluster when the member that served it dies: in a real browser
// against three `flotilla start` processes, the page is opened on the leader A; A's process is
// killed (SIGKILL); within a bound the page says it reads from another member and that A is
// down, shows A's row as down (not as leader or follower), and a put from its Data tab goes to
// the member it follows and is read back through another one. A started again, the page goes
// back to it. The screenshot docs/screenshots/follow.png is taken with A down. The same holds
// when A's process is frozen (SIGSTOP) instead, and then thawed.
//
// Console errors: the page retries A a few times before it follows another member, and
// Chromium logs each refused connection as "Failed to load resource:
// net::ERR_CONNECTION_REFUSED" (or the stream cut short as ERR_EMPTY_RESPONSE /
// ERR_INCOMPLETE_CHUNKED_ENCODING) at a URL of A. Exactly those are expected and filtered;
// any other console error, uncaught exception or native dialog fails the test.

import assert from 'node:assert/strict';
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import type { Browser, ConsoleMessage } from 'playwright-core';
import { FlotillaClient } from '../../src/client/index.js';
import { repoRoot } from '../support/root.js';
import { TestNodes } from '../server/nodes.js';
import { chromiumPath, launch, openPage, until, type ExpectedErrors } from './browser.js';
import { TestCluster } from './harness.js';

const shots = join(repoRoot(), 'docs', 'screenshots');

/** Chromium's account of a request to `origin` that found nobody there, or was cut short. */
function failedConnectionTo(origin: string): (m: ConsoleMessage) => boolean {
  const failedLoad =
    /^Failed to load resource: net::ERR_(CONNECTION_REFUSED|EMPTY_RESPONSE|INCOMPLETE_CHUNKED_ENCODING)$/;
  return (m) => failedLoad.test(m.text()) && m.location().url.startsWith(`${origin}/`);
}

/** How long the page may take to follow another member after its own was killed. */
const followBoundMs = 8_000;

void test('the dashboard follows another member when its own is killed, and comes back when it returns', async (t) => {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: install Debian's chromium`);
  mkdirSync(shots, { recursive: true });
  const cluster = await TestCluster.create({ nodes: 3 });
  let launched: { browser: Browser; profile: string } | null = null;
  const problems: string[] = [];
  try {
    await cluster.start();
    const a = await cluster.waitForLeader();
    const home = cluster.member(a).client;
    const others = [1, 2, 3].filter((id) => id !== a);
    const expected: ExpectedErrors = { match: failedConnectionTo(home), seen: [] };
    launched = await launch();
    const page = await openPage(launched.browser, `${home}/`, problems, expected);
    const row = (id: number): string => `document.querySelector('#members tr[data-id="${id}"]')`;
    await until(
      page,
      `document.querySelectorAll('#members tbody tr').length === 3 &&
       ${row(a)}.classList.contains('leader') && document.getElementById('following').hidden`,
      10_000,
    );
    const killedAt = Date.now();

    await t.test('A killed: the page reads from another member and shows A down', async () => {
      await cluster.kill(a);
      await until(
        page,
        `!document.getElementById('following').hidden &&
         [${others.join(',')}].map(String).includes(document.getElementById('following').dataset.node) &&
         document.getElementById('following').textContent.includes('node ${a}, which served this page, is down')`,
        followBoundMs,
      );
      // A figure for the report, not a timed assertion (the bound above is the test).
      console.log(`# followed another member ${Date.now() - killedAt} ms after the kill`);
      await until(
        page,
        `${row(a)}.classList.contains('down') && !${row(a)}.classList.contains('leader') &&
         ${row(a)}.children[1].textContent === 'down' &&
         !/leader|follower/.test(${row(a)}.textContent.replace(/heard from|not hearing from the leader/g, ''))`,
        followBoundMs,
      );
      // The survivors elect a leader, and the page shows it.
      await until(
        page,
        `[${others.join(',')}].map(String).includes(document.querySelector('#members tr.leader')?.dataset.id)`,
        10_000,
      );
      await page.screenshot({ path: join(shots, 'follow.png') });
    });

    await t.test('a put from the page goes through the member it follows', async () => {
      // A hash change, not a navigation: the page's own origin is down.
      await page.click('nav a[data-tab="data"]');
      await page.fill('#put-key', 'follow/key');
      await page.fill('#put-value', 'written while node A was down');
      await page.click('#put-form button[type=submit]');
      await until(
        page,
        `document.getElementById('put-result').textContent.startsWith('Put "follow/key"')`,
        10_000,
      );
      const followed = Number(
        await page.evaluate<string>(`document.getElementById('following').dataset.node`),
      );
      const reader = others.find((id) => id !== followed) as number;
      const client = cluster.client([reader]);
      try {
        const got = await client.get('follow/key');
        assert.equal(got?.value, 'written while node A was down');
      } finally {
        await client.close();
      }
      await page.click('nav a[data-tab="cluster"]');
    });

    await t.test('A started again: the page reads from it again', async () => {
      cluster.startNode(a);
      await until(
        page,
        `document.getElementById('following').hidden && !${row(a)}.classList.contains('down') &&
         ${row(a)}.textContent.includes('served this page')`,
        20_000,
      );
    });

    assert.deepEqual(problems, [], 'the page logged errors');
    const kinds = [...new Set(expected.seen.map((e) => e.replace(/ at .*/, '')))];
    console.log(
      `# expected console errors (connections to A): ${expected.seen.length}, ${kinds.join('; ')}`,
    );
    assert.ok(expected.seen.length > 0, 'the page never tried node A again after its kill');
  } finally {
    if (launched !== null) {
      await launched.browser.close();
      rmSync(launched.profile, { recursive: true, force: true });
    }
    await cluster.stop();
  }
});

/** How long the page may take to follow another member after its own froze (3 s of silence first). */
const frozenFollowBoundMs = 12_000;

// SIGSTOP, not SIGKILL: A's sockets stay open and its kernel still accepts connections, so
// nothing is refused and nothing ends; only the page's silence check (3 s without an event)
// tells it A is gone. A is the leader, so the put also needs the survivors' new leader.
//
// Console errors: while A is frozen nothing refuses the page; it aborts its own requests to A,
// which Chromium does not log. What a frozen member can still cause is a connection to A cut
// short when it thaws or reset under it: "Failed to load resource: net::ERR_EMPTY_RESPONSE",
// ERR_CONNECTION_RESET or ERR_INCOMPLETE_CHUNKED_ENCODING at a URL of A. Those are filtered
// (none were seen in the runs so far, so none are required); any other error fails the test.
void test('the dashboard follows another member when its own freezes (SIGSTOP), and comes back when it thaws', async (t) => {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: install Debian's chromium`);
  const cluster = await TestCluster.create({ nodes: 3 });
  let launched: { browser: Browser; profile: string } | null = null;
  let frozen: number | null = null;
  const problems: string[] = [];
  try {
    await cluster.start();
    const a = await cluster.waitForLeader();
    const home = cluster.member(a).client;
    const others = [1, 2, 3].filter((id) => id !== a);
    const cutShort =
      /^Failed to load resource: net::ERR_(EMPTY_RESPONSE|CONNECTION_RESET|INCOMPLETE_CHUNKED_ENCODING)$/;
    const expected: ExpectedErrors = {
      match: (m) => cutShort.test(m.text()) && m.location().url.startsWith(`${home}/`),
      seen: [],
    };
    launched = await launch();
    const page = await openPage(launched.browser, `${home}/`, problems, expected);
    const row = (id: number): string => `document.querySelector('#members tr[data-id="${id}"]')`;
    const shows = async (): Promise<string> =>
      page.evaluate<string>(
        `'banner: ' + JSON.stringify(document.getElementById('following').textContent) +
         ', connection: ' + JSON.stringify(document.getElementById('conn').textContent) +
         ', members: ' + JSON.stringify([...document.querySelectorAll('#members tbody tr')].map((r) => r.textContent))`,
      );
    /** `until`, failing with what the page shows. */
    const untilShown = async (expression: string, timeoutMs: number): Promise<void> => {
      try {
        await until(page, expression, timeoutMs);
      } catch (err) {
        throw new Error(`${(err as Error).message}\nThe page shows ${await shows()}`);
      }
    };
    await untilShown(
      `document.querySelectorAll('#members tbody tr').length === 3 &&
       ${row(a)}.classList.contains('leader') && document.getElementById('following').hidden`,
      10_000,
    );

    // The later steps mean nothing unless the page left A: they check that it did.
    let followed = false;
    await t.test('A frozen: the page reads from another member and shows A down', async () => {
      const frozenAt = Date.now();
      cluster.pause(a);
      frozen = a;
      await untilShown(
        `!document.getElementById('following').hidden &&
         [${others.join(',')}].map(String).includes(document.getElementById('following').dataset.node) &&
         document.getElementById('following').textContent.includes('node ${a}, which served this page, is down')`,
        frozenFollowBoundMs,
      );
      // A figure for the report, not a timed assertion (the bound above is the test).
      console.log(`# followed another member ${Date.now() - frozenAt} ms after the freeze`);
      await untilShown(
        `${row(a)}.classList.contains('down') && ${row(a)}.children[1].textContent === 'down'`,
        frozenFollowBoundMs,
      );
      await untilShown(
        `[${others.join(',')}].map(String).includes(document.querySelector('#members tr.leader')?.dataset.id)`,
        10_000,
      );
      followed = true;
    });

    await t.test('a put from the page goes through while A is frozen', async () => {
      assert.ok(followed, 'the page never left node A');
      await page.click('nav a[data-tab="data"]');
      await page.fill('#put-key', 'frozen/key');
      await page.fill('#put-value', 'written while node A was frozen');
      await page.click('#put-form button[type=submit]');
      await untilShown(
        `document.getElementById('put-result').textContent.startsWith('Put "frozen/key"')`,
        10_000,
      );
      const client = cluster.client(others);
      try {
        assert.equal((await client.get('frozen/key'))?.value, 'written while node A was frozen');
      } finally {
        await client.close();
      }
      await page.click('nav a[data-tab="cluster"]');
    });

    await t.test('A resumed: the page reads from it again', async () => {
      assert.ok(followed, 'the page never left node A');
      const resumedAt = Date.now();
      cluster.resume(a);
      frozen = null;
      await untilShown(
        `document.getElementById('following').hidden && !${row(a)}.classList.contains('down') &&
         ${row(a)}.textContent.includes('served this page')`,
        20_000,
      );
      console.log(`# back on node A ${Date.now() - resumedAt} ms after it was resumed`);
    });

    assert.deepEqual(problems, [], 'the page logged errors');
    console.log(
      `# expected console errors (connections to A cut short): ${expected.seen.length}` +
        expected.seen.map((e) => `; ${e}`).join(''),
    );
  } finally {
    if (frozen !== null) cluster.resume(frozen);
    if (launched !== null) {
      await launched.browser.close();
      rmSync(launched.profile, { recursive: true, force: true });
    }
    await cluster.stop();
  }
});

void test('with tokens on, the page follows another member with its token (a preflight for Authorization) and writes through it', async () => {
  assert.ok(existsSync(chromiumPath), `${chromiumPath} is missing: install Debian's chromium`);
  const dir = mkdtempSync(join(tmpdir(), 'flotilla-follow-auth-'));
  const token = 'follow-writer-0123456789abcdef';
  writeFileSync(join(dir, 'node-token'), 'follow-members-0123456789abcdef');
  writeFileSync(
    join(dir, 'tokens.json'),
    JSON.stringify({
      tokens: [
        { name: 'page', role: 'write', token },
        { name: 'members', role: 'admin', token: 'follow-members-0123456789abcdef' },
      ],
    }),
  );
  const nodes = await TestNodes.start({
    nodes: 3,
    config: {
      authNodeTokenFile: join(dir, 'node-token'),
      authTokensFile: join(dir, 'tokens.json'),
    },
  });
  let launched: { browser: Browser; profile: string } | null = null;
  const problems: string[] = [];
  try {
    const leader = await nodes.waitForLeader();
    // A follower this time: the page's member goes, the leader stays.
    const a = [1, 2, 3].find((id) => id !== leader) as number;
    // Expected: the failed connections to A once it is closed, and the one 401 of A's stream
    // asked before the token was typed (Chromium logs a refused load as a console error).
    const down = failedConnectionTo(nodes.url(a));
    const unauthorized = (m: ConsoleMessage): boolean =>
      m.text() ===
        'Failed to load resource: the server responded with a status of 401 (Unauthorized)' &&
      m.location().url === `${nodes.url(a)}/v1/dashboard/events`;
    const expected: ExpectedErrors = { match: (m) => down(m) || unauthorized(m), seen: [] };
    launched = await launch();
    const page = await openPage(launched.browser, `${nodes.url(a)}/`, problems, expected);
    // Without the token the stream is refused; with it the page goes live.
    await until(page, `document.getElementById('conn').textContent.includes('UNAUTHENTICATED')`);
    await page.fill('#token', token);
    await page.click('#token-form button[type=submit]');
    await until(page, `document.querySelectorAll('#members tbody tr').length === 3`, 10_000);
    await nodes.node(a).close();
    await until(
      page,
      `[${[1, 2, 3].filter((id) => id !== a).join(',')}].map(String).includes(document.getElementById('following').dataset.node) &&
       document.querySelector('#members tr[data-id="${a}"]').classList.contains('down')`,
      followBoundMs,
    );
    await page.click('nav a[data-tab="data"]');
    await page.fill('#put-key', 'follow/token');
    await page.fill('#put-value', 'with a token');
    await page.click('#put-form button[type=submit]');
    await until(
      page,
      `document.getElementById('put-result').textContent.startsWith('Put "follow/token"')`,
      10_000,
    );
    const client = new FlotillaClient({ endpoints: [nodes.url(leader)], token });
    try {
      assert.equal((await client.get('follow/token'))?.value, 'with a token');
    } finally {
      await client.close();
    }
    assert.deepEqual(problems, [], 'the page logged errors');
    console.log(
      `# expected console errors (401 before the token, connections to A): ${expected.seen.length}`,
    );
  } finally {
    if (launched !== null) {
      await launched.browser.close();
      rmSync(launched.profile, { recursive: true, force: true });
    }
    await nodes.close();
    rmSync(dir, { recursive: true, force: true });
  }
});
