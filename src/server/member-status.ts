// What the members say of themselves, asked over their client ports: each one's status for
// `/v1/cluster/status`, and each one's view for the dashboard.

import { dashboardMemberPath, type MemberView } from '../api/dashboard-routes.js';
import { Deadline } from '../api/deadline.js';
import type { ClusterStatus, NodeStatus } from '../api/types.js';
import { memberAuthHeaders } from './auth-tokens.js';
import type { Member, NodeConfig } from './config.js';
import type { MemberPools } from './member-pools.js';
import type { Membership } from './membership.js';

/**
 * How long `/v1/cluster/status` waits for each member's own status. A member under load may
 * take a second to answer (the CLI called it unreachable at 1 s); one that is down answers no
 * sooner for waiting longer, so the cluster status is at most this slow.
 */
const memberStatusWaitMs = 3_000;

/** Asks the members of this node's address book (and those removed) how they are. */
export class MemberStatuses {
  constructor(
    private readonly o: {
      readonly selfId: number;
      readonly auth: NodeConfig['auth'];
      readonly pools: MemberPools;
      readonly membership: Membership;
      /** The address book. */
      readonly book: () => readonly Member[];
      /** This node's own status, not asked over the network. */
      readonly nodeStatus: () => NodeStatus;
      /** The key-value group's leader known here, or 0. */
      readonly leaderId: () => number;
    },
  ) {}

  async clusterStatus(signal: AbortSignal): Promise<ClusterStatus> {
    // A removed member still running (it has not learned yet) is asked too, at its last known
    // address, and said removed: left out, an operator could not see it still runs.
    const removed = this.o.membership.removedMembers();
    const gone = new Set(removed.map((r) => r.id));
    const book = [...this.o.book()];
    const asked = [
      ...book.map((m) => ({ id: m.id, client: m.client })),
      ...removed.flatMap((r) =>
        r.client === null || book.some((m) => m.id === r.id)
          ? []
          : [{ id: r.id, client: r.client }],
      ),
    ];
    const unknown = removed
      .filter((r) => r.client === null && !book.some((m) => m.id === r.id))
      .map((r) => ({
        id: r.id,
        client: '',
        removed: true,
        error: 'its address is no longer known (removed before this node last started)',
      }));
    const answers = await Promise.all(asked.map((m) => this.memberStatus(m, signal)));
    const nodes = answers.map((a) => (gone.has(a.id) ? { ...a, removed: true } : a));
    return { leader: this.o.leaderId(), nodes: [...nodes, ...unknown] };
  }

  /** One member's own status for clusterStatus, or why there is none. */
  private async memberStatus(
    m: { id: number; client: string },
    signal: AbortSignal,
  ): Promise<ClusterStatus['nodes'][number]> {
    if (m.id === this.o.selfId) return { id: m.id, client: m.client, status: this.o.nodeStatus() };
    const deadline = new Deadline(memberStatusWaitMs, signal);
    try {
      const res = await this.o.pools.pool(m.client).request({
        method: 'GET',
        path: '/v1/status',
        headers: memberAuthHeaders(this.o.auth),
        signal: deadline.signal,
      });
      const text = await res.body.text();
      if (res.statusCode !== 200)
        return { id: m.id, client: m.client, error: `HTTP ${res.statusCode}` };
      return { id: m.id, client: m.client, status: JSON.parse(text) as NodeStatus };
    } catch (err) {
      return deadline.timedOut
        ? {
            id: m.id,
            client: m.client,
            error: `no answer within ${memberStatusWaitMs} ms`,
            slow: true,
          }
        : { id: m.id, client: m.client, error: (err as Error).message };
    } finally {
      deadline[Symbol.dispose]();
    }
  }

  /** Another member's view for this node's dashboard feed. */
  async fetchMemberView(
    client: string,
    timelineVersion: number,
    signal: AbortSignal,
  ): Promise<MemberView> {
    const res = await this.o.pools.pool(client).request({
      method: 'GET',
      path: `${dashboardMemberPath}?timelineVersion=${timelineVersion}`,
      headers: memberAuthHeaders(this.o.auth),
      signal,
    });
    const text = await res.body.text();
    if (res.statusCode !== 200) throw new Error(`HTTP ${res.statusCode}`);
    return JSON.parse(text) as MemberView;
  }
}
