// The dashboard's entry point: the token, the tabs, the calls to the node's API, and the event
// stream that keeps the page live (GET /v1/dashboard/events, read with fetch rather than
// EventSource so that it can carry the token's Authorization header). When the node that served
// the page is down, the page follows another member, and comes back once it answers again.

import { $ } from './util.js';
import { authHeaders, memberUrl, setMemberBase, tokenKey } from './api.js';
import {
  renderCluster,
  renderTimeline,
  renderSamples,
  addSample,
  setHomeMember,
} from './cluster.js';
import { initData } from './data.js';
import { initQueues, renderQueues } from './queues.js';
import { initOps, renderOpsMembers } from './ops.js';
import { initRanges, renderRanges } from './ranges.js';

const tabs = ['cluster', 'replication', 'data', 'ranges', 'queues', 'operations'];

function showTab() {
  const name = location.hash.slice(1);
  const current = tabs.includes(name) ? name : 'cluster';
  for (const t of tabs) $(`tab-${t}`).hidden = t !== current;
  for (const a of document.querySelectorAll('nav a'))
    if (a.dataset.tab === current) a.setAttribute('aria-current', 'page');
    else a.removeAttribute('aria-current');
}

function setConnection(state, text) {
  const c = $('conn');
  c.className = `badge ${state}`;
  c.textContent = text;
}

/** Parses one server-sent event block (`event:` and `data:` lines). */
function parseEvent(block) {
  let event = 'message';
  const data = [];
  for (const line of block.split('\n')) {
    if (line.startsWith('event:')) event = line.slice(6).trim();
    else if (line.startsWith('data:')) data.push(line.slice(5).trimStart());
  }
  return { event, data: data.length === 0 ? null : JSON.parse(data.join('\n')) };
}

/**
 * The member the page follows: `home` served it, `current` feeds it now (its origin, '' for
 * home). When the stream from `current` breaks and does not come back within `switchAfterMs`,
 * the page follows another member it learned from the cluster view, and shows so; it goes back
 * home once the member it follows has seen home answer for `homeBackMs`, doubled (up to a
 * minute) each time home then could not be reached from the page after all, so that a page
 * cut off from home alone does not swing back and forth.
 */
const switchAfterMs = 2000;
const homeBackMs = 2000;
const homeBackMaxMs = 60_000;
/** A stream that carries nothing this long is cut: the member froze (events come every 250 ms). */
const silentMs = 3000;
const retryMs = 500;
/** A member that refused the page's token is asked again this much later (or on a new token). */
const refusedRetryMs = 5000;

const follow = {
  homeId: null,
  current: { id: null, origin: '' },
  /** The last cluster view's members ({id, client, error}), whoever sent it. */
  members: [],
  /** Members whose stream broke since the page last had one. */
  failed: new Set(),
  homeAnsweringSinceMs: null,
  homeBackMs,
};

const handlers = {
  hello: (d) => {
    if (follow.current.origin === '') follow.homeId = d.node;
    follow.current.id = d.node;
    document.title =
      d.node === follow.homeId
        ? `Flotilla · node ${d.node}`
        : `Flotilla · node ${d.node} (following)`;
    showFollowing();
  },
  cluster: (d) => {
    follow.members = d.members;
    setHomeMember(follow.homeId);
    renderCluster(d);
    renderOpsMembers(d);
    maybeGoHome(d);
  },
  timeline: (d) => renderTimeline(d),
  queues: (d) => renderQueues(d),
  ranges: (d) => renderRanges(d),
  metrics: (d) => renderSamples(d),
  sample: (d) => addSample(d),
};

function showFollowing() {
  const p = $('following');
  const { current, homeId } = follow;
  if (current.origin === '') {
    p.hidden = true;
    p.textContent = '';
    return;
  }
  p.hidden = false;
  p.dataset.node = String(current.id ?? '');
  p.textContent =
    `Reading from node ${current.id ?? '?'} (${current.origin}): ` +
    `node ${homeId ?? '?'}, which served this page, is down.`;
}

/** The member to follow next: one that answered in the last view, not one that just failed. */
function nextMember() {
  const others = follow.members.filter(
    (m) => m.id !== follow.current.id && !follow.failed.has(m.id) && originOf(m.client) !== null,
  );
  const pick = others.find((m) => m.error === null) ?? others[0];
  if (pick === undefined) return null;
  return { id: pick.id, origin: pick.id === follow.homeId ? '' : originOf(pick.client) };
}

function originOf(address) {
  try {
    const u = new URL(address);
    return u.protocol === 'http:' || u.protocol === 'https:' ? u.origin : null;
  } catch {
    return null;
  }
}

/** Follows `next` from the next connection on; the banner says so once it answers (hello). */
function switchTo(next) {
  follow.current = next;
  follow.homeAnsweringSinceMs = null;
  setMemberBase(next.origin);
  const p = $('following');
  if (p.hidden && next.origin === '') return;
  p.hidden = false;
  p.dataset.node = '';
  p.textContent =
    next.origin === ''
      ? `Node ${next.id}, which served this page, answers again: connecting to it…`
      : `Node ${follow.homeId ?? '?'}, which served this page, is down: ` +
        `connecting to node ${next.id} (${next.origin})…`;
}

/** Away from home: go back once the member followed has seen home answer for a while. */
function maybeGoHome(c) {
  if (follow.current.origin === '' || follow.homeId === null) return;
  const home = c.members.find((m) => m.id === follow.homeId);
  if (home === undefined || home.error !== null || home.view === null) {
    follow.homeAnsweringSinceMs = null;
    return;
  }
  const now = Date.now();
  follow.homeAnsweringSinceMs ??= now;
  if (now - follow.homeAnsweringSinceMs < follow.homeBackMs) return;
  // Until home's stream opens, a failure counts against going back (readStream resets it).
  follow.homeBackMs = Math.min(homeBackMaxMs, 2 * follow.homeBackMs);
  follow.failed.delete(follow.homeId);
  switchTo({ id: follow.homeId, origin: '' });
  restartStream();
}

let stream = null;

/** Reads one stream to its end; resolves when it ends, throws when it fails or goes silent. */
async function readStream(controller) {
  // A frozen member still accepts the connection (its kernel does) and never answers: the same
  // silence bound holds until the answer starts, or the page would wait on it for good.
  const answerWatchdog = setTimeout(() => controller.abort(), silentMs);
  let res;
  try {
    res = await fetch(memberUrl('/v1/dashboard/events'), {
      headers: authHeaders(),
      cache: 'no-store',
      signal: controller.signal,
    });
  } finally {
    clearTimeout(answerWatchdog);
  }
  if (!res.ok) {
    const text = await res.text();
    let msg = `HTTP ${res.status}`;
    try {
      msg = `${JSON.parse(text).error.code}: ${JSON.parse(text).error.message}`;
    } catch {
      // keep the status
    }
    throw Object.assign(new Error(msg), { status: res.status });
  }
  setConnection('live', 'live');
  follow.failed.clear();
  if (follow.current.origin === '') follow.homeBackMs = homeBackMs;
  const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
  let buf = '';
  let watchdog = setTimeout(() => controller.abort(), silentMs);
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      clearTimeout(watchdog);
      watchdog = setTimeout(() => controller.abort(), silentMs);
      buf += value;
      let cut;
      while ((cut = buf.indexOf('\n\n')) >= 0) {
        const block = buf.slice(0, cut);
        buf = buf.slice(cut + 2);
        const { event, data } = parseEvent(block);
        handlers[event]?.(data);
      }
    }
  } finally {
    clearTimeout(watchdog);
  }
}

/**
 * Follows a member's event stream: reconnects every half second while it is down, and after
 * `switchAfterMs` of that follows another member instead.
 */
async function followStream() {
  let brokeAtMs = null;
  for (;;) {
    const controller = new AbortController();
    stream = controller;
    let why = 'the stream ended';
    let refused = false;
    try {
      await readStream(controller);
      brokeAtMs = null;
    } catch (err) {
      if (stream !== controller) return;
      why = controller.signal.aborted ? 'no event for 3 s' : String(err.message ?? err);
      // The member answered, and said no to this page (no token, or the wrong one): it is up,
      // and another member would say the same. Not a reason to follow another.
      refused = err.status === 401 || err.status === 403;
    }
    if (stream !== controller) return;
    const now = Date.now();
    const who = follow.current.id === null ? 'the node' : `node ${follow.current.id}`;
    if (refused) {
      brokeAtMs = null;
      setConnection('down', `${who} refused the page (${why}): type a token above`);
      await new Promise((r) => setTimeout(r, refusedRetryMs));
      if (stream !== controller) return;
      continue;
    }
    brokeAtMs ??= now;
    if (now - brokeAtMs >= switchAfterMs) {
      follow.failed.add(follow.current.id);
      const next = nextMember();
      if (next !== null) {
        setConnection('switching', `${who} down (${why}): switching to node ${next.id}`);
        switchTo(next);
        brokeAtMs = now;
        continue;
      }
      // Everyone failed once: start over with whoever answered last.
      follow.failed.clear();
    }
    setConnection('down', `${who} disconnected (${why}): reconnecting`);
    await new Promise((r) => setTimeout(r, retryMs));
    if (stream !== controller) return;
  }
}

function restartStream() {
  stream?.abort();
  stream = null;
  void followStream();
}

function initToken() {
  const input = $('token');
  input.value = sessionStorage.getItem(tokenKey) ?? '';
  $('token-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const t = input.value.trim();
    if (t === '') sessionStorage.removeItem(tokenKey);
    else sessionStorage.setItem(tokenKey, t);
    restartStream();
  });
}

function start() {
  window.addEventListener('hashchange', showTab);
  showTab();
  initToken();
  initData();
  initQueues();
  initRanges();
  initOps();
  void followStream();
}

// Modules run after the document is parsed.
start();
