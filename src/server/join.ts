// Joining a running cluster (`flotilla start --join URL`): a node with an empty data directory
// asks any member to add it as a learner (the member forwards the request to the leader), and
// takes from the answer what a bootstrapped node has in its configuration: the cluster id, the
// cluster's initial members (the configuration its log starts from) and everyone's addresses.
//
// The bootstrap member of a cluster deployed from one template (a StatefulSet, a compose file)
// is given the join URLs too, so that it finds the cluster again when its volume is lost; it
// starts a new cluster only when no member at those URLs answered at all for a while.

import { Agent, request, type buildConnector } from 'undici';
import type { Logger } from 'pino';
import { FlotillaError, isErrorCode } from '../base/errors.js';
import type { Clock } from '../host/contracts.js';
import type { Member } from './config.js';
import { joinClusterHeader } from '../api/member-routes.js';
import { memberHeader } from './member-pool.js';
import { throwIfStopping } from './startup.js';

/** What the cluster answers a join with (POST /v1/cluster/join). */
export interface JoinAnswer {
  readonly clusterId: string;
  /** The cluster's initial voters: the configuration its log starts from. */
  readonly initialMembers: readonly number[];
  /** Every member's addresses as the leader knows them, this node's included. */
  readonly book: readonly Member[];
  /** This id is a voter that held a log: the node lost it and must recover (absent: false). */
  readonly recover: boolean;
}

/** Codes after which another attempt (elsewhere, or later) may succeed. */
const retryable = new Set([
  'NOT_LEADER',
  'NO_LEADER',
  'TIMEOUT',
  'FORWARD_FAILED',
  'LEADERSHIP_LOST',
  'MEMBERSHIP_CHANGE_PENDING',
  'MEMBERSHIP_JOINT_UNRESOLVED',
  'SHUTTING_DOWN',
  'OVERLOADED',
]);

export interface JoinOptions {
  readonly clock: Clock;
  readonly timeoutMs: number;
  readonly log: Logger;
  /**
   * Set on the bootstrap member: when no member at the URLs has answered anything (only
   * refused connections, unknown names, timeouts) for this long, give up and answer
   * `'bootstrap'`. Any answer, even a refusal, shows a cluster exists: then never.
   */
  readonly bootstrapAfterMs?: number;
  /** Headers every attempt carries: the node's own credential when authentication is on. */
  readonly headers?: Readonly<Record<string, string>>;
  /** Dials the members over TLS with the cluster's CA (node-tls.ts); omitted: plain. */
  readonly connect?: buildConnector.connector;
  /** Aborted when the process is asked to stop: joining ends with SHUTTING_DOWN. */
  readonly signal?: AbortSignal;
  /**
   * The cluster this node's configuration names (absent: it follows the cluster it reaches):
   * a member of another cluster refuses the join, MEMBERSHIP_WRONG_CLUSTER.
   */
  readonly clusterId?: string;
}

/**
 * Asks the members at `urls` in turn to add `self` until one succeeds, a refusal is definite
 * (an id in use or removed: MEMBERSHIP_ALREADY_MEMBER, MEMBER_REMOVED), or `timeoutMs` passed.
 * This node's own client URL is skipped, so every member can be given the same list.
 */
export async function joinCluster(
  self: Member,
  given: readonly string[],
  o: JoinOptions,
): Promise<JoinAnswer | 'bootstrap'> {
  const dispatcher = o.connect === undefined ? undefined : new Agent({ connect: o.connect });
  try {
    return await attemptJoins(self, given, o, dispatcher);
  } finally {
    await dispatcher?.close();
  }
}

async function attemptJoins(
  self: Member,
  given: readonly string[],
  o: JoinOptions,
  dispatcher: Agent | undefined,
): Promise<JoinAnswer | 'bootstrap'> {
  const started = o.clock.nowMs();
  const until = started + o.timeoutMs;
  const urls = given.filter((u) => u !== self.client);
  let answered = false;
  let last: Error = new Error('no member to ask but this node itself');
  for (let attempt = 0; urls.length > 0 && o.clock.nowMs() < until; attempt++) {
    throwIfStopping(o.signal, o.log);
    const url = urls[attempt % urls.length] as string;
    try {
      const res = await request(`${url}/v1/cluster/join`, {
        method: 'POST',
        headers: {
          ...o.headers,
          'content-type': 'application/json',
          [memberHeader]: String(self.id),
          ...(o.clusterId === undefined ? {} : { [joinClusterHeader]: o.clusterId }),
        },
        body: JSON.stringify({ id: self.id, peer: self.peer, client: self.client }),
        headersTimeout: 15_000,
        bodyTimeout: 15_000,
        ...(o.signal === undefined ? {} : { signal: o.signal }),
        ...(dispatcher === undefined ? {} : { dispatcher }),
      });
      answered = true;
      const json = (await res.body.json()) as Record<string, unknown>;
      if (res.statusCode === 200) return parseJoinAnswer(json);
      const e = (json['error'] ?? {}) as { code?: unknown; message?: unknown };
      const code = typeof e.code === 'string' ? e.code : '';
      const message = typeof e.message === 'string' ? e.message : `HTTP ${res.statusCode}`;
      const err = new FlotillaError(
        isErrorCode(code) ? code : 'INTERNAL',
        `Joining through ${url} was refused: ${message}`,
        false,
      );
      if (!retryable.has(code)) throw err;
      last = err;
    } catch (err) {
      throwIfStopping(o.signal, o.log);
      if (err instanceof FlotillaError && !retryable.has(err.code)) throw err;
      last = err as Error;
    }
    if (
      !answered &&
      o.bootstrapAfterMs !== undefined &&
      o.clock.nowMs() - started >= o.bootstrapAfterMs
    ) {
      o.log.warn(
        { urls, waitedMs: o.clock.nowMs() - started },
        'no member answered: this is the bootstrap member, starting a new cluster',
      );
      return 'bootstrap';
    }
    o.log.warn({ url, err: last.message }, 'join attempt failed; trying again');
    await pause(o, 500);
  }
  throwIfStopping(o.signal, o.log);
  if (urls.length === 0 && o.bootstrapAfterMs !== undefined) return 'bootstrap';
  throw new FlotillaError(
    'TIMEOUT',
    `Could not join the cluster through ${urls.join(', ')} within ${o.timeoutMs} ms: ${last.message}`,
    true,
  );
}

function parseJoinAnswer(v: Record<string, unknown>): JoinAnswer {
  const { clusterId, initialMembers, book, recover } = v;
  const bad = (what: string): Error =>
    new FlotillaError('INTERNAL', `The join answer is malformed: ${what}`);
  if (typeof clusterId !== 'string') throw bad('clusterId');
  if (!Array.isArray(initialMembers) || !initialMembers.every((m) => Number.isSafeInteger(m)))
    throw bad('initialMembers');
  if (
    !Array.isArray(book) ||
    !book.every(
      (m: Partial<Member> | null) =>
        m !== null &&
        typeof m === 'object' &&
        Number.isSafeInteger(m.id) &&
        typeof m.peer === 'string' &&
        typeof m.client === 'string',
    )
  )
    throw bad('book');
  // Absent in the answers of releases that did not say it.
  if (recover !== undefined && typeof recover !== 'boolean') throw bad('recover');
  return {
    clusterId,
    initialMembers: initialMembers as number[],
    book: book as Member[],
    recover: recover === true,
  };
}

/** Waits `ms` on the clock, or less if the process is asked to stop. */
async function pause(o: JoinOptions, ms: number): Promise<void> {
  const { signal } = o;
  if (signal?.aborted === true) return;
  await new Promise<void>((resolve) => {
    const done = (): void => {
      signal?.removeEventListener('abort', done);
      resolve();
    };
    o.clock.setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}
