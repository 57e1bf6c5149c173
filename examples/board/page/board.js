// The board's page: loads the board (a linearizable read on the server), then follows its
// changes through server-sent events. Everything the users typed goes on the page as text,
// never as markup. Plain JavaScript, no build step, no inline script (the page's policy
// forbids it).

const $ = (id) => document.getElementById(id);
const tasks = new Map();
/** The revision each task (or its deletion) was last seen at: an older answer changes nothing. */
const seenAt = new Map();
let revision = 0;
let source = null;
/** Requests sent and not answered yet: one slower than this shows the waiting state. */
let pending = 0;
const waitingAfterMs = 600;

function setConn(state, text) {
  const el = $('conn');
  el.className = state;
  el.textContent = text;
}

function liveState() {
  if (source !== null && source.readyState === EventSource.OPEN) setConn('live', 'live');
  else setConn('reconnecting', 'reconnecting…');
}

function showError(text) {
  const el = $('error');
  el.textContent = text;
  el.hidden = text === '';
}

function showMessage(text, outcome) {
  const el = $('message');
  el.textContent = text;
  el.dataset.outcome = outcome;
  el.hidden = text === '';
}

function served(r) {
  if (typeof r.member === 'number' && r.member > 0)
    $('member').textContent = `answered by node ${r.member}`;
}

/** One call to the board's API; the answer, or an error already shown on the page. */
async function api(path, body) {
  pending++;
  const slow = setTimeout(() => setConn('waiting', 'waiting for the cluster…'), waitingAfterMs);
  try {
    const res = await fetch(path, {
      method: body === undefined ? 'GET' : 'POST',
      headers: body === undefined ? {} : { 'content-type': 'application/json' },
      body: body === undefined ? undefined : JSON.stringify(body),
    });
    const json = await res.json();
    if (json.error !== undefined) {
      showError(`${json.error.code}: ${json.error.message}`);
      return null;
    }
    showError('');
    served(json);
    return json;
  } catch (err) {
    showError(`The board's server did not answer (${err.message}); trying again may help.`);
    return null;
  } finally {
    clearTimeout(slow);
    pending--;
    if (pending === 0) liveState();
  }
}

/** Applies a task seen at revision `rev` (null: deleted), unless something newer was seen. */
function apply(id, task, rev) {
  if ((seenAt.get(id) ?? 0) > rev) return;
  seenAt.set(id, rev);
  if (task === null) tasks.delete(id);
  else tasks.set(id, task);
}

function showMembers(members) {
  $('members').replaceChildren(
    ...members.map((m, i) => {
      const li = document.createElement('li');
      li.className = m.role;
      li.dataset.role = m.role;
      li.textContent = `${m.id > 0 ? `node ${m.id}` : `member ${i + 1}`}: ${m.role}`;
      return li;
    }),
  );
}

function userName() {
  return $('name').value.trim();
}

function render() {
  const list = $('tasks');
  const me = userName();
  const items = [...tasks.values()].sort((a, b) => (a.id < b.id ? -1 : 1));
  list.replaceChildren(
    ...items.map((t) => {
      const li = document.createElement('li');
      li.dataset.id = t.id;
      li.className = t.done ? 'done' : t.claimedBy === null ? 'open' : 'claimed';
      const title = document.createElement('span');
      title.className = 'title';
      title.textContent = t.title;
      const meta = document.createElement('span');
      meta.className = 'meta';
      meta.textContent = `${t.id} · added by ${t.createdBy}`;
      const state = document.createElement('span');
      state.className = 'state';
      state.textContent = t.done
        ? `done by ${t.claimedBy}`
        : t.claimedBy === null
          ? 'open'
          : `claimed by ${t.claimedBy}`;
      if (t.claimedBy !== null) state.dataset.claimedBy = t.claimedBy;
      li.append(title, meta, state);
      if (t.claimedBy === null) li.append(button('Claim', 'claim', t.id));
      if (!t.done && t.claimedBy === me) li.append(button('Done', 'done', t.id));
      li.append(button('Delete', 'delete', t.id));
      return li;
    }),
  );
  $('count').textContent = `${tasks.size} task${tasks.size === 1 ? '' : 's'} (at most 50)`;
  $('revision').textContent = `revision ${revision}`;
}

function button(label, action, id) {
  const b = document.createElement('button');
  b.type = 'button';
  b.textContent = label;
  b.dataset.action = action;
  b.dataset.id = id;
  return b;
}

async function load() {
  const r = await api('/api/board');
  if (r === null) {
    setTimeout(() => void load(), 1000);
    return;
  }
  tasks.clear();
  seenAt.clear();
  for (const t of r.tasks) apply(t.id, t, r.revision);
  revision = r.revision;
  render();
  follow(r.revision);
}

/**
 * Follows the board from `after`. When the stream breaks the browser reconnects by itself
 * and sends the last event id it saw, so the server resumes after that revision.
 */
function follow(after) {
  if (source !== null) source.close();
  source = new EventSource(`/api/events?after=${after}`);
  source.addEventListener('open', liveState);
  source.addEventListener('error', liveState);
  source.addEventListener('change', (e) => {
    const batch = JSON.parse(e.data);
    for (const c of batch.changes) apply(c.id, c.task, batch.revision);
    revision = batch.revision;
    render();
  });
  source.addEventListener('progress', (e) => {
    revision = Math.max(revision, Number(e.lastEventId));
    $('revision').textContent = `revision ${revision}`;
  });
  source.addEventListener('members', (e) => showMembers(JSON.parse(e.data).members));
  // The changes since our revision are gone from the cluster's history: load afresh.
  source.addEventListener('reload', () => {
    source.close();
    source = null;
    void load();
  });
}

async function act(action, id) {
  const user = userName();
  if (action === 'delete') {
    const r = await api('/api/tasks/delete', { id });
    if (r === null) return;
    apply(id, null, r.revision);
    render();
    showMessage(`Deleted ${id}.`, 'deleted');
    return;
  }
  const r = await api(`/api/tasks/${action}`, { id, user });
  if (r === null) return;
  // This page shows its own change at once; the others learn of it through the event stream.
  apply(id, r.task, r.revision);
  render();
  if (action === 'claim')
    showMessage(
      r.won ? `You claimed ${id}.` : `${id} was already claimed by ${r.task.claimedBy}.`,
      r.won ? 'won' : 'lost',
    );
  else showMessage(`${id} is done.`, 'done');
}

function start() {
  const saved = localStorage.getItem('board.name');
  $('name').value = saved ?? `guest-${Math.floor(Math.random() * 9000 + 1000)}`;
  $('name').addEventListener('input', () => {
    localStorage.setItem('board.name', userName());
    render();
  });
  $('add-form').addEventListener('submit', (e) => {
    e.preventDefault();
    const title = $('title').value;
    void api('/api/tasks', { user: userName(), title }).then((r) => {
      if (r === null) return;
      apply(r.task.id, r.task, r.revision);
      render();
      $('title').value = '';
      showMessage(`Added ${r.task.id}.`, 'added');
    });
  });
  $('tasks').addEventListener('click', (e) => {
    const b = e.target.closest('button[data-action]');
    if (b !== null) void act(b.dataset.action, b.dataset.id);
  });
  void load();
}

start();
