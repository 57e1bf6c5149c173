// The Queues tab: every queue's jobs by state (live, from the event stream), a chart of one
// queue's rates, the jobs of a state, and retry, delete, pause and resume.

import { $, el, fill, clip } from './util.js';
import { api, confirmAction, describeError } from './api.js';
import { drawChart, legend } from './chart.js';

const states = ['waiting', 'delayed', 'active', 'completed', 'failed', 'dead', 'cancelled'];

let queues = [];
let selected = null;
/** The selected queue's totals, one sample a second, for its rate chart. */
let history = [];
let reloadTimer = null;

export function renderQueues(d) {
  const before = queues.find((q) => q.queue === selected);
  queues = d.queues;
  $('queues-empty').hidden = queues.length > 0;
  const rows = queues.map((q) =>
    el(
      'tr',
      { 'data-queue': q.queue },
      el('td', {}, el('code', {}, clip(q.queue, 60))),
      el('td', { class: q.paused ? 'warn' : 'ok' }, q.paused ? 'paused' : 'running'),
      ...states.map((s) =>
        el('td', { class: s === 'dead' && q.counts[s] > 0 ? 'bad' : '' }, q.counts[s]),
      ),
      el(
        'td',
        {},
        el(
          'button',
          { type: 'button', class: 'small secondary', onclick: () => select(q.queue) },
          'Jobs',
        ),
        el(
          'button',
          { type: 'button', class: 'small', onclick: () => void pauseOrResume(q) },
          q.paused ? 'Resume' : 'Pause',
        ),
      ),
    ),
  );
  fill($('queues').tBodies[0], rows);
  const now = queues.find((q) => q.queue === selected);
  // The selected queue changed: show its jobs again (debounced: a busy queue changes often).
  if (now !== undefined && JSON.stringify(now.counts) !== JSON.stringify(before?.counts)) {
    clearTimeout(reloadTimer);
    reloadTimer = setTimeout(() => void listJobs(), 300);
  }
}

async function pauseOrResume(q) {
  const verb = q.paused ? 'resume' : 'pause';
  if (!(await confirmAction(`${q.paused ? 'Resume' : 'Pause'} the queue "${clip(q.queue, 100)}"?`)))
    return;
  try {
    await api(`/v1/queue/${verb}`, { queue: q.queue });
    $('jobs-result').textContent = `Queue "${q.queue}": ${verb}d.`;
  } catch (err) {
    $('jobs-result').textContent = describeError(err);
  }
}

function select(name) {
  selected = name;
  history = [];
  $('queue-detail').hidden = false;
  $('queue-name').textContent = name;
  $('jobs-result').textContent = '';
  drawRates();
  void listJobs();
}

async function listJobs() {
  if (selected === null) return;
  const queue = selected;
  const state = $('jobs-state').value;
  try {
    const r = await api('/v1/queue/list', { queue, state, limit: 100 });
    if (queue !== selected) return;
    const rows = r.jobs.map((j) => {
      const data = JSON.stringify(j.data) ?? '';
      const finished = j.state === 'dead' || j.state === 'cancelled';
      return el(
        'tr',
        { 'data-job': j.id },
        el('td', {}, el('code', {}, clip(j.id, 60))),
        el('td', {}, clip(j.name, 60)),
        el('td', {}, j.state),
        // Releases (a worker giving the job back unrun) only once there were some.
        el(
          'td',
          {},
          `${j.attempts} of ${j.maxAttempts}` + (j.releases > 0 ? `, released ${j.releases}` : ''),
        ),
        el('td', { class: 'wrap' }, clip(j.error ?? '', 120)),
        el('td', { class: 'wrap', title: clip(data, 2000) }, el('code', {}, clip(data, 80))),
        el(
          'td',
          {},
          finished
            ? el(
                'button',
                { type: 'button', class: 'small', onclick: () => void act('retry', j) },
                'Retry',
              )
            : null,
          el(
            'button',
            { type: 'button', class: 'small danger', onclick: () => void act('delete', j) },
            'Delete',
          ),
        ),
      );
    });
    if (rows.length === 0)
      rows.push(el('tr', {}, el('td', { colspan: 7, class: 'empty' }, `No ${state} jobs.`)));
    fill($('jobs').tBodies[0], rows);
  } catch (err) {
    $('jobs-result').textContent = describeError(err);
  }
}

async function act(verb, job) {
  if (
    !(await confirmAction(
      `${verb === 'retry' ? 'Retry' : 'Delete'} the job "${clip(job.id, 100)}" of "${clip(job.queue, 100)}"?`,
    ))
  )
    return;
  try {
    const r = await api(`/v1/queue/${verb}`, { queue: job.queue, id: job.id });
    $('jobs-result').textContent =
      verb === 'retry' ? `Job "${job.id}" retried: now ${r.state}.` : `Job "${job.id}" deleted.`;
  } catch (err) {
    $('jobs-result').textContent = describeError(err);
  }
  await listJobs();
}

/** Once a second, the selected queue's totals become a point of its rate chart. */
function sampleRates() {
  const q = queues.find((x) => x.queue === selected);
  if (q === undefined) return;
  history.push({ atMs: Date.now(), ...q.totals });
  if (history.length > 181) history.shift();
  drawRates();
}

/** The selected queue's rates: each total's rise per second between samples. */
function drawRates() {
  if ($('tab-queues').hidden || $('queue-detail').hidden) return;
  const rate = (key) =>
    history
      .slice(1)
      .map((h, i) => Math.max(0, (h[key] - history[i][key]) / ((h.atMs - history[i].atMs) / 1000)));
  legend(
    $('chart-queue-text'),
    drawChart(
      $('chart-queue'),
      history.slice(1).map((h) => h.atMs),
      [
        { label: 'added', values: rate('added') },
        { label: 'completed', values: rate('completed') },
        { label: 'failed', values: rate('failed') },
      ],
      '/s',
    ),
  );
}

export function initQueues() {
  $('jobs-form').addEventListener('submit', (e) => {
    e.preventDefault();
    void listJobs();
  });
  setInterval(sampleRates, 1000);
}
