// The live dashboard every node serves at `GET /`: its static files (an HTML page, a style sheet
// and a few JavaScript modules, plain and shipped in the package's `dashboard/` folder, so the
// page needs nothing from the internet), a server-sent event stream of this node's view of the
// cluster (`GET /v1/dashboard/events`), and what one node tells another for that view
// (`GET /v1/dashboard/member`). Everything else the page does goes through the public API.
//
// The page is served under a strict Content-Security-Policy: scripts and styles only from the
// node itself, no inline script, no frames, connections only to the cluster's members. The script puts
// keys, values and job data on the page as text, never as markup; the policy is the second
// line should that ever slip.

import { createHash } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { FlotillaError } from '../base/errors.js';
import type { EventSink, JsonHttpServer } from './http.js';
import type { NodeStatus } from './types.js';

/** One line of a node's election timeline (src/server/timeline.ts). */
export interface TimelineEntry {
  readonly seq: number;
  readonly atMs: number;
  readonly lastMs: number;
  readonly count: number;
  readonly node: number;
  readonly group: number;
  readonly kind: string;
  readonly term: number;
  readonly peer: number;
  readonly reason: string;
}

/** What one member reports of itself for the dashboard. */
export interface MemberView {
  readonly status: NodeStatus;
  /** Milliseconds since this node last heard from its leader; null on the leader, or never. */
  readonly leaderContactAgoMs: number | null;
  /** On the leader, per follower: entries sent and not yet acknowledged (next - 1 - match). */
  readonly inflight: Readonly<Record<string, number>>;
  /** Its timeline, when it changed since the version the asker gave; null otherwise. */
  readonly timeline: { readonly version: number; readonly entries: TimelineEntry[] } | null;
}

export interface DashboardBackend {
  /** This node's view of itself, with its timeline if it changed since `timelineVersion`. */
  member(timelineVersion: number): MemberView;
  /**
   * Streams the cluster's state to `out` until it aborts or the node closes. Throws OVERLOADED
   * when the node already streams to as many dashboards as it allows.
   */
  follow(out: EventSink): Promise<void>;
  /** Refuses one more stream at once (before the answer starts) when there is no room. */
  checkRoom(): void;
}

export const dashboardEventsPath = '/v1/dashboard/events';
export const dashboardMemberPath = '/v1/dashboard/member';

/**
 * Every path the page calls: its stream and the API calls of its tabs. A page served by one
 * member calls them on another once its own is down (cors.ts), so they, and only they, take
 * cross-origin requests from the members' origins. test/server/dashboard.test.ts checks that
 * every path the page's script names is here.
 */
export const dashboardApiPaths: readonly string[] = [
  dashboardEventsPath,
  '/v1/kv/range',
  '/v1/kv/put',
  '/v1/kv/delete',
  '/v1/kv/compact',
  '/v1/watch',
  '/v1/snapshot',
  '/v1/cluster/transfer-leadership',
  '/v1/cluster/members/add',
  '/v1/cluster/members/add-learner',
  '/v1/cluster/members/remove',
  '/v1/queue/list',
  '/v1/queue/retry',
  '/v1/queue/delete',
  '/v1/queue/pause',
  '/v1/queue/resume',
  '/v1/ranges/split',
];

/**
 * Where the page may load from and connect to: this node, and the other members' client
 * origins (the page follows another member when its own is down), nothing else. `img-src
 * data:` is for the empty icon the page declares (so the browser asks for no /favicon.ico).
 */
export function contentSecurityPolicy(memberOrigins: Iterable<string> = []): string {
  const connect = ["'self'", ...[...new Set(memberOrigins)].sort()];
  return [
    "default-src 'none'",
    "script-src 'self'",
    "style-src 'self'",
    "img-src 'self' data:",
    `connect-src ${connect.join(' ')}`,
    "base-uri 'none'",
    "form-action 'none'",
    "frame-ancestors 'none'",
  ].join('; ');
}

export interface Asset {
  readonly path: string;
  readonly file: string;
  readonly contentType: string;
}

const scripts = [
  'app.js',
  'api.js',
  'util.js',
  'chart.js',
  'cluster.js',
  'members.js',
  'data.js',
  'queues.js',
  'ranges.js',
  'ops.js',
];

/** Every file of the page; nothing else under the folder is served. */
export const dashboardAssets: readonly Asset[] = [
  { path: '/', file: 'index.html', contentType: 'text/html; charset=utf-8' },
  { path: '/dashboard/style.css', file: 'style.css', contentType: 'text/css; charset=utf-8' },
  ...scripts.map((file) => ({
    path: `/dashboard/${file}`,
    file,
    contentType: 'text/javascript; charset=utf-8',
  })),
];

/** The package's `dashboard/` folder: three levels above this module's compiled file. */
export function dashboardDir(): URL {
  return new URL('../../../dashboard/', import.meta.url);
}

export function installDashboardRoutes(
  http: JsonHttpServer,
  b: DashboardBackend,
  o: {
    /** The members' client origins now (cors.ts), for the policy's connect-src. */
    readonly memberOrigins?: () => Iterable<string>;
    readonly dir?: URL;
  } = {},
): void {
  const dir = o.dir ?? dashboardDir();
  for (const a of dashboardAssets) {
    // Read once: the files are part of the release, not something changed under a running node.
    const text = readFileSync(new URL(a.file, dir), 'utf8');
    const textTag = hash(text);
    http.route('GET', a.path, ({ headers: req }) => {
      // The policy names the members as they are now: a member added since the page was
      // cached changes the tag, so the page is fetched again with the new policy.
      const policy = contentSecurityPolicy(o.memberOrigins?.() ?? []);
      const etag = `"${textTag}.${hash(policy)}"`;
      const headers = {
        // Revalidate every time (a node upgraded in place serves a new page at once), but with
        // the tag an unchanged file costs a 304 and no body.
        'Cache-Control': 'no-cache',
        ETag: etag,
        'Content-Security-Policy': policy,
        'X-Content-Type-Options': 'nosniff',
        'Referrer-Policy': 'no-referrer',
        'X-Frame-Options': 'DENY',
      };
      return req['if-none-match'] === etag
        ? { status: 304, text: '', contentType: a.contentType, headers }
        : { text, contentType: a.contentType, headers };
    });
  }
  http.route('GET', dashboardEventsPath, () => {
    b.checkRoom();
    return { events: (out) => b.follow(out) };
  });
  http.route('GET', dashboardMemberPath, ({ query }) => {
    const raw = query.get('timelineVersion') ?? '0';
    const version = Number(raw);
    if (!/^\d{1,15}$/.test(raw) || !Number.isSafeInteger(version))
      throw new FlotillaError(
        'BAD_REQUEST',
        `"timelineVersion" must be a non-negative integer, got ${JSON.stringify(raw)}`,
      );
    return { json: b.member(version) };
  });
}

function hash(text: string): string {
  return createHash('sha256').update(text).digest('base64url').slice(0, 22);
}
