// The Cluster and Replication tabs: members, the election timeline, each follower's progress,
// snapshot transfers, and this node's throughput and latency charts.

import { $, el, fill, ago, clock, bytes, clip } from './util.js';
import { drawChart, legend } from './chart.js';
import { groupName, leaderOf, stoppedGroupOf } from './members.js';

function voteOf(id, statuses) {
  for (const s of statuses) {
    if (s?.voters?.includes(id)) return 'voter';
    if (s?.learners?.includes(id)) return 'learner';
  }
  return '—';
}

function healthOf(m) {
  if (m.error !== null)
    return el('span', { class: 'bad', title: m.error }, `down: ${clip(m.error, 32)}`);
  const s = m.view?.status;
  if (s === undefined) return el('span', { class: 'warn' }, 'waiting for its first answer');
  const stopped = s.stoppedGroups ?? [];
  if (stopped.length > 0)
    return el(
      'span',
      { class: 'bad', title: stopped.map((g) => `group ${g.group}: ${g.error}`).join('\n') },
      `stopped: disk failed (group ${stopped.map((g) => g.group).join(', ')}); restart it`,
    );
  if (s.recovering) return el('span', { class: 'warn' }, 'recovering lost data');
  if (s.role === 'candidate' || s.role === 'pre-candidate')
    return el('span', { class: 'warn' }, 'campaigning');
  if (s.leader === 0) return el('span', { class: 'warn' }, 'no leader known');
  // An election timeout is 150 to 300 ms by default: a second of silence is a cut-off member.
  if (s.role !== 'leader' && m.view.leaderContactAgoMs !== null && m.view.leaderContactAgoMs > 1000)
    return el('span', { class: 'warn' }, 'not hearing from the leader');
  if (s.applied < s.commit)
    return el('span', { class: 'warn' }, `applying (${s.commit - s.applied} behind)`);
  return el('span', { class: 'ok' }, 'healthy');
}

function lagOf(m, leader) {
  const s = m.view?.status;
  if (s === undefined || leader === null) return '—';
  if (m.id === leader.id) return '0';
  const r = leader.view.status.replication?.find((x) => x.id === m.id);
  if (r !== undefined) return String(r.lag);
  return String(Math.max(0, leader.view.status.commit - s.applied));
}

let lastCluster = null;
/** The member that served the page (app.js follows another while it is down). */
let homeId = null;

export function setHomeMember(id) {
  homeId = id;
}

/**
 * A member's row. A member that does not answer shows as down and nothing else: its last
 * report (role, term, progress) is stale, and a dead leader must not look like one.
 */
function memberRow(m, c, leader, statuses) {
  const down = m.error !== null;
  const s = down ? undefined : m.view?.status;
  const isLeader = leader !== null && m.id === leader.id;
  const q = s?.queueGroup;
  return el(
    'tr',
    { 'data-id': m.id, class: isLeader ? 'leader' : down ? 'down' : '' },
    el(
      'td',
      {},
      `node ${m.id}`,
      m.id === homeId ? ' (served this page)' : '',
      m.id === c.self && m.id !== homeId ? ' (reading from)' : '',
      el('br'),
      el('small', {}, m.client),
    ),
    el(
      'td',
      { class: isLeader ? 'role-leader' : down ? 'role-down' : '' },
      down
        ? 'down'
        : s === undefined
          ? '—'
          : isLeader
            ? '★ leader'
            : stoppedGroupOf(s, 0)
              ? 'stopped'
              : s.role,
    ),
    el('td', {}, s?.term ?? '—'),
    el('td', {}, s?.commit ?? '—'),
    el('td', {}, s?.applied ?? '—'),
    el('td', {}, down ? '—' : lagOf(m, leader)),
    el('td', {}, voteOf(m.id, statuses)),
    el('td', { class: 'health' }, healthOf(m)),
    el(
      'td',
      {},
      s?.role === 'leader' ? 'it leads' : s === undefined ? '—' : ago(m.view.leaderContactAgoMs),
    ),
    el('td', {}, q === undefined ? '—' : `${q.role}, term ${q.term}`),
  );
}

export function renderCluster(c) {
  lastCluster = c;
  const leader = leaderOf(c);
  // Who votes, as the members that answer say (a down member's last word may be stale).
  const answering = c.members.filter((m) => m.error === null && m.view !== null);
  // A member the node has only just asked (the first view a node sends when a page connects)
  // has neither answered nor failed: until it does, no leader is not known to be none.
  const awaited = c.members.filter((m) => m.error === null && m.view === null).length;
  const statuses = [leader?.view?.status, ...answering.map((m) => m.view?.status)];
  const rows = [...c.members]
    .sort((a, b) => a.id - b.id)
    .map((m) => memberRow(m, c, leader, statuses));
  fill($('members').tBodies[0], rows);
  $('summary').textContent =
    (leader !== null
      ? `Leader: node ${leader.id} · term ${leader.view.status.term}`
      : awaited > 0
        ? 'Leader: not known yet'
        : 'No leader') +
    ` · ${answering.length} of ${c.members.length} members answering` +
    (awaited > 0 ? `, ${awaited} not heard from yet` : '');
  renderReplication(c, leader);
}

const kindText = {
  'become-pre-candidate': 'pre-campaign',
  'become-candidate': 'campaign',
  'become-leader': 'became leader',
  'become-follower': 'became follower',
  'step-down': 'stepped down',
  'leader-changed': 'leader changed',
  'transfer-started': 'transfer started',
  'transfer-handed-off': 'transfer handed off',
  'transfer-aborted': 'transfer aborted',
  'recovery-started': 'recovery started',
  'recovery-finished': 'recovery finished',
  'follower-lost-log': 'follower lost its log',
  'conf-applied': 'membership changed',
  'campaign-deferred': 'campaign deferred',
};

export function renderTimeline(entries) {
  const items = [...entries]
    .reverse()
    .map((e) =>
      el(
        'li',
        { class: `k-${e.kind}`, 'data-group': e.group },
        el('time', { datetime: new Date(e.atMs).toISOString() }, clock(e.atMs)),
        el('span', {}, `node ${e.node}`),
        el('span', { class: 'group' }, groupName(e.group)),
        el('span', { class: 'what' }, kindText[e.kind] ?? e.kind),
        el('span', {}, `term ${e.term}`),
        el(
          'span',
          { class: 'reason' },
          e.reason,
          e.count > 1 ? ` (×${e.count}, the last at ${clock(e.lastMs)})` : '',
        ),
      ),
    );
  if (items.length === 0) items.push(el('li', { class: 'empty' }, 'Nothing yet.'));
  fill($('timeline'), items);
}

function renderReplication(c, leader) {
  $('repl-leader').textContent = leader === null ? 'the leader (none now)' : `node ${leader.id}`;
  const status = leader?.view?.status;
  // The leader's progress of a follower that died while nothing was written stays
  // "replicate": the members that do not answer say it is down.
  const down = new Map(c.members.filter((m) => m.error !== null).map((m) => [m.id, m.error]));
  const rows = (status?.replication ?? []).map((r) =>
    el(
      'tr',
      { 'data-id': r.id, class: down.has(r.id) ? 'down' : '' },
      el('td', {}, `node ${r.id}`),
      down.has(r.id)
        ? el('td', { class: 'bad', title: down.get(r.id) }, `${r.state}, but down`)
        : el('td', { class: r.state === 'replicate' ? 'ok' : 'warn' }, r.state),
      el('td', {}, r.match),
      el('td', {}, r.lag),
      el('td', {}, leader.view.inflight?.[r.id] ?? 0),
      el('td', {}, r.learner ? 'learner' : 'voter'),
    ),
  );
  if (rows.length === 0)
    rows.push(el('tr', {}, el('td', { colspan: 6, class: 'empty' }, 'No leader, or no follower.')));
  fill($('followers').tBodies[0], rows);
  const transfers = [];
  for (const m of c.members.filter((x) => x.error === null))
    for (const t of m.view?.status?.snapshotTransfers ?? []) {
      const pct = t.totalBytes > 0 ? Math.round((100 * t.bytesDone) / t.totalBytes) : 0;
      transfers.push(
        el(
          'li',
          {},
          el(
            'span',
            {},
            `${t.direction === 'send' ? `node ${m.id} → node ${t.peer}` : `node ${t.peer} → node ${m.id}`}, ` +
              `${groupName(t.group)} snapshot at ${t.index}`,
          ),
          el('progress', { max: t.totalBytes || 1, value: t.bytesDone, 'aria-label': `${pct}%` }),
          el(
            'span',
            {},
            `${bytes(t.bytesDone)} of ${bytes(t.totalBytes)} (${pct}%), ${bytes(t.bytesPerSec)}/s`,
          ),
        ),
      );
    }
  if (transfers.length === 0) transfers.push(el('li', { class: 'empty' }, 'None in progress.'));
  fill($('transfers'), transfers);
}

let samples = [];

export function renderSamples(list) {
  samples = list.slice(-300);
  drawCharts();
}

export function addSample(s) {
  samples.push(s);
  if (samples.length > 300) samples.shift();
  drawCharts();
}

function drawCharts() {
  if ($('tab-replication').hidden) return;
  const times = samples.map((s) => s.atMs);
  legend(
    $('chart-rate-text'),
    drawChart(
      $('chart-rate'),
      times,
      [
        { label: 'writes', values: samples.map((s) => s.writes) },
        { label: 'reads', values: samples.map((s) => s.reads) },
        { label: 'entries applied', values: samples.map((s) => s.applied) },
      ],
      '/s',
    ),
  );
  legend(
    $('chart-latency-text'),
    drawChart(
      $('chart-latency'),
      times,
      [
        { label: 'p50', values: samples.map((s) => s.writeP50Ms) },
        { label: 'p99', values: samples.map((s) => s.writeP99Ms) },
      ],
      ' ms',
    ),
  );
}

// A hidden canvas has no size: draw when the tab is shown, and when the window is resized.
window.addEventListener('hashchange', () => setTimeout(drawCharts, 0));
window.addEventListener('resize', () => drawCharts());
export function currentCluster() {
  return lastCluster;
}
