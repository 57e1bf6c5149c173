// The Ranges tab: the ranges of the key-value store (from the event stream's `ranges` event,
// the map with the figures of the node the page follows), and a split at a key, confirmed
// first, through the public API. Keys arrive in base64, so keys of any bytes show.

import { $, el, fill, clip, fromBase64, toBase64, bytes } from './util.js';
import { api, confirmAction, describeError } from './api.js';

/** A bound as text: the key space's ends as (start) and (end). */
function bound(b64, isEnd) {
  if (b64 === null) return el('span', { class: 'hint' }, '(end)');
  if (b64 === '' && !isEnd) return el('span', { class: 'hint' }, '(start)');
  const d = fromBase64(b64);
  const text = d.utf8 ? d.text : `${d.text} (not UTF-8)`;
  return el('code', { title: text }, clip(text, 40));
}

const rate = (x) => (x === null ? '—' : x.toFixed(1));
const opt = (x, show = String) => (x === null ? '—' : show(x));

export function renderRanges(d) {
  const info = $('ranges-info');
  if (d === null) {
    info.textContent = 'The range map is not bootstrapped yet (the meta group has no leader).';
    fill($('ranges').tBodies[0], []);
    return;
  }
  const shown = d.ranges.length < d.count ? ` (the first ${d.ranges.length} shown)` : '';
  info.textContent =
    `Map version ${d.version}: ${d.count} range${d.count === 1 ? '' : 's'}${shown}. ` +
    `Figures from node ${d.node}: keys, size and writes/s of its copy (about the same on every ` +
    `replica), reads/s it served itself.`;
  const rows = d.ranges.map((r) =>
    el(
      'tr',
      { 'data-range': r.id },
      el('td', {}, r.id),
      el('td', { class: 'wrap' }, bound(r.start, false)),
      el('td', { class: 'wrap' }, bound(r.end, true)),
      el('td', {}, r.generation),
      el('td', {}, r.replicas.join(', ')),
      el('td', {}, r.leader === null ? '—' : r.leader === 0 ? 'none' : `node ${r.leader}`),
      el('td', { class: 'num' }, opt(r.keys)),
      el('td', { class: 'num' }, opt(r.bytes, bytes)),
      el('td', { class: 'num' }, rate(r.writesPerSec)),
      el('td', { class: 'num' }, rate(r.readsPerSec)),
    ),
  );
  fill($('ranges').tBodies[0], rows);
}

async function split() {
  const key = $('split-key').value;
  const out = $('split-result');
  if (key === '') {
    out.textContent = 'Type the key the new range starts at.';
    return;
  }
  if (!(await confirmAction(`Split the range holding "${clip(key, 100)}" at that key?`))) {
    out.textContent = 'Cancelled.';
    return;
  }
  out.textContent = 'Splitting…';
  try {
    const r = await api('/v1/ranges/split', { key: toBase64(key), encoding: 'base64' });
    out.textContent = `Split at "${clip(key, 100)}": range ${r.left.id} keeps the keys below it, range ${r.right.id} holds the rest.`;
  } catch (err) {
    out.textContent = describeError(err);
  }
}

export function initRanges() {
  $('split-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void split();
  });
}
