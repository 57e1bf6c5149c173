// The pure parts of the ranges throughput benchmark (throughput.ts): reading a process's CPU
// time and I/O counters from /proc, laying ranges out over nodes, and the model of how write
// throughput grows with nodes (docs/BENCHMARKS.md, "Ranges: write throughput by number of
// ranges and nodes").

/** A process's CPU time so far, from /proc/<pid>/stat (user and system, in clock ticks). */
export interface ProcCpu {
  readonly userTicks: number;
  readonly systemTicks: number;
}

/**
 * Parses /proc/<pid>/stat. The second field (the command name, in parentheses) may itself hold
 * spaces and parentheses, so fields are counted from the last ')'; utime and stime are fields
 * 14 and 15 of the whole line.
 */
export function parseProcStat(text: string): ProcCpu {
  const close = text.lastIndexOf(')');
  if (close < 0)
    throw new Error(`not a /proc/<pid>/stat line: ${JSON.stringify(text.slice(0, 80))}`);
  // After ')': field 3 (state) is the first; utime is field 14, so index 11 here.
  const rest = text
    .slice(close + 1)
    .trim()
    .split(/\s+/);
  const userTicks = Number(rest[11]);
  const systemTicks = Number(rest[12]);
  if (!Number.isSafeInteger(userTicks) || !Number.isSafeInteger(systemTicks))
    throw new Error(`/proc/<pid>/stat has no utime/stime: ${JSON.stringify(text.slice(0, 200))}`);
  return { userTicks, systemTicks };
}

/** CPU milliseconds between two readings, at `ticksPerSec` clock ticks a second. */
export function cpuMsBetween(a: ProcCpu, b: ProcCpu, ticksPerSec: number): number {
  return ((b.userTicks + b.systemTicks - a.userTicks - a.systemTicks) * 1000) / ticksPerSec;
}

/** The counters of /proc/<pid>/io this benchmark reads (bytes sent to the storage layer). */
export interface ProcIo {
  readonly writeBytes: number;
  readonly syscw: number;
}

/** Parses /proc/<pid>/io ("name: value" lines). */
export function parseProcIo(text: string): ProcIo {
  const field = (name: string): number => {
    const m = new RegExp(`^${name}:\\s*(\\d+)\\s*$`, 'm').exec(text);
    if (m === null) throw new Error(`/proc/<pid>/io has no ${name}`);
    return Number(m[1]);
  };
  return { writeBytes: field('write_bytes'), syscw: field('syscw') };
}

/**
 * The split keys that cut the key space into `ranges` ranges of equal share for keys named
 * rangeKey(i, …): "r001" … "r<ranges-1>" (range i holds the keys starting "r<i>/"; range 0
 * also holds everything before "r001").
 */
export function splitKeys(ranges: number): string[] {
  if (!Number.isInteger(ranges) || ranges < 1 || ranges > 999)
    throw new Error(`ranges must be 1..999, got ${ranges}`);
  return Array.from({ length: ranges - 1 }, (_, i) => rangePrefix(i + 1));
}

export function rangePrefix(i: number): string {
  return `r${String(i).padStart(3, '0')}`;
}

/** A key of range `i` (of the layout splitKeys made): writer `writer`'s `n`th key in it. */
export function rangeKey(i: number, writer: number, n: number): string {
  return `${rangePrefix(i)}/${writer}/${n}`;
}

/**
 * The replicas of the `k`th split-off range (k from 0) on nodes 1..nodes: the next `replicas`
 * nodes of one round-robin over all nodes (range 0 takes nodes 1–3 of five, range 1 nodes 4, 5
 * and 1, …), so every node holds as many as the others, to within one. With replicas ≥ nodes
 * every range is on every node.
 */
export function roundRobinReplicas(k: number, nodes: number, replicas: number): number[] {
  if (replicas >= nodes) return Array.from({ length: nodes }, (_, i) => i + 1);
  return Array.from({ length: replicas }, (_, j) => ((k * replicas + j) % nodes) + 1).sort(
    (a, b) => a - b,
  );
}

/** A range as the leader spreading sees it: the nodes holding it and the one leading it. */
export interface RangeLeadership {
  readonly replicas: readonly number[];
  readonly leader: number;
}

/**
 * The node that should lead each range (in the order given) so that the leaders per node are
 * as even as the replicas allow: every range led by one of its replicas, and no node leading
 * two more than another unless the replicas force it. It starts from the leaders as they are
 * and moves as few as it can find: while a chain of hand-overs leads from a node u to a node v
 * leading at least two fewer (u's range to a replica w of it, w's range to a replica of that,
 * …, to v), it makes the shortest such chain, which lowers u's count by one and raises v's by
 * one and leaves the others'. When no chain is left the spread is the best the replicas allow
 * (the sum of squared counts is least; Harvey et al., "Semi-matchings for bipartite graphs and
 * load balancing", 2003). A single hand-over at a time (as the placement loop's leaderPlan
 * makes) can stop short of it: leaders 2/1/0 where node 3 holds none of node 1's ranges.
 * Bounded: each chain lowers the sum of squares by at least 2.
 */
export function spreadLeaders(
  ranges: readonly RangeLeadership[],
  nodes: readonly number[],
): number[] {
  const counts = new Map<number, number>(nodes.map((n) => [n, 0]));
  if (counts.size !== nodes.length)
    throw new Error(`a node is named twice in [${nodes.join(', ')}]`);
  const target = ranges.map((r, i) => {
    if (r.replicas.length === 0) throw new Error(`range ${i} has no replicas`);
    for (const n of r.replicas)
      if (!counts.has(n))
        throw new Error(`range ${i} has a replica on node ${n}, not one of [${nodes.join(', ')}]`);
    // A leader that is no replica (a stale view) is replaced by the first replica.
    return r.replicas.includes(r.leader) ? r.leader : (r.replicas[0] as number);
  });
  for (const t of target) counts.set(t, (counts.get(t) as number) + 1);
  const stepsMax = ranges.length * ranges.length + 1;
  for (let step = 0; ; step++) {
    if (step > stepsMax) throw new Error('spreadLeaders did not converge');
    const chain = evenerChain(ranges, target, counts, nodes);
    if (chain === null) return target;
    const [first, last] = [chain[0] as { range: number; to: number }, chain.at(-1)];
    const from = target[first.range] as number;
    for (const hop of chain) target[hop.range] = hop.to;
    counts.set(from, (counts.get(from) as number) - 1);
    counts.set(last?.to as number, (counts.get(last?.to as number) as number) + 1);
  }
}

/**
 * The shortest chain of hand-overs from a node leading the most it can give away to a node
 * leading at least two fewer, as (range, new leader) hops; null when there is none. Sources are
 * tried fullest first, ties by id; the breadth-first search visits nodes and ranges in order.
 */
function evenerChain(
  ranges: readonly RangeLeadership[],
  target: readonly number[],
  counts: ReadonlyMap<number, number>,
  nodes: readonly number[],
): { range: number; to: number }[] | null {
  const fullest = [...nodes].sort(
    (a, b) => (counts.get(b) as number) - (counts.get(a) as number) || a - b,
  );
  for (const source of fullest) {
    const c = counts.get(source) as number;
    // The hop that first reached each node: the range handed over and the node it came from.
    const via = new Map<number, { range: number; from: number }>();
    const seen = new Set<number>([source]);
    const queue = [source];
    for (let head = 0; head < queue.length; head++) {
      const u = queue[head] as number;
      if ((counts.get(u) as number) <= c - 2) {
        const chain: { range: number; to: number }[] = [];
        for (let v = u; v !== source;) {
          const hop = via.get(v) as { range: number; from: number };
          chain.unshift({ range: hop.range, to: v });
          v = hop.from;
        }
        return chain;
      }
      target.forEach((t, range) => {
        if (t !== u) return;
        for (const w of (ranges[range] as RangeLeadership).replicas) {
          if (seen.has(w)) continue;
          seen.add(w);
          via.set(w, { range, from: u });
          queue.push(w);
        }
      });
    }
  }
  return null;
}

/** One node's share of the ranges: how many it leads and how many it holds a replica of. */
export interface NodeShare {
  readonly leaders: number;
  readonly replicas: number;
}

/**
 * Per-write CPU of a range's leader (L) and of each other replica (F), in ms, fitted by least
 * squares to every node's measured CPU: node i spent L·lead_i + F·follow_i per write, where
 * lead_i is the share of writes to ranges it leads (leaders_i / R with writes uniform over
 * ranges) and follow_i the share to ranges it holds without leading. Null when the nodes'
 * shares do not tell L and F apart (every node alike, e.g. one node).
 */
export function fitLeaderFollower(
  cpuMsPerWrite: readonly number[],
  shares: readonly NodeShare[],
  ranges: number,
): { readonly leaderMs: number; readonly followerMs: number } | null {
  let saa = 0;
  let sab = 0;
  let sbb = 0;
  let say = 0;
  let sby = 0;
  shares.forEach((s, i) => {
    const a = s.leaders / ranges;
    const b = (s.replicas - s.leaders) / ranges;
    const y = cpuMsPerWrite[i] ?? 0;
    saa += a * a;
    sab += a * b;
    sbb += b * b;
    say += a * y;
    sby += b * y;
  });
  const det = saa * sbb - sab * sab;
  if (Math.abs(det) < 1e-12) return null;
  return { leaderMs: (say * sbb - sby * sab) / det, followerMs: (sby * saa - say * sab) / det };
}

/**
 * Writes per second the CPU allows when every write costs its leader `leaderMs` and each of the
 * `replicas` − 1 others `followerMs`, the ranges' leaders and replicas are spread evenly over
 * `nodes` nodes, and each node has `coresPerNode` cores of its own. With ranges ≥ nodes each
 * node carries (L + (r − 1)·F) / N of every write, so N·cores·1000 / (L + (r − 1)·F) writes/s:
 * linear in N. With fewer ranges the work cannot spread: only min(N, ranges·r) nodes hold
 * replicas, and a node leading one of R ranges carries at least L / R of every write, whatever N.
 * The busiest node bounds the whole.
 */
export function cpuBoundWritesPerSec(o: {
  readonly leaderMs: number;
  readonly followerMs: number;
  readonly replicas: number;
  readonly nodes: number;
  readonly ranges: number;
  readonly coresPerNode: number;
}): number {
  const perWrite = o.leaderMs + (o.replicas - 1) * o.followerMs;
  if (!(perWrite > 0) || !(o.leaderMs > 0))
    throw new Error(`CPU per write must be positive, got L ${o.leaderMs}, F ${o.followerMs}`);
  const busiest = Math.max(
    perWrite / Math.min(o.nodes, o.ranges * o.replicas),
    o.leaderMs / Math.min(o.nodes, o.ranges),
  );
  return (o.coresPerNode * 1000) / busiest;
}

/**
 * The same cost on one machine whose `cores` cores every node (and the load generator) share:
 * cores·1000 / (the CPU per write of all nodes together + the load generator's), whatever
 * the number of nodes. More nodes add work per write (more replicas) and add no cores.
 */
export function sharedMachineWritesPerSec(o: {
  readonly cores: number;
  readonly clusterCpuMsPerWrite: number;
  readonly loadgenCpuMsPerWrite: number;
}): number {
  const perWrite = o.clusterCpuMsPerWrite + o.loadgenCpuMsPerWrite;
  if (!(perWrite > 0)) throw new Error(`CPU per write must be positive, got ${perWrite}`);
  return (o.cores * 1000) / perWrite;
}

/** Quantile of an ascending list (nearest rank). */
export function quantile(sorted: readonly number[], q: number): number {
  if (sorted.length === 0) return 0;
  return sorted[Math.min(sorted.length - 1, Math.max(0, Math.ceil(q * sorted.length) - 1))] ?? 0;
}
