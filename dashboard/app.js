// The dashboard's entry point: the token, the tabs, the calls to the node's API, and the event
// stream that keeps the page live (GET /v1/dashboard/events, read with fetch rather than
// EventSource so that it can carry the token's Authorization header).

import { $ } from './util.js';
import { authHeaders, tokenKey } from './api.js';
import { renderCluster, renderTimeline, renderSamples, addSample } from './cluster.js';
import { initData } from './data.js';
import { initQueues, renderQueues } from './queues.js';
import { initOps, renderOpsMembers } from './ops.js';

const tabs = ['cluster', 'replication', 'data', 'queues', 'operations'];

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

const handlers = {
  hello: (d) => {
    document.title = `Flotilla · node ${d.node}`;
  },
  cluster: (d) => {
    renderCluster(d);
    renderOpsMembers(d);
  },
  timeline: (d) => renderTimeline(d),
  queues: (d) => renderQueues(d),
  metrics: (d) => renderSamples(d),
  sample: (d) => addSample(d),
};

let stream = null;

/** Follows the node's event stream, reconnecting after a second (then up to five) when it ends. */
async function follow() {
  let waitMs = 1000;
  for (;;) {
    const controller = new AbortController();
    stream = controller;
    try {
      const res = await fetch('/v1/dashboard/events', {
        headers: authHeaders(),
        cache: 'no-store',
        signal: controller.signal,
      });
      if (!res.ok) {
        const text = await res.text();
        let msg = `HTTP ${res.status}`;
        try {
          msg = `${JSON.parse(text).error.code}: ${JSON.parse(text).error.message}`;
        } catch {
          // keep the status
        }
        throw new Error(msg);
      }
      setConnection('live', 'live');
      waitMs = 1000;
      const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
      let buf = '';
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        buf += value;
        let cut;
        while ((cut = buf.indexOf('\n\n')) >= 0) {
          const block = buf.slice(0, cut);
          buf = buf.slice(cut + 2);
          const { event, data } = parseEvent(block);
          handlers[event]?.(data);
        }
      }
      setConnection('down', 'disconnected: reconnecting');
    } catch (err) {
      if (controller.signal.aborted && stream !== controller) return;
      setConnection('down', `disconnected (${err.message ?? err}): reconnecting`);
    }
    if (stream !== controller) return;
    await new Promise((r) => setTimeout(r, waitMs));
    waitMs = Math.min(5000, waitMs * 2);
  }
}

function restartStream() {
  stream?.abort();
  stream = null;
  void follow();
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
  initOps();
  void follow();
}

// Modules run after the document is parsed.
start();
