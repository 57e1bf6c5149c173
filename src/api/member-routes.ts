// The membership endpoints (docs/API.md, "Membership"): list the members, add a voter or a
// learner, promote a learner, remove a member, join (what `flotilla start --join` asks), and
// the notice a removed member receives. Every change is forwarded to the key-value group's
// leader, which proposes it; the list too, so that it shows the leader's view of replication.

import { FlotillaError } from '../base/errors.js';
import { parseHostPort } from '../base/host-port.js';
import type { JsonHttpServer } from './http.js';
import { forwarded } from './routes.js';
import type { JoinResponse, MembersResponse } from './types.js';
import { asObject, onlyFields, optInt, reqString, type Obj } from './validate.js';

export interface NewMember {
  readonly id: number;
  readonly peer: string;
  readonly client: string;
}

export interface MemberBackend {
  forward(
    path: string,
    rawBody: string,
    signal: AbortSignal,
    authorization?: string,
  ): Promise<{ status: number; json: unknown } | null>;
  list(): MembersResponse;
  add(
    m: NewMember,
    o: { learner: boolean; autoPromote: boolean; signal: AbortSignal },
  ): Promise<MembersResponse>;
  promote(id: number, signal: AbortSignal): Promise<MembersResponse>;
  /** `force`: even when it still holds replicas of ranges (refused MEMBER_HOLDS_RANGES else). */
  remove(id: number, signal: AbortSignal, force: boolean): Promise<MembersResponse>;
  join(m: NewMember, signal: AbortSignal): Promise<JoinResponse>;
  /** The cluster says this node was removed: it marks its data directory and stops. */
  removed(clusterId: string, id: number): void;
  /** The id of the cluster this node belongs to. */
  readonly clusterId: string;
}

/**
 * Sent with a join by a node whose configuration names its cluster: a member of another
 * cluster refuses the join before it adds anything (every member checks it, before it
 * forwards to the leader). A header, not a body field: a member of an older release ignores
 * it, where it would refuse an unknown field.
 */
export const joinClusterHeader = 'x-flotilla-cluster';

export const memberPaths = {
  list: '/v1/cluster/members/list',
  add: '/v1/cluster/members/add',
  addLearner: '/v1/cluster/members/add-learner',
  promote: '/v1/cluster/members/promote',
  remove: '/v1/cluster/members/remove',
  join: '/v1/cluster/join',
  removed: '/v1/cluster/removed',
} as const;

const maxId = 2 ** 31;

function memberId(o: Obj): number {
  const id = optInt(o, 'id', 1, maxId);
  if (id === undefined)
    throw new FlotillaError('BAD_REQUEST', `"id" (a member id in [1, ${maxId}]) is required`);
  return id;
}

/** A new member's id and addresses, checked as a node's configuration checks them. */
export function parseNewMember(body: unknown): NewMember {
  const o = asObject(body);
  onlyFields(o, ['id', 'peer', 'client']);
  const id = memberId(o);
  const peer = reqString(o, 'peer');
  if (parseHostPort(peer, 1) === null)
    throw new FlotillaError(
      'BAD_REQUEST',
      `"peer" must be host:port (an IPv6 host in brackets, a port from 1 to 65535), got ${JSON.stringify(peer)}`,
    );
  const raw = reqString(o, 'client');
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new FlotillaError('BAD_REQUEST', `"client" must be a URL, got ${JSON.stringify(raw)}`);
  }
  if (url.protocol !== 'http:' && url.protocol !== 'https:')
    throw new FlotillaError('BAD_REQUEST', `"client" must be an http(s) URL, got ${raw}`);
  return { id, peer, client: raw.replace(/\/$/, '') };
}

export function installMemberRoutes(http: JsonHttpServer, b: MemberBackend): void {
  const leaderRoute = (
    path: string,
    handle: (body: unknown, signal: AbortSignal) => unknown,
  ): void => {
    http.route('POST', path, async ({ body, rawBody, signal, headers }) => {
      const fwd = await forwarded(b, path, rawBody, signal, headers);
      if (fwd !== null) return fwd;
      return { json: await handle(body, signal) };
    });
  };
  leaderRoute(memberPaths.list, (body) => {
    onlyFields(asObject(body), []);
    return b.list();
  });
  leaderRoute(memberPaths.add, (body, signal) =>
    b.add(parseNewMember(body), { learner: false, autoPromote: false, signal }),
  );
  leaderRoute(memberPaths.addLearner, (body, signal) =>
    b.add(parseNewMember(body), { learner: true, autoPromote: false, signal }),
  );
  http.route('POST', memberPaths.join, async ({ body, rawBody, signal, headers }) => {
    const asked = headers[joinClusterHeader];
    if (typeof asked === 'string' && asked !== b.clusterId)
      throw new FlotillaError(
        'MEMBERSHIP_WRONG_CLUSTER',
        `This is cluster ${JSON.stringify(b.clusterId)}; the joining node's clusterId is ` +
          `${JSON.stringify(asked)}. Nothing was added: fix its join URLs or its clusterId`,
      );
    const fwd = await forwarded(b, memberPaths.join, rawBody, signal, headers);
    if (fwd !== null) return fwd;
    return { json: await b.join(parseNewMember(body), signal) };
  });
  leaderRoute(memberPaths.promote, (body, signal) => {
    const o = asObject(body);
    onlyFields(o, ['id']);
    return b.promote(memberId(o), signal);
  });
  leaderRoute(memberPaths.remove, (body, signal) => {
    const o = asObject(body);
    onlyFields(o, ['id', 'force']);
    const force = o['force'] ?? false;
    if (typeof force !== 'boolean')
      throw new FlotillaError(
        'BAD_REQUEST',
        `"force" must be true or false, got ${JSON.stringify(force)}`,
      );
    return b.remove(memberId(o), signal, force);
  });
  http.route('POST', memberPaths.removed, ({ body }) => {
    const o = asObject(body);
    onlyFields(o, ['clusterId', 'id']);
    b.removed(reqString(o, 'clusterId'), memberId(o));
    return { json: { ok: true } };
  });
}
