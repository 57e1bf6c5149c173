// The Operations tab: leadership transfer, adding and removing members, compaction and a
// backup, each confirmed first, each through the node's public API, each answer shown.

import { $, el, fill } from './util.js';
import { api, authHeaders, confirmAction, describeError, memberUrl } from './api.js';

let memberIds = '';

/** Keeps the member pickers in step with the cluster (rebuilt only when the members change). */
export function renderOpsMembers(c) {
  const ids = c.members.map((m) => m.id).sort((a, b) => a - b);
  const key = ids.join(',');
  if (key === memberIds) return;
  memberIds = key;
  fill($('transfer-to'), [
    el('option', { value: '' }, 'the most caught-up voter'),
    ...ids.map((id) => el('option', { value: id }, `node ${id}`)),
  ]);
  fill(
    $('remove-id'),
    ids.map((id) => el('option', { value: id }, `node ${id}`)),
  );
}

function show(text) {
  $('op-result').textContent = `${new Date().toLocaleTimeString()}  ${text}`;
}

async function run(question, fn) {
  if (!(await confirmAction(question))) {
    show('Cancelled.');
    return;
  }
  show('Working…');
  try {
    show(await fn());
  } catch (err) {
    show(`Refused: ${describeError(err)}`);
  }
}

function onSubmit(id, fn) {
  $(id).addEventListener('submit', (e) => {
    e.preventDefault();
    void fn();
  });
}

async function download() {
  const res = await fetch(memberUrl('/v1/snapshot'), { headers: authHeaders() });
  if (!res.ok) {
    const body = await res.json().catch(() => null);
    throw new Error(
      body?.error ? `${body.error.code}: ${body.error.message}` : `HTTP ${res.status}`,
    );
  }
  const blob = await res.blob();
  const name = `flotilla-${new Date().toISOString().replace(/[:.]/g, '-')}.backup`;
  const url = URL.createObjectURL(blob);
  const a = el('a', { href: url, download: name });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10_000);
  return `Saved ${name} (${blob.size} bytes).`;
}

export function initOps() {
  onSubmit('op-transfer', () => {
    const to = $('transfer-to').value;
    return run(
      `Transfer leadership to ${to === '' ? 'the most caught-up voter' : `node ${to}`}?`,
      async () => {
        await api('/v1/cluster/transfer-leadership', to === '' ? {} : { to: Number(to) });
        return 'Transfer started: the new leader shows on the Cluster tab once elected.';
      },
    );
  });
  onSubmit('op-add', () => {
    const id = Number($('add-id').value);
    const peer = $('add-peer').value.trim();
    const client = $('add-client').value.trim();
    const learner = $('add-learner').checked;
    return run(
      `Add node ${id} (${peer}, ${client}) as a ${learner ? 'learner' : 'voter'}?`,
      async () => {
        const r = await api(`/v1/cluster/members/${learner ? 'add-learner' : 'add'}`, {
          id,
          peer,
          client,
        });
        return `Added. Members now: ${r.members.map((m) => `${m.id} (${m.role})`).join(', ')}. Start it with --join.`;
      },
    );
  });
  onSubmit('op-remove', () => {
    const id = Number($('remove-id').value);
    return run(
      `Remove node ${id} from the cluster for good? Its id can never be used again.`,
      async () => {
        const r = await api('/v1/cluster/members/remove', { id });
        return `Removed. Members now: ${r.members.map((m) => `${m.id} (${m.role})`).join(', ')}.`;
      },
    );
  });
  onSubmit('op-compact', () => {
    const revision = Number($('compact-rev').value);
    return run(
      `Compact the key-value history up to revision ${revision}? Reads below it will be refused.`,
      async () => {
        const r = await api('/v1/kv/compact', { revision });
        return `Compacted up to revision ${r.compacted}.`;
      },
    );
  });
  onSubmit('op-snapshot', () =>
    run('Take a backup of both groups from this node and save it?', download),
  );
}
