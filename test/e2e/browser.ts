// Driving the dashboard in a real browser (Debian's headless Chromium, by playwright-core) for
// the end-to-end tests: a browser on a fresh profile, a page that records every console error,
// uncaught exception and native dialog, and a bounded wait for a condition in the page.

import assert from 'node:assert/strict';
import { mkdtempSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium, type Browser, type ConsoleMessage, type Page } from 'playwright-core';

export const chromiumPath = '/usr/bin/chromium';

export async function launch(): Promise<{ browser: Browser; profile: string }> {
  // A fresh profile each time, removed afterwards; nothing reaches beyond loopback.
  const profile = mkdtempSync(join(tmpdir(), 'flotilla-chromium-'));
  const browser = await chromium.launch({
    executablePath: chromiumPath,
    headless: true,
    args: [
      '--no-sandbox',
      '--disable-gpu',
      '--disable-quic',
      '--no-first-run',
      '--disable-background-networking',
      '--disable-component-update',
      '--disable-sync',
      '--disk-cache-dir=' + join(profile, 'cache'),
    ],
  });
  return { browser, profile };
}

export interface ExpectedErrors {
  /** Whether a console error is one the test expects (it says which, and why). */
  readonly match: (m: ConsoleMessage) => boolean;
  /** The expected ones seen, as `text at url`. */
  readonly seen: string[];
}

/**
 * A page that records every console error, uncaught exception and dialog in `problems`, but
 * for the console errors `expected` matches, which go to its `seen`.
 */
export async function openPage(
  browser: Browser,
  url: string,
  problems: string[],
  expected?: ExpectedErrors,
): Promise<Page> {
  const page = await browser.newPage({ viewport: { width: 1280, height: 800 } });
  page.on('console', (m) => {
    if (m.type() !== 'error') return;
    const what = `${m.text()} at ${m.location().url}`;
    if (expected?.match(m) === true) expected.seen.push(what);
    else problems.push(`console error on ${url}: ${what}`);
  });
  page.on('pageerror', (e) => problems.push(`uncaught on ${url}: ${e.message}`));
  // The page opens its own confirmation dialogs (HTML <dialog>); a native one (alert, confirm)
  // would only come from script the page never meant to run.
  page.on('dialog', (d) => {
    problems.push(`native dialog on ${url}: ${d.message()}`);
    void d.dismiss();
  });
  await page.goto(url);
  return page;
}

export async function post(
  base: string,
  path: string,
  body: unknown,
): Promise<Record<string, unknown>> {
  const res = await fetch(`${base}${path}`, {
    method: 'POST',
    headers: { 'content-type': 'application/json' },
    body: JSON.stringify(body),
  });
  const json = (await res.json()) as Record<string, unknown>;
  assert.equal(res.status, 200, `${path}: ${JSON.stringify(json)}`);
  return json;
}

/**
 * Waits until `expression` (JavaScript run in the page: the test tree has no DOM types, so
 * browser-side code is given as text) is true; fails after `timeoutMs`. It polls with
 * page.evaluate, which the debugging protocol runs outside the page's content security policy;
 * Playwright's waitForFunction compiles a string with eval inside the page, which the policy
 * rightly refuses.
 */
export async function until(page: Page, expression: string, timeoutMs = 5_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    // An element not there yet makes the expression throw: that is "not yet".
    const probe = `(() => { try { return Boolean(${expression}); } catch { return false; } })()`;
    if ((await page.evaluate(probe)) === true) return;
    if (Date.now() > deadline)
      throw new Error(`Not true within ${timeoutMs} ms: ${expression.replace(/\s+/g, ' ')}`);
    await new Promise((r) => setTimeout(r, 25));
  }
}
