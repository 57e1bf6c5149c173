// The task board's state and rules, all of it in Flotilla. A task is one key,
// `board/tasks/<id>`, whose value is the task as JSON; `board/next` holds the next task number.
//
// What each operation takes from the client:
// - every write (put, txn) carries the client's exactly-once session, so a write retried after
//   the leader died is applied once, never twice;
// - every read is linearizable (the client's default): a page loaded after a write sees it;
// - adding a task is a transaction on `board/next`: two users adding at once cannot both take
//   the same number, nor push the board past its size limit;
// - claiming is a transaction on the task's modification revision: of two users claiming the
//   same task at once exactly one wins, and the other is told who did.

import type { FlotillaClient, KeyValue, WatchBatch } from 'flotilla/client';

export const taskPrefix = 'board/tasks/';
const nextKey = 'board/next';

export const limits = {
  titleCharsMax: 200,
  nameCharsMax: 40,
  tasksMax: 50,
  /** Attempts of a transaction that lost a race to another writer before giving up. */
  conflictAttemptsMax: 8,
} as const;

export interface Task {
  readonly id: string;
  readonly title: string;
  readonly createdBy: string;
  readonly createdAtMs: number;
  readonly claimedBy: string | null;
  readonly done: boolean;
}

/** What the page shows for each answer: which member of the cluster served it. */
export interface Served {
  readonly revision: number;
  readonly member: number;
}

/** One member as the board's server last saw it. */
export interface MemberState {
  readonly endpoint: string;
  /** Its id, once it answered; 0 while it never has. */
  readonly id: number;
  readonly role: 'leader' | 'follower' | 'candidate' | 'down';
}

/** A refused request, with a stable code the page shows beside the message. */
export class BoardError extends Error {
  override readonly name = 'BoardError';
  constructor(
    readonly code:
      | 'BAD_REQUEST'
      | 'NAME_INVALID'
      | 'TITLE_INVALID'
      | 'BOARD_FULL'
      | 'TASK_NOT_FOUND'
      | 'NOT_CLAIMER'
      | 'BUSY',
    message: string,
    readonly status = 400,
  ) {
    super(message);
  }
}

/** A name or title: trimmed, 1..max characters, no control characters. */
function text(value: unknown, what: 'name' | 'title', max: number): string {
  const code = what === 'name' ? 'NAME_INVALID' : 'TITLE_INVALID';
  if (typeof value !== 'string') throw new BoardError(code, `The ${what} must be a string`);
  const t = value.trim();
  if (t.length === 0) throw new BoardError(code, `The ${what} is empty`);
  if ([...t].length > max)
    throw new BoardError(code, `The ${what} has ${[...t].length} characters; at most ${max}`);

  if (/[\u0000-\u001f\u007f]/.test(t))
    throw new BoardError(code, `The ${what} contains a control character`);
  return t;
}

export const userName = (v: unknown): string => text(v, 'name', limits.nameCharsMax);
export const taskTitle = (v: unknown): string => text(v, 'title', limits.titleCharsMax);

export function taskId(v: unknown): string {
  if (typeof v !== 'string' || !/^t\d{6}$/.test(v))
    throw new BoardError(
      'BAD_REQUEST',
      `A task id is "t" and six digits, got ${JSON.stringify(v)}`,
    );
  return v;
}

/** The task a key holds; null for a value this board did not write. */
export function parseTask(kv: KeyValue): Task | null {
  try {
    const t = JSON.parse(kv.value) as Partial<Task>;
    if (typeof t.id !== 'string' || typeof t.title !== 'string') return null;
    return {
      id: t.id,
      title: t.title,
      createdBy: typeof t.createdBy === 'string' ? t.createdBy : '?',
      createdAtMs: typeof t.createdAtMs === 'number' ? t.createdAtMs : 0,
      claimedBy: typeof t.claimedBy === 'string' ? t.claimedBy : null,
      done: t.done === true,
    };
  } catch {
    return null;
  }
}

const served = (h: { revision: number; memberId: number }): Served => ({
  revision: h.revision,
  member: h.memberId,
});

export class Board {
  constructor(
    private readonly client: FlotillaClient,
    private readonly now: () => number = Date.now,
  ) {}

  /** Every task, read linearizably, and the revision to follow changes from. */
  async list(signal?: AbortSignal): Promise<Served & { tasks: Task[] }> {
    const r = await this.client.range(taskPrefix, {
      prefix: true,
      limit: limits.tasksMax,
      ...(signal === undefined ? {} : { signal }),
    });
    const tasks = r.kvs.map(parseTask).filter((t): t is Task => t !== null);
    return { ...served(r.header), tasks };
  }

  async add(user: string, title: string): Promise<Served & { task: Task }> {
    for (let attempt = 1; attempt <= limits.conflictAttemptsMax; attempt++) {
      const [next, count] = await Promise.all([
        this.client.get(nextKey),
        this.client.range(taskPrefix, { prefix: true, countOnly: true }),
      ]);
      if (count.count >= limits.tasksMax)
        throw new BoardError(
          'BOARD_FULL',
          `The board holds ${count.count} tasks, its limit; finish or delete one first`,
          409,
        );
      const n = next === null ? 1 : Number(next.value);
      const task: Task = {
        id: `t${String(n).padStart(6, '0')}`,
        title,
        createdBy: user,
        createdAtMs: this.now(),
        claimedBy: null,
        done: false,
      };
      // Unchanged since read: no other add took this number (nor a place under the limit).
      const r = await this.client.txn(
        [{ key: nextKey, target: 'modRevision', op: '=', value: next?.modRevision ?? 0 }],
        [
          { put: { key: nextKey, value: String(n + 1) } },
          { put: { key: taskPrefix + task.id, value: JSON.stringify(task) } },
        ],
      );
      if (r.succeeded) return { ...served(r.header), task };
    }
    throw new BoardError('BUSY', 'Too many tasks were added at once; try again', 503);
  }

  /** Claims a task: exactly one of several users claiming it at once wins. */
  async claim(id: string, user: string): Promise<Served & { won: boolean; task: Task }> {
    for (let attempt = 1; attempt <= limits.conflictAttemptsMax; attempt++) {
      const { kv, task, at } = await this.read(id);
      if (task.claimedBy !== null) return { ...at, won: false, task };
      const claimed: Task = { ...task, claimedBy: user };
      const r = await this.client.txn(
        [{ key: kv.key, target: 'modRevision', op: '=', value: kv.modRevision }],
        [{ put: { key: kv.key, value: JSON.stringify(claimed) } }],
      );
      if (r.succeeded) return { ...served(r.header), won: true, task: claimed };
      // Someone changed it between the read and the transaction: read again, and most likely
      // find their name on it.
    }
    throw new BoardError('BUSY', `Task ${id} changed too often to claim; try again`, 503);
  }

  /** Marks a task done; only the user who claimed it may. */
  async complete(id: string, user: string): Promise<Served & { task: Task }> {
    for (let attempt = 1; attempt <= limits.conflictAttemptsMax; attempt++) {
      const { kv, task } = await this.read(id);
      if (task.claimedBy !== user)
        throw new BoardError(
          'NOT_CLAIMER',
          task.claimedBy === null
            ? `Claim task ${id} before marking it done`
            : `Task ${id} is claimed by ${task.claimedBy}; only they can mark it done`,
          409,
        );
      const finished: Task = { ...task, done: true };
      const r = await this.client.txn(
        [{ key: kv.key, target: 'modRevision', op: '=', value: kv.modRevision }],
        [{ put: { key: kv.key, value: JSON.stringify(finished) } }],
      );
      if (r.succeeded) return { ...served(r.header), task: finished };
    }
    throw new BoardError('BUSY', `Task ${id} changed too often; try again`, 503);
  }

  async remove(id: string): Promise<Served & { deleted: boolean }> {
    const r = await this.client.delete(taskPrefix + id);
    if (r.deleted === 0) throw new BoardError('TASK_NOT_FOUND', `There is no task ${id}`, 404);
    return { ...served(r.header), deleted: true };
  }

  /** The board's changes after `revision`, one batch per revision, across member failures. */
  changes(afterRevision: number, signal: AbortSignal): AsyncGenerator<WatchBatch> {
    return this.client.watch(taskPrefix, {
      prefix: true,
      startRevision: afterRevision + 1,
      progressNotifyMs: 5_000,
      signal,
    });
  }

  /** Asks each member how it is, each within `timeoutMs`; one that does not answer is down. */
  async members(endpoints: readonly string[], timeoutMs: number): Promise<MemberState[]> {
    return Promise.all(
      endpoints.map(async (endpoint): Promise<MemberState> => {
        try {
          const st = await this.client.status(endpoint, { signal: AbortSignal.timeout(timeoutMs) });
          const role = st.role === 'leader' || st.role === 'follower' ? st.role : 'candidate';
          return { endpoint, id: st.id, role };
        } catch {
          return { endpoint, id: 0, role: 'down' };
        }
      }),
    );
  }

  private async read(id: string): Promise<{ kv: KeyValue; task: Task; at: Served }> {
    const r = await this.client.range(taskPrefix + id);
    const kv = r.kvs[0];
    const task = kv === undefined ? null : parseTask(kv);
    if (kv === undefined || task === null)
      throw new BoardError('TASK_NOT_FOUND', `There is no task ${id}`, 404);
    return { kv, task, at: served(r.header) };
  }
}
