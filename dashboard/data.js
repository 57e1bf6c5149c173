// The Data tab: browse keys by prefix, a key's history, put and delete, and a live watch of a
// prefix. Keys and values are read in base64, so keys of any bytes show (and can be acted on);
// what is typed in is sent as UTF-8.

import { $, el, fill, clip, toBase64, fromBase64, clock } from './util.js';
import { api, authHeaders, confirmAction, describeError, ApiError, memberUrl } from './api.js';

/** The range of keys with a prefix, in base64; the empty prefix is every key. */
function prefixRange(prefix) {
  // "\0" to "\0" is every key (etcd's convention; the API refuses an empty key).
  if (prefix === '') return { key: 'AA==', rangeEnd: 'AA==', encoding: 'base64' };
  return { key: toBase64(prefix), prefix: true, encoding: 'base64' };
}

function shown(b64) {
  const d = fromBase64(b64);
  return d.utf8 ? d.text : `${d.text} (not UTF-8)`;
}

const pageSize = 100;

async function browse() {
  const prefix = $('browse-prefix').value;
  const info = $('browse-info');
  info.textContent = 'Reading…';
  try {
    const r = await api('/v1/kv/range', { ...prefixRange(prefix), limit: pageSize });
    const rows = r.kvs.map((kv) => {
      const key = shown(kv.key);
      const value = shown(kv.value);
      return el(
        'tr',
        { 'data-key': key },
        el('td', { class: 'wrap', title: key }, el('code', {}, clip(key, 120))),
        el('td', { class: 'wrap', title: clip(value, 2000) }, clip(value, 120)),
        el('td', {}, kv.version),
        el('td', {}, kv.createRevision),
        el('td', {}, kv.modRevision),
        el(
          'td',
          {},
          el(
            'button',
            { type: 'button', class: 'small secondary', onclick: () => void history(kv.key) },
            'History',
          ),
          el(
            'button',
            { type: 'button', class: 'small danger', onclick: () => void remove(kv.key) },
            'Delete',
          ),
        ),
      );
    });
    if (rows.length === 0)
      rows.push(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No keys.')));
    fill($('keys').tBodies[0], rows);
    info.textContent =
      `${r.count} key(s) at revision ${r.header.revision}` +
      (r.more ? `; showing the first ${r.kvs.length}` : '');
  } catch (err) {
    info.textContent = describeError(err);
  }
}

/** A key's versions, newest first: each read at the revision before the one found. */
async function history(keyB64) {
  $('history').hidden = false;
  $('history-key').textContent = shown(keyB64);
  const list = $('history-list');
  fill(list, [el('li', { class: 'empty' }, 'Reading…')]);
  const items = [];
  let revision = 0;
  let note = null;
  for (let i = 0; i < 20; i++) {
    let r;
    try {
      r = await api('/v1/kv/range', { key: keyB64, encoding: 'base64', revision });
    } catch (err) {
      note =
        err instanceof ApiError && err.code === 'COMPACTED'
          ? 'older versions were compacted'
          : describeError(err);
      break;
    }
    const kv = r.kvs[0];
    if (kv === undefined) {
      note = revision === 0 ? 'the key does not exist now' : `absent at revision ${revision}`;
      break;
    }
    items.push(
      el(
        'li',
        {},
        `revision ${kv.modRevision} (version ${kv.version}): `,
        el('code', {}, clip(shown(kv.value), 200)),
      ),
    );
    if (kv.version === 1 || kv.modRevision <= 1) {
      note = `created at revision ${kv.createRevision}`;
      break;
    }
    revision = kv.modRevision - 1;
  }
  if (note !== null) items.push(el('li', { class: 'empty' }, note));
  fill(list, items);
}

async function remove(keyB64) {
  if (!(await confirmAction(`Delete the key "${clip(shown(keyB64), 200)}"?`))) return;
  try {
    const r = await api('/v1/kv/delete', { key: keyB64, encoding: 'base64' });
    $('put-result').textContent = `Deleted ${r.deleted} key(s) at revision ${r.header.revision}.`;
  } catch (err) {
    $('put-result').textContent = describeError(err);
  }
  await browse();
}

async function put() {
  const key = $('put-key').value;
  const value = $('put-value').value;
  const out = $('put-result');
  try {
    const r = await api('/v1/kv/put', { key, value });
    out.textContent = `Put "${clip(key, 200)}" at revision ${r.header.revision}.`;
    await browse();
  } catch (err) {
    out.textContent = describeError(err);
  }
}

let watching = null;

/** Watches a prefix through POST /v1/watch (a stream of JSON lines) until stopped. */
async function watch() {
  if (watching !== null) {
    watching.abort();
    return;
  }
  const prefix = $('watch-prefix').value;
  const controller = new AbortController();
  watching = controller;
  const button = $('watch-button');
  const state = $('watch-state');
  button.textContent = 'Stop';
  fill($('watch-events'), []);
  try {
    const res = await fetch(memberUrl('/v1/watch'), {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...authHeaders() },
      body: JSON.stringify({ ...prefixRange(prefix), prevKv: false }),
      signal: controller.signal,
    });
    if (!res.ok) {
      const text = await res.text();
      throw new Error(text);
    }
    const reader = res.body.pipeThrough(new TextDecoderStream()).getReader();
    let buf = '';
    for (;;) {
      const { value, done } = await reader.read();
      if (done) break;
      buf += value;
      let cut;
      while ((cut = buf.indexOf('\n')) >= 0) {
        const line = JSON.parse(buf.slice(0, cut));
        buf = buf.slice(cut + 1);
        watchLine(line, prefix);
      }
    }
    state.textContent = 'The watch ended.';
  } catch (err) {
    state.textContent = controller.signal.aborted
      ? 'Stopped.'
      : `The watch failed: ${err.message ?? err}`;
  } finally {
    watching = null;
    button.textContent = 'Watch';
  }
}

function watchLine(line, prefix) {
  const state = $('watch-state');
  if (line.created) {
    state.textContent = `Watching ${prefix === '' ? 'every key' : `keys under "${prefix}"`} from revision ${line.startRevision}.`;
    return;
  }
  if (line.canceled) {
    state.textContent = `The node ended the watch: ${line.error?.code ?? ''} ${line.error?.message ?? ''}`;
    return;
  }
  if (!Array.isArray(line.events)) return;
  const list = $('watch-events');
  for (const e of line.events) {
    const key = shown(e.kv.key);
    list.prepend(
      el(
        'li',
        { 'data-key': key, 'data-type': e.type },
        el('time', {}, clock(Date.now())),
        el('span', {}, `revision ${line.header.revision}`),
        el('strong', {}, e.type),
        el('code', {}, clip(key, 120)),
        e.type === 'put' ? el('span', {}, `= ${clip(shown(e.kv.value), 120)}`) : null,
      ),
    );
  }
  while (list.children.length > 200) list.lastElementChild.remove();
}

let browsed = false;

/** The first time the tab is shown, list every key (the first page of them). */
function browseOnce() {
  if (browsed || location.hash !== '#data') return;
  browsed = true;
  void browse();
}

export function initData() {
  window.addEventListener('hashchange', browseOnce);
  browseOnce();
  $('browse-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void browse();
  });
  $('put-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void put();
  });
  $('watch-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void watch();
  });
}
