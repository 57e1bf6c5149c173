// Valid request bodies of the client API (docs/API.md), the seeds of structured mutation for
// both client protocols: the HTTP API takes them as JSON bodies, the binary protocol as the
// body of `[id, type, body]`.
//
// What a valid body may do is bounded, so that a million of them keep the node serving and
// its memory bounded: keys and queue names come from small sets (the store's history is
// bounded by compaction; a job added keeps a pinned id, so adds of it are deduplicated and
// the queue holds few jobs), no claim waits (`waitMs` would hold an
// input for up to 30 s), no repeatable fires every few milliseconds (`everyMs`), and the
// membership bodies keep one flaw that no mutation removes (`pinned`): a body that added a
// voter would be a valid request that leaves a one-node cluster without a quorum.

import type { JsonValue } from './gen.js';

export interface BodyTemplate {
  /** The HTTP path; the binary type is derived from it (wireType). */
  readonly path: string;
  readonly body: JsonValue;
  /** Fields no mutation changes or removes. */
  readonly pinned?: readonly string[];
  /** Not served by the binary protocol (cluster administration is HTTP only). */
  readonly httpOnly?: true;
}

const put = { key: 'fz/a', value: 'v' };
export const bodyTemplates: readonly BodyTemplate[] = [
  { path: '/v1/kv/put', body: put },
  { path: '/v1/kv/put', body: { ...put, prevKv: true, clientId: 'fz', seq: 1, encoding: 'utf8' } },
  { path: '/v1/kv/put', body: { key: 'Znova', value: 'dg==', encoding: 'base64' } },
  { path: '/v1/kv/range', body: { key: 'fz/', prefix: true, limit: 10 } },
  { path: '/v1/kv/range', body: { key: 'fz/a', rangeEnd: 'fz/z', countOnly: true } },
  { path: '/v1/kv/range', body: { key: 'fz/a', serializable: true, revision: 1 } },
  { path: '/v1/kv/range', body: { key: 'fz/a', consistency: 'lease' } },
  { path: '/v1/kv/delete', body: { key: 'fz/b', prevKv: true } },
  { path: '/v1/kv/delete', body: { key: 'fz/', prefix: true, clientId: 'fz', seq: 2 } },
  {
    path: '/v1/kv/txn',
    body: {
      compare: [{ key: 'fz/a', target: 'value', op: '=', value: 'v' }],
      success: [{ put: { key: 'fz/b', value: 'w' } }, { range: { key: 'fz/a' } }],
      failure: [{ delete: { key: 'fz/b' } }],
    },
  },
  {
    path: '/v1/kv/txn',
    body: {
      compare: [{ key: 'fz/c', target: 'version', op: '>', value: 0 }],
      success: [],
      failure: [{ put: { key: 'fz/c', value: 'x', lease: 7 } }],
    },
  },
  { path: '/v1/kv/compact', body: { revision: 1 }, httpOnly: true },
  { path: '/v1/watch', body: { key: 'fz/', prefix: true, prevKv: true, progressNotifyMs: 1000 } },
  { path: '/v1/lease/grant', body: { ttl: 60 }, httpOnly: true },
  { path: '/v1/lease/revoke', body: { id: 7 }, httpOnly: true },
  { path: '/v1/lease/keepalive', body: { id: 7 }, httpOnly: true },
  { path: '/v1/lease/timetolive', body: { id: 7, keys: true }, httpOnly: true },
  { path: '/v1/lease/leases', body: {}, httpOnly: true },
  {
    path: '/v1/queue/add',
    body: { queue: 'fz', name: 'job', id: 'j2', data: { n: 1 }, priority: 1 },
    pinned: ['id'],
  },
  {
    path: '/v1/queue/add-bulk',
    body: {
      queue: 'fz',
      jobs: [
        { name: 'a', id: 'j1', delayMs: 10 },
        { name: 'b', id: 'j3' },
      ],
    },
    pinned: ['id'],
  },
  { path: '/v1/queue/claim', body: { queue: 'fz', max: 2, worker: 'w', leaseMs: 1000 } },
  { path: '/v1/queue/heartbeat', body: { queue: 'fz', id: 'j1', token: 3 } },
  { path: '/v1/queue/progress', body: { queue: 'fz', id: 'j1', token: 3, progress: 50 } },
  {
    path: '/v1/queue/complete',
    body: { queue: 'fz', id: 'j1', token: 3, result: [1], next: { max: 1 } },
  },
  { path: '/v1/queue/fail', body: { queue: 'fz', id: 'j1', token: 3, error: 'e', final: true } },
  { path: '/v1/queue/cancel', body: { queue: 'fz', id: 'j1' } },
  { path: '/v1/queue/retry', body: { queue: 'fz', id: 'j1' } },
  { path: '/v1/queue/delete', body: { queue: 'fz', id: 'j1' } },
  { path: '/v1/queue/pause', body: { queue: 'fz' } },
  { path: '/v1/queue/resume', body: { queue: 'fz' } },
  {
    path: '/v1/queue/configure',
    body: { queue: 'fz', rateLimit: { max: 10, intervalMs: 1000 }, keepDead: { count: 5 } },
  },
  { path: '/v1/queue/stats', body: { queue: 'fz' } },
  { path: '/v1/queue/get', body: { queue: 'fz', id: 'j1' } },
  { path: '/v1/queue/list', body: { queue: 'fz', state: 'waiting', limit: 5 } },
  { path: '/v1/queue/events', body: { queue: 'fz', after: { index: 1, seq: 0 }, limit: 5 } },
  {
    path: '/v1/queue/repeat/upsert',
    body: { queue: 'fz', repeatId: 'r', cron: '0 7 * * *', name: 'd', backoff: { kind: 'fixed' } },
  },
  { path: '/v1/queue/repeat/remove', body: { queue: 'fz', repeatId: 'r' } },
  { path: '/v1/queue/repeat/list', body: { queue: 'fz', limit: 5 } },
  // Cluster administration, each with a flaw kept: member 1 is the only voter.
  { path: '/v1/cluster/members/list', body: {}, httpOnly: true },
  {
    path: '/v1/cluster/members/add',
    body: { id: 1, peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' },
    pinned: ['id'],
    httpOnly: true,
  },
  {
    path: '/v1/cluster/members/add-learner',
    body: { id: 1, peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' },
    pinned: ['id'],
    httpOnly: true,
  },
  { path: '/v1/cluster/members/promote', body: { id: 1 }, pinned: ['id'], httpOnly: true },
  { path: '/v1/cluster/members/remove', body: { id: 1 }, pinned: ['id'], httpOnly: true },
  {
    path: '/v1/cluster/join',
    body: { id: 1, peer: '127.0.0.1:1', client: 'http://127.0.0.1:2' },
    pinned: ['id'],
    httpOnly: true,
  },
  {
    path: '/v1/cluster/removed',
    body: { clusterId: 'not-this-cluster', id: 1 },
    pinned: ['clusterId'],
    httpOnly: true,
  },
  { path: '/v1/cluster/transfer-leadership', body: { to: 1 }, pinned: ['to'], httpOnly: true },
];

/** Field names the bodies use: what mutations add, so validators meet plausible names. */
export const fieldPool: readonly string[] = [
  ...new Set(bodyTemplates.flatMap((t) => collectKeys(t.body))),
  'rangeEnd',
  'encoding',
  'consistency',
  'startRevision',
  'lease',
  'ignoreValue',
  'max',
  'state',
  'limit',
].filter((k) => k !== 'waitMs' && k !== 'everyMs');

function collectKeys(v: JsonValue): string[] {
  if (v === null || typeof v !== 'object') return [];
  if (Array.isArray(v)) return v.flatMap(collectKeys);
  return Object.entries(v).flatMap(([k, x]) => [k, ...collectKeys(x)]);
}

/** The binary protocol's type for an HTTP path (`/v1/queue/add-bulk` is `queue.addBulk`). */
export function wireType(path: string): string {
  if (path === '/v1/watch') return 'watch';
  if (path.startsWith('/v1/kv/')) return path.slice('/v1/kv/'.length);
  const q = path
    .slice('/v1/queue/'.length)
    .replace(/[/-]([a-z])/g, (_m, c: string) => c.toUpperCase());
  return `queue.${q}`;
}
