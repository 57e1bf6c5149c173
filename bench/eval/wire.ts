// Bytes on the wire between cluster members, measured the same way for both systems: the
// kernel's per-socket `bytes_sent` (tcp_info, read with `ss -ti`) summed over every loopback
// socket with a member's peer port at either end. Each direction of a peer link is sent by
// exactly one socket, so the sum counts every payload byte once (TCP/IP headers excluded).

import { execFile } from 'node:child_process';

export async function peerBytesSent(peerPorts: readonly number[]): Promise<number | null> {
  if (peerPorts.length === 0) return 0;
  const filter = peerPorts.map((p) => `sport = :${p} or dport = :${p}`).join(' or ');
  const out = await new Promise<string | null>((resolve) => {
    execFile('ss', ['-tinH', `( ${filter} )`], { maxBuffer: 16 * 1024 * 1024 }, (err, stdout) =>
      resolve(err === null ? stdout : null),
    );
  });
  if (out === null) return null;
  let total = 0;
  for (const m of out.matchAll(/\bbytes_sent:(\d+)/g)) total += Number(m[1]);
  return total;
}
