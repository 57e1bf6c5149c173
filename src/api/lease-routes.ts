// The lease endpoints (etcd's lease API over JSON). Grant and revoke go through the log; a
// keep-alive and a time-to-live query are answered by the leader alone, which keeps the
// deadlines (src/server/lease-keeper.ts): a follower forwards all of them, unchanged, like a
// write. Keys are attached to a lease by a put's `lease` field.

import { FlotillaError } from '../base/errors.js';
import type { JsonHttpServer } from './http.js';
import { forwarded, type Header, type KvBackend } from './routes.js';
import { asObject, encodeBytes, encodingOf, onlyFields, optBool, optInt } from './validate.js';

/** The longest time to live a lease may ask for: about 31 years. */
export const maxLeaseTtlSeconds = 1_000_000_000;
const maxLeaseId = Number.MAX_SAFE_INTEGER;

export interface LeaseBackend extends Pick<KvBackend, 'forward'> {
  header(): Header;
  grant(id: number, ttl: number, signal: AbortSignal): Promise<{ revision: number; id: number }>;
  revoke(id: number, signal: AbortSignal): Promise<{ revision: number; deleted: number }>;
  keepAlive(id: number): Promise<{ id: number; ttlSeconds: number }>;
  timeToLive(id: number): Promise<{
    id: number;
    ttlSeconds: number;
    grantedTtlSeconds: number;
    keys: Uint8Array[];
  }>;
  leases(): readonly { readonly id: number; readonly ttlSeconds: number }[];
}

export function installLeaseRoutes(http: JsonHttpServer, b: LeaseBackend): void {
  const leaderOnly = (
    path: string,
    handle: (o: ReturnType<typeof asObject>, signal: AbortSignal) => Promise<unknown>,
  ) =>
    http.route('POST', path, async ({ body, rawBody, signal, headers }) => {
      const fwd = await forwarded(b, path, rawBody, signal, headers);
      if (fwd !== null) return fwd;
      return { json: await handle(asObject(body), signal) };
    });
  const idOf = (o: ReturnType<typeof asObject>): number => {
    const id = optInt(o, 'id', 1, maxLeaseId);
    if (id === undefined) throw new FlotillaError('BAD_REQUEST', '"id" (a lease id) is required');
    return id;
  };

  leaderOnly('/v1/lease/grant', async (o, signal) => {
    onlyFields(o, ['ttl', 'id']);
    const ttl = optInt(o, 'ttl', 1, maxLeaseTtlSeconds);
    if (ttl === undefined)
      throw new FlotillaError('BAD_REQUEST', '"ttl" (seconds, at least 1) is required');
    const r = await b.grant(optInt(o, 'id', 0, maxLeaseId) ?? 0, ttl, signal);
    return { header: { ...b.header(), revision: r.revision }, id: r.id, ttl };
  });
  leaderOnly('/v1/lease/revoke', async (o, signal) => {
    onlyFields(o, ['id']);
    const r = await b.revoke(idOf(o), signal);
    return { header: { ...b.header(), revision: r.revision }, deleted: r.deleted };
  });
  leaderOnly('/v1/lease/keepalive', async (o) => {
    onlyFields(o, ['id']);
    const r = await b.keepAlive(idOf(o));
    return { header: b.header(), id: r.id, ttl: r.ttlSeconds };
  });
  leaderOnly('/v1/lease/timetolive', async (o) => {
    onlyFields(o, ['id', 'keys', 'encoding']);
    const enc = encodingOf(o);
    const r = await b.timeToLive(idOf(o));
    return {
      header: b.header(),
      id: r.id,
      ttl: r.ttlSeconds,
      grantedTtl: r.grantedTtlSeconds,
      ...(optBool(o, 'keys') ? { keys: r.keys.map((k) => encodeBytes(k, enc)) } : {}),
    };
  });
  leaderOnly('/v1/lease/leases', (o) => {
    onlyFields(o, []);
    return Promise.resolve({
      header: b.header(),
      leases: b.leases().map((l) => ({ id: l.id, ttl: l.ttlSeconds })),
    });
  });
  http.countAgainstAdmission(
    '/v1/lease/grant',
    '/v1/lease/revoke',
    '/v1/lease/keepalive',
    '/v1/lease/timetolive',
    '/v1/lease/leases',
  );
}
