// The dashboard as a node serves it, over real HTTP on in-process nodes: the page's files
// with their types, caching and content security policy; the event stream of the cluster (the
// members, one leader, the election timeline), a member that stops showing as down within a
// second, the bound on streams, and every stream ended when the node closes.

import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import {
  contentSecurityPolicy,
  dashboardApiPaths,
  dashboardAssets,
  dashboardDir,
  type MemberView,
  type TimelineEntry,
} from '../../src/api/dashboard-routes.js';
import type { MemberRow } from '../../src/server/dashboard.js';
import { TestNodes } from './nodes.js';

type Until = (event: string, data: unknown) => boolean;

/**
 * A server-sent event stream's reader: each call reads events, handing each to `until`, until
 * it returns true; it throws, with the last events seen, if the stream ends or time runs out.
 */
function eventReader(res: Response): (until: Until, timeoutMs: number) => Promise<void> {
  const reader = (res.body as ReadableStream<Uint8Array>)
    .pipeThrough(new TextDecoderStream())
    .getReader();
  const seen: string[] = [];
  let buf = '';
  return async (until, timeoutMs) => {
    const timer = setTimeout(() => void reader.cancel(new Error('timed out')), timeoutMs);
    try {
      for (;;) {
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const event = /^event: (.*)$/m.exec(block)?.[1] ?? '';
          const data = JSON.parse(/^data: (.*)$/m.exec(block)?.[1] ?? 'null') as unknown;
          seen.push(`${event} ${JSON.stringify(data).slice(0, 300)}`);
          if (seen.length > 50) seen.shift();
          if (until(event, data)) return;
        }
        const { value, done } = await reader.read();
        if (done) throw new Error('the stream ended');
        buf += value;
      }
    } catch (err) {
      throw new Error(`${(err as Error).message}; events seen: ${seen.slice(-20).join(' | ')}`);
    } finally {
      clearTimeout(timer);
    }
  };
}

void test('serves the page and its files with their types, a strict policy and revalidation; nothing from elsewhere', async () => {
  const nodes = await TestNodes.start({ nodes: 1 });
  try {
    const base = nodes.url(1);
    // The page may connect to the members (its own, here) and nowhere else.
    const policy = contentSecurityPolicy([base]);
    assert.match(policy, new RegExp(`connect-src 'self' ${base}(;|$)`));
    for (const a of dashboardAssets) {
      const res = await fetch(`${base}${a.path}`);
      const body = await res.text();
      assert.equal(res.status, 200, a.path);
      assert.equal(res.headers.get('content-type'), a.contentType, a.path);
      assert.equal(res.headers.get('content-security-policy'), policy);
      assert.equal(res.headers.get('x-content-type-options'), 'nosniff');
      assert.equal(res.headers.get('cache-control'), 'no-cache');
      const etag = res.headers.get('etag');
      assert.ok(etag !== null && body.length > 0, a.path);
      const again = await fetch(`${base}${a.path}`, { headers: { 'if-none-match': etag } });
      assert.equal(again.status, 304, a.path);
      assert.equal(await again.text(), '');
    }
    assert.match(policy, /default-src 'none'/);
    assert.doesNotMatch(policy, /unsafe-inline|unsafe-eval|\*/);
    // Every file the page names is one the node serves, and none is from another origin.
    const served = new Set(dashboardAssets.map((a) => a.path));
    const dir = dashboardDir();
    const html = readFileSync(new URL('index.html', dir), 'utf8');
    for (const [, url] of html.matchAll(/(?:src|href)="([^"]*)"/g)) {
      const u = url as string;
      assert.ok(u.startsWith('#') || u === 'data:,' || served.has(u), `index.html names ${u}`);
    }
    for (const a of dashboardAssets.filter((x) => x.file.endsWith('.js'))) {
      const js = readFileSync(new URL(a.file, dir), 'utf8');
      for (const [, file] of js.matchAll(/from '\.\/([^']+)'/g))
        assert.ok(served.has(`/dashboard/${file as string}`), `${a.file} imports ${file}`);
      assert.doesNotMatch(
        js,
        /innerHTML|outerHTML|insertAdjacentHTML|document\.write|eval\(/,
        a.file,
      );
      // Every request goes to the member the page follows (api.js, memberUrl), on a path that
      // member answers across origins.
      for (const [, target] of js.matchAll(/fetch\(\s*([^,]+),/g))
        assert.match(target as string, /^memberUrl\(('\/|path)/, `${a.file} fetches ${target}`);
      for (const [, path] of js.matchAll(/[`'](\/v1\/[a-z/-]+)/g)) {
        const p = path as string;
        const covered = p.endsWith('/')
          ? dashboardApiPaths.some((c) => c.startsWith(p))
          : dashboardApiPaths.includes(p);
        assert.ok(covered, `${a.file} calls ${p}, which is not in dashboardApiPaths`);
      }
    }
    const css = readFileSync(new URL('style.css', dir), 'utf8');
    assert.doesNotMatch(css, /url\(|@import/);
    const missing = await fetch(`${base}/dashboard/nothing.js`);
    assert.equal(missing.status, 404);
  } finally {
    await nodes.stop();
  }
});

void test('the event stream shows every member and one leader, a member that stops within a second, and ends when its node closes', async () => {
  const nodes = await TestNodes.start({ nodes: 3 });
  try {
    const leader = await nodes.waitForLeader();
    // Follow a node that will stay up, and stop one of the others.
    const served = leader === 1 ? 2 : 1;
    const stopped = [1, 2, 3].find((id) => id !== served && id !== leader) as number;
    const res = await fetch(`${nodes.url(served)}/v1/dashboard/events`);
    assert.equal(res.status, 200);
    assert.equal(res.headers.get('content-type'), 'text/event-stream; charset=utf-8');
    const read = eventReader(res);
    let timeline: TimelineEntry[] = [];
    await read((event, data) => {
      if (event === 'timeline') timeline = data as TimelineEntry[];
      if (event !== 'cluster') return false;
      const rows = (data as { members: MemberRow[] }).members;
      const leaders = rows.filter((r) => r.view?.status.role === 'leader').map((r) => r.id);
      return (
        rows.length === 3 &&
        rows.every((r) => r.error === null && r.view !== null) &&
        leaders.length === 1 &&
        leaders[0] === leader &&
        timeline.some((e) => e.kind === 'become-leader' && e.node === leader)
      );
    }, 10_000);
    const won = timeline.find((e) => e.kind === 'become-leader' && e.node === leader);
    assert.equal(won?.reason, 'won election');
    assert.ok(
      timeline.some((e) => e.node !== leader && e.kind === 'leader-changed' && e.peer === leader),
      'the followers saw the leader change too',
    );

    // Shown as down at the next look after its port closed: well within the bound here.
    await nodes.node(stopped).close();
    await read(
      (event, data) =>
        event === 'cluster' &&
        (data as { members: MemberRow[] }).members.some(
          (r) => r.id === stopped && r.error !== null,
        ),
      2_000,
    );

    // Closing the node ends the stream (the reader sees its end, not a hang).
    const ended = read(() => false, 5_000).then(
      () => 'no end',
      (err: unknown) => (err as Error).message,
    );
    await nodes.node(served).close();
    assert.match(await ended, /^the stream ended/);
  } finally {
    await nodes.stop();
  }
});

void test('at most 32 streams per node, the next refused 429 OVERLOADED; a member answers its view and timeline version', async () => {
  const nodes = await TestNodes.start({ nodes: 1 });
  const controllers: AbortController[] = [];
  try {
    await nodes.waitForLeader();
    const url = `${nodes.url(1)}/v1/dashboard/events`;
    for (let i = 0; i < 32; i++) {
      const c = new AbortController();
      controllers.push(c);
      const res = await fetch(url, { signal: c.signal });
      assert.equal(res.status, 200, `stream ${i + 1}`);
    }
    const refused = await fetch(url);
    assert.equal(refused.status, 429);
    assert.ok(Number(refused.headers.get('retry-after')) >= 1);
    assert.equal(((await refused.json()) as { error: { code: string } }).error.code, 'OVERLOADED');
    for (const c of controllers.splice(0)) c.abort();
    // The aborted streams are let go: a new one is served again.
    const deadline = Date.now() + 5_000;
    let status = 0;
    while (Date.now() < deadline) {
      const c = new AbortController();
      const res = await fetch(url, { signal: c.signal });
      status = res.status;
      c.abort();
      if (status === 200) break;
      await new Promise((r) => setTimeout(r, 50));
    }
    assert.equal(status, 200);

    const member = (await (
      await fetch(`${nodes.url(1)}/v1/dashboard/member`)
    ).json()) as MemberView;
    assert.equal(member.status.id, 1);
    assert.equal(member.status.role, 'leader');
    assert.equal(member.leaderContactAgoMs, null);
    assert.ok(member.timeline !== null && member.timeline.entries.length > 0);
    const unchanged = (await (
      await fetch(`${nodes.url(1)}/v1/dashboard/member?timelineVersion=${member.timeline.version}`)
    ).json()) as MemberView;
    assert.equal(unchanged.timeline, null, 'an unchanged timeline is not sent again');
    const bad = await fetch(`${nodes.url(1)}/v1/dashboard/member?timelineVersion=-1`);
    assert.equal(bad.status, 400);
    assert.equal(((await bad.json()) as { error: { code: string } }).error.code, 'BAD_REQUEST');
  } finally {
    for (const c of controllers) c.abort();
    await nodes.stop();
  }
});
