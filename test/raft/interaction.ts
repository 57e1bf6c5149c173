// An interaction environment for transcript tests (in the manner of etcd-io/raft's
// rafttest): a few RaftNodes, a message queue per node, a durable store per node, and a small
// command language whose output is compared with the expected text in testdata/*.txt.

import {
  AssertionError,
  RaftNode,
  resolveConfig,
  createRng,
  decodeConfChange,
  describeConf,
  type ConfChangeSingle,
  type Entry,
  type HardState,
  type IncomingSnapshot,
  type Message,
  type RaftConfig,
  type Ready,
  type Recovery,
  type SnapshotMeta,
} from '../../src/raft/index.js';

/** What a node has made durable: the harness's stand-in for a WAL. */
function emptyDurable(): Durable {
  return {
    hardState: { term: 0, vote: 0, commit: 0 },
    snapshot: null,
    entries: [],
    applied: 0,
    recovery: null,
    incoming: null,
    corruptNextCheck: false,
  };
}

interface Durable {
  hardState: HardState;
  snapshot: SnapshotMeta | null;
  entries: Entry[];
  applied: number;
  /** The caller's durable copy of the core's recovery state (RaftConfig.recovery). */
  recovery: Recovery | null;
  /** The partial snapshot being received: what its chunks wrote (InitialState.incoming). */
  incoming: IncomingSnapshot | null;
  /** The next complete snapshot's bytes do not match its id (`corrupt-snapshot`). */
  corruptNextCheck: boolean;
}

export interface Command {
  readonly name: string;
  readonly args: readonly string[];
  readonly kv: ReadonlyMap<string, string>;
}

const text = new TextDecoder();
/** Events that follow from a configuration change taking effect. */
const confEvent = /^ {2}\[\d+\] (conf-|step-down .*removed|become-follower .*removed)/;
const enc = new TextEncoder();

export function renderEntry(e: Entry): string {
  if (e.type === 'conf-change') {
    const cc = decodeConfChange(e.data);
    if (typeof cc === 'string') return `${e.term}/${e.index} conf(bad: ${cc})`;
    return `${e.term}/${e.index} conf(${cc.changes.length === 0 ? 'leave' : cc.changes.map(renderChange).join(' ')})`;
  }
  return e.type === 'noop'
    ? `${e.term}/${e.index} noop`
    : `${e.term}/${e.index} "${text.decode(e.data)}"`;
}

function renderChange(c: ConfChangeSingle): string {
  return `${c.kind === 'add-voter' ? 'v' : c.kind === 'add-learner' ? 'l' : 'r'}${c.node}`;
}

/** `v4` adds node 4 as a voter, `l4` as a learner, `r4` removes it; `leave` is the empty change. */
function parseChanges(args: readonly string[]): ConfChangeSingle[] {
  if (args.length === 1 && args[0] === 'leave') return [];
  return args.map((a) => {
    const kind = { v: 'add-voter', l: 'add-learner', r: 'remove' }[a[0] ?? ''];
    // An unknown letter is passed on as is, so a transcript can show the refusal.
    return {
      kind: (kind ?? a[0]) as ConfChangeSingle['kind'],
      node: Number(a.slice(1)),
    };
  });
}

export function renderMessage(m: Message): string {
  const head = `${m.from}->${m.to} ${m.type} term=${m.term}`;
  switch (m.type) {
    case 'vote':
    case 'pre-vote':
      return `${head} last=${m.lastLogTerm}/${m.lastLogIndex}${m.transfer ? ' transfer' : ''}`;
    case 'vote-resp':
    case 'pre-vote-resp':
      return `${head} ${m.granted ? 'granted' : 'rejected'}`;
    case 'append':
      return `${head} prev=${m.prevTerm}/${m.prevIndex} commit=${m.commit} entries=[${m.entries.map(renderEntry).join(', ')}]`;
    case 'append-resp':
      return m.success
        ? `${head} ok index=${m.index}`
        : `${head} reject index=${m.index} hint=${m.hintTerm}/${m.hintIndex}${m.lost ? ' lost' : ''}`;
    case 'heartbeat':
      return `${head} commit=${m.commit} seq=${m.seq}${m.quiesce ? ' quiesce' : ''}`;
    case 'heartbeat-resp':
      return `${head} seq=${m.seq}`;
    case 'timeout-now':
      return head;
    case 'read-index':
      return `${head} req=${m.requestId}${m.lease ? ' lease' : ''}`;
    case 'read-index-resp':
      return `${head} req=${m.requestId} ${m.ok ? `index=${m.index}` : 'refused'}`;
    case 'snapshot': {
      const s = m.snapshot;
      // The other fields of the configuration only when they are set (older transcripts).
      const conf =
        s.learners || s.outgoing || s.learnersNext || s.autoLeave
          ? ` ${describeConf({ voters: s.voters, learners: s.learners ?? [], outgoing: s.outgoing ?? [], learnersNext: s.learnersNext ?? [], autoLeave: s.autoLeave ?? false })}`
          : ` voters=(${s.voters.join(',')})`;
      return `${head} snapshot=${s.term}/${s.index}${conf} id=${m.id} chunk=${m.offset}+${m.length}/${m.totalBytes}`;
    }
    case 'snapshot-resp':
      return `${head} id=${m.id} received=${m.received}`;
  }
}

export class Interaction {
  private nodes = new Map<number, RaftNode>();
  private configs = new Map<number, Omit<RaftConfig, 'initial' | 'rng' | 'id'>>();
  private durable = new Map<number, Durable>();
  private inbox = new Map<number, Message[]>();
  /** Pairs (from,to) whose messages are dropped. */
  private cut = new Set<string>();
  /** Output of the command being run; events from the nodes interleave with it. */
  private out: string[] = [];
  private seed = 1;
  /** Readies handed out with persist=false: sent, but not yet durable nor advanced. */
  private held = new Map<number, Ready>();

  run(cmd: Command): string {
    this.out = [];
    this.dispatch(cmd).forEach((l) => this.out.push(l));
    return this.out.length === 0 ? 'ok' : this.out.join('\n');
  }

  private dispatch(cmd: Command): string[] {
    switch (cmd.name) {
      case 'add-nodes':
        return this.addNodes(cmd);
      case 'campaign':
        this.node(num(cmd.args[0])).campaign();
        return [];
      case 'wake':
        // wake ID...: the caller's failure detection wakes a quiesced node (RaftNode.wake).
        for (const id of this.ids(cmd)) this.node(id).wake('caller');
        return [];
      case 'tick':
        return this.tick(cmd);
      case 'tick-election':
        return this.tickElection(cmd);
      case 'tick-heartbeat':
        return this.tickHeartbeat(cmd);
      case 'propose':
        return this.propose(cmd);
      case 'propose-batch':
        return this.proposeBatch(cmd);
      case 'read-index':
        return this.readIndex(cmd);
      case 'lease':
        return this.ids(cmd).map((id) => {
          const l = this.node(id).lease();
          return `${id}: tick=${l.nowTick} lease-end=${l.endTick} ${l.holds ? 'holds' : 'lapsed'}`;
        });
      case 'transfer-leadership':
        return this.transfer(cmd);
      case 'propose-conf-change':
        return this.proposeConfChange(cmd);
      case 'conf':
        return this.ids(cmd).map((id) => `${id}: ${describeConf(this.node(id).confState())}`);
      case 'process-ready':
        return this.ids(cmd).flatMap((id) =>
          cmd.kv.get('persist') === 'false' ? this.holdReady(id) : this.processReady(id),
        );
      case 'persist':
        return this.ids(cmd).flatMap((id) => this.completeReady(id));
      case 'deliver-msgs':
        return this.deliver(cmd);
      case 'dup-msgs':
        return this.duplicate(cmd);
      case 'stabilize':
        return this.stabilize(cmd);
      case 'partition':
        return this.partition(cmd);
      case 'heal':
        this.cut.clear();
        return [];
      case 'status':
        return this.ids(cmd).map((id) => this.status(id));
      case 'raft-log':
        return this.ids(cmd).map((id) => this.raftLog(id));
      case 'crash':
        return this.crash(cmd);
      case 'restart':
        return this.restart(cmd);
      case 'wipe':
        return this.wipe(cmd);
      case 'compact': {
        // compact ID INDEX [bytes=N] [id=X]: the state machine's snapshot at INDEX is N bytes
        // (default 4) whose checksum is X (default s<term>.<index>); the node offers it.
        const id = num(cmd.args[0]);
        const node = this.node(id);
        const meta = node.compact(num(cmd.args[1]));
        const d = this.durableOf(id);
        d.entries = d.entries.filter((x) => x.index > meta.index);
        d.snapshot = meta;
        node.offerSnapshot({
          meta,
          id: cmd.kv.get('id') ?? `s${meta.term}.${meta.index}`,
          totalBytes: Number(cmd.kv.get('bytes') ?? '4'),
        });
        return [];
      }
      case 'corrupt-snapshot':
        // The bytes of the snapshot node ID is receiving will not match its id when checked.
        this.durableOf(num(cmd.args[0])).corruptNextCheck = true;
        return [];
      default:
        throw new Error(`Unknown transcript command "${cmd.name}"`);
    }
  }

  private addNodes(cmd: Command): string[] {
    const n = num(cmd.args[0]);
    const start = this.durable.size + 1;
    const ids = Array.from({ length: n }, (_, i) => start + i);
    // voters=(1,2,3): nodes joining an existing group start with its initial member list, in
    // which they are not voters; they learn the configuration from the log or a snapshot.
    const listed = parseList(cmd.kv.get('voters'));
    const voters = listed.length > 0 ? listed : ids;
    this.seed = Number(cmd.kv.get('seed') ?? '1');
    for (const id of ids) {
      const config = {
        voters,
        electionTicks: Number(cmd.kv.get('election') ?? '10'),
        heartbeatTicks: Number(cmd.kv.get('heartbeat') ?? '1'),
        preVote: (cmd.kv.get('prevote') ?? 'true') === 'true',
        checkQuorum: (cmd.kv.get('checkquorum') ?? 'true') === 'true',
        maxInflightMsgs: Number(cmd.kv.get('max-inflight') ?? '256'),
        maxEntriesPerMsg: Number(cmd.kv.get('max-entries') ?? '4096'),
        maxUncommittedBytes: Number(cmd.kv.get('max-uncommitted') ?? String(64 * 1024 * 1024)),
        maxBytesPerMsg: Number(cmd.kv.get('max-msg-bytes') ?? String(1024 * 1024)),
        ...(cmd.kv.has('lease-drift')
          ? { leaseDriftTicks: Number(cmd.kv.get('lease-drift')) }
          : {}),
        snapshotChunkBytes: Number(cmd.kv.get('chunk') ?? '4'),
        ...(cmd.kv.has('quiesce') ? { quiesce: cmd.kv.get('quiesce') === 'true' } : {}),
        ...(cmd.kv.has('rounds-to-quorum')
          ? { readRoundsToQuorum: cmd.kv.get('rounds-to-quorum') === 'true' }
          : {}),
        ...(cmd.kv.has('commit-on-tick')
          ? { commitOnTick: cmd.kv.get('commit-on-tick') === 'true' }
          : {}),
      };
      // A configuration the core refuses is shown, not thrown: transcripts record refusals.
      try {
        resolveConfig({ ...config, id, rng: createRng(1) });
      } catch (e) {
        if (!(e instanceof AssertionError)) throw e;
        return [`error: ${e.message}`];
      }
      this.configs.set(id, config);
      this.durable.set(id, emptyDurable());
      this.inbox.set(id, []);
      this.startNode(id);
    }
    return [`added nodes ${ids.join(',')}`];
  }

  private startNode(id: number): void {
    const d = this.durableOf(id);
    const config: RaftConfig = {
      ...(this.configs.get(id) as Omit<RaftConfig, 'initial' | 'rng' | 'id'>),
      id,
      rng: createRng(this.seed * 1000 + id),
      ...(d.recovery === null ? {} : { recovery: d.recovery }),
      initial: {
        hardState: d.hardState,
        snapshot: d.snapshot,
        entries: [...d.entries],
        applied: d.applied,
        ...(d.incoming === null ? {} : { incoming: d.incoming }),
      },
      onEvent: (e) => {
        if (e.kind === 'become-follower' && e.reason === 'start') return;
        this.out.push(
          `  [${e.node}] ${e.kind}${e.peer ? ` ${e.peer}` : ''} term=${e.term}: ${e.reason}`,
        );
      },
    };
    this.nodes.set(id, new RaftNode(config));
  }

  private tick(cmd: Command): string[] {
    const id = num(cmd.args[0]);
    const times = Number(cmd.args[1] ?? '1');
    for (let i = 0; i < times; i++) this.node(id).tick();
    return [];
  }

  /**
   * Ticks the listed nodes in lockstep until one of them starts a campaign: the node whose
   * randomized election timeout (paper §5.2) is shortest. Bounded: a timeout is below
   * 2 * electionTicks.
   */
  private tickElection(cmd: Command): string[] {
    const ids = this.ids(cmd);
    const limit = 2 * Math.max(...ids.map((id) => this.configs.get(id)?.electionTicks ?? 10));
    for (let i = 1; i <= limit; i++) {
      const before = this.out.length;
      for (const id of ids) this.node(id).tick();
      const campaigned = this.out.slice(before).some((l) => / become-(pre-)?candidate /.test(l));
      if (campaigned) return [`ticked ${i} times`];
    }
    throw new Error(`None of nodes ${ids.join(',')} campaigned within ${limit} ticks`);
  }

  /** Ticks a node for one heartbeat interval. */
  private tickHeartbeat(cmd: Command): string[] {
    const id = num(cmd.args[0]);
    const n = this.configs.get(id)?.heartbeatTicks ?? 1;
    for (let i = 0; i < n; i++) this.node(id).tick();
    return [];
  }

  private proposeBatch(cmd: Command): string[] {
    const r = this.node(num(cmd.args[0])).proposeBatch(cmd.args.slice(1).map((a) => enc.encode(a)));
    return [
      r.ok
        ? `ok first=${r.value.firstIndex} term=${r.value.term}`
        : `error ${r.error.code} leader=${r.error.leader}`,
    ];
  }

  private propose(cmd: Command): string[] {
    const r = this.node(num(cmd.args[0])).propose(enc.encode(cmd.args[1] ?? ''));
    return [
      r.ok
        ? `ok index=${r.value.index} term=${r.value.term}`
        : `error ${r.error.code} leader=${r.error.leader}`,
    ];
  }

  private readIndex(cmd: Command): string[] {
    const lease = cmd.args[2] === 'lease';
    const r = this.node(num(cmd.args[0])).readIndex(num(cmd.args[1]), { lease });
    return [r.ok ? 'ok' : `error ${r.error.code} leader=${r.error.leader}`];
  }

  private proposeConfChange(cmd: Command): string[] {
    const r = this.node(num(cmd.args[0])).proposeConfChange({
      changes: parseChanges(cmd.args.slice(1)),
    });
    return [
      r.ok
        ? `ok index=${r.value.index} term=${r.value.term}`
        : `error ${r.error.code}: ${r.error.message}`,
    ];
  }

  private transfer(cmd: Command): string[] {
    const r = this.node(num(cmd.kv.get('from'))).transferLeadership(num(cmd.kv.get('to')));
    return [r.ok ? 'ok' : `error ${r.error.code}`];
  }

  /** Handles one Ready exactly as the runtime must: send, persist, send after persist, apply. */
  processReady(id: number): string[] {
    const node = this.node(id);
    if (!node.hasReady()) return [];
    const rd = node.ready();
    const out = this.renderReady(id, rd);
    for (const m of rd.messages) this.enqueue(m);
    // Events of applying (a configuration taking effect, a removed leader stepping down) are
    // shown after the Ready that applied, where they happen.
    const before = this.out.length;
    const checks = this.finishReady(id, rd);
    const applied = this.out.splice(before);
    const confEvents = applied.filter((l) => confEvent.test(l));
    this.out.push(...applied.filter((l) => !confEvent.test(l)));
    return [...out, ...confEvents, ...checks];
  }

  /**
   * Steps 2-5 of the Ready contract: persist, send after persist, apply, advance; then, as the
   * runtime does, checks a snapshot whose last chunk was written and reports the result.
   */
  private finishReady(id: number, rd: Ready): string[] {
    this.persist(id, rd);
    for (const m of rd.messagesAfterPersist) this.enqueue(m);
    const last = rd.committedEntries[rd.committedEntries.length - 1];
    if (last !== undefined) this.durableOf(id).applied = last.index;
    const node = this.node(id);
    node.advance(rd);
    const out: string[] = [];
    for (const c of rd.snapshotChunks) {
      if (!c.last) continue;
      const d = this.durableOf(id);
      const good = !d.corruptNextCheck;
      d.corruptNextCheck = false;
      if (!good && d.incoming !== null) d.incoming = { ...d.incoming, received: 0 };
      out.push(`  check snapshot id=${c.id}: ${good ? 'good' : 'checksum mismatch'}`);
      node.incomingSnapshotChecked(c.id, good);
    }
    return out;
  }

  /**
   * Step 1 only: sends `messages` and holds the rest of the Ready as a slow disk would, until
   * `persist ID`. A crash before then loses the write.
   */
  private holdReady(id: number): string[] {
    const node = this.node(id);
    if (this.held.has(id) || !node.hasReady()) return [];
    const rd = node.ready();
    for (const m of rd.messages) this.enqueue(m);
    this.held.set(id, rd);
    return [...this.renderReady(id, rd), '  (write held: not yet persisted)'];
  }

  private completeReady(id: number): string[] {
    const rd = this.held.get(id);
    if (rd === undefined) throw new Error(`Node ${id} holds no Ready to persist`);
    this.held.delete(id);
    return [`> ${id} persisted its held Ready`, ...this.finishReady(id, rd)];
  }

  private renderReady(id: number, rd: Ready): string[] {
    const out = [`> ${id} handling Ready`];
    if (rd.softState) out.push(`  role=${rd.softState.role} leader=${rd.softState.leader}`);
    if (rd.hardState)
      out.push(
        `  hard-state term=${rd.hardState.term} vote=${rd.hardState.vote} commit=${rd.hardState.commit}`,
      );
    for (const c of rd.snapshotChunks)
      out.push(`  write snapshot id=${c.id} chunk=${c.offset}+${c.length}${c.last ? ' last' : ''}`);
    if (rd.snapshot)
      out.push(`  snapshot ${rd.snapshot.term}/${rd.snapshot.index} id=${rd.snapshotId ?? 'none'}`);
    if (rd.entries.length > 0) out.push(`  persist [${rd.entries.map(renderEntry).join(', ')}]`);
    for (const m of rd.messages) out.push(`  send ${renderMessage(m)}`);
    for (const m of rd.messagesAfterPersist) out.push(`  send-after-persist ${renderMessage(m)}`);
    if (rd.committedEntries.length > 0)
      out.push(`  apply [${rd.committedEntries.map(renderEntry).join(', ')}]`);
    for (const r of rd.readStates)
      out.push(`  read-state req=${r.requestId} ${r.ok ? `index=${r.index}` : 'refused'}`);
    // Shown when it enters or leaves `recovering`; every fresh node's change to `none` at its
    // first commit would only add noise to transcripts about other things.
    const stored = this.durableOf(id).recovery;
    if (rd.recovery !== null && (rd.recovery === 'recovering' || stored === 'recovering'))
      out.push(`  store recovery=${rd.recovery}`);
    return out;
  }

  private persist(id: number, rd: Ready): void {
    const d = this.durableOf(id);
    // As the runtime does: the recovery state is durable before the Ready's entries are.
    if (rd.recovery !== null) d.recovery = rd.recovery;
    for (const c of rd.snapshotChunks) {
      const { meta, id: snapshotId, totalBytes } = c;
      d.incoming = { meta, id: snapshotId, totalBytes, received: c.offset + c.length };
    }
    if (rd.snapshot) {
      d.snapshot = rd.snapshot;
      d.entries = [];
      d.applied = rd.snapshot.index;
      d.incoming = null;
    }
    const first = rd.entries[0];
    if (first !== undefined) {
      d.entries = d.entries.filter((e) => e.index < first.index);
      d.entries.push(...rd.entries);
    }
    if (rd.hardState) d.hardState = rd.hardState;
  }

  private enqueue(m: Message): void {
    // A crashed node receives nothing: the network does not buffer for it.
    if (this.cut.has(`${m.from}-${m.to}`) || !this.nodes.has(m.to)) return;
    (this.inbox.get(m.to) as Message[]).push(m);
  }

  private deliver(cmd: Command): string[] {
    const drop = new Set(parseList(cmd.kv.get('drop')));
    const targets = this.ids(cmd).filter((id) => !drop.has(id));
    for (const id of drop) {
      for (const m of this.take(id)) this.out.push(`dropped: ${renderMessage(m)}`);
    }
    // reverse=true delivers each node's waiting messages newest first (the network reorders).
    const reverse = cmd.kv.get('reverse') === 'true';
    for (const id of targets) {
      const msgs = this.take(id);
      if (reverse) msgs.reverse();
      for (const m of msgs) {
        this.out.push(renderMessage(m));
        this.node(id).step(m);
      }
    }
    return [];
  }

  /** The network delivers every message now waiting for the node a second time. */
  private duplicate(cmd: Command): string[] {
    for (const id of this.ids(cmd)) {
      const msgs = this.inbox.get(id) ?? [];
      msgs.push(...msgs);
    }
    return [];
  }

  private take(id: number): Message[] {
    const msgs = this.inbox.get(id) ?? [];
    this.inbox.set(id, []);
    return msgs;
  }

  private stabilize(cmd: Command): string[] {
    const ids = this.ids(cmd);
    for (let round = 0; round < 1000; round++) {
      let progressed = false;
      for (const id of ids) {
        const r = this.processReady(id);
        if (r.length > 0) progressed = true;
        this.out.push(...r);
      }
      for (const id of ids) {
        const msgs = this.take(id);
        if (msgs.length === 0) continue;
        progressed = true;
        this.out.push(`> ${id} receiving messages`);
        for (const m of msgs) {
          this.out.push(`  ${renderMessage(m)}`);
          this.node(id).step(m);
        }
      }
      if (!progressed) return [];
    }
    throw new Error('stabilize did not converge in 1000 rounds');
  }

  private partition(cmd: Command): string[] {
    // partition 1 / 2 3 : everything between the groups is cut (both ways); "oneway=1->2" cuts one direction.
    const oneway = cmd.kv.get('oneway');
    if (oneway !== undefined) {
      const [a, b] = oneway.split('->').map(Number);
      this.cut.add(`${a}-${b}`);
      return [];
    }
    const groups: number[][] = [[]];
    for (const a of cmd.args) {
      if (a === '/') groups.push([]);
      else (groups[groups.length - 1] as number[]).push(num(a));
    }
    for (const g of groups) {
      for (const h of groups) {
        if (g === h) continue;
        for (const a of g) for (const b of h) this.cut.add(`${a}-${b}`);
      }
    }
    return [];
  }

  private status(id: number): string {
    const s = this.node(id).status();
    const pr = Object.entries(s.progress)
      .map(
        ([pid, p]) =>
          `${pid}:${p.state} match=${p.match} next=${p.next}${p.learner ? ' learner' : ''}` +
          (p.snapshot ? ` sent=${p.snapshot.id}:${p.snapshot.acked}/${p.snapshot.totalBytes}` : ''),
      )
      .join(' ');
    const inc = s.incomingSnapshot;
    const incoming = inc ? ` incoming=${inc.id}:${inc.received}/${inc.totalBytes}` : '';
    // Shown only while part of the log is not yet durable, to keep settled states short.
    const persisted = s.persistedIndex < s.lastIndex ? ` persisted=${s.persistedIndex}` : '';
    const recovering = s.recovery === 'recovering' ? ' recovering' : '';
    const quiesced = s.quiesced ? ' quiesced' : '';
    return `${id}: ${s.role} term=${s.term} vote=${s.vote} leader=${s.leader} commit=${s.commit} applied=${s.applied} last=${s.lastIndex}${persisted}${recovering}${quiesced}${incoming}${pr ? ` | ${pr}` : ''}`;
  }

  private raftLog(id: number): string {
    const s = this.node(id).status();
    const entries: string[] = [];
    for (let i = s.firstIndex; i <= s.lastIndex; i++) {
      const e = this.node(id).entry(i);
      if (e) entries.push(renderEntry(e));
    }
    return `${id}: [${entries.join(', ')}]`;
  }

  private crash(cmd: Command): string[] {
    for (const id of this.ids(cmd)) {
      this.nodes.delete(id);
      this.inbox.set(id, []);
      // A write the disk had not finished is lost with the process.
      this.held.delete(id);
    }
    return [];
  }

  /** The node's data directory is lost while it is down: it restarts with nothing. */
  private wipe(cmd: Command): string[] {
    for (const id of this.ids(cmd)) {
      if (this.nodes.has(id)) throw new Error(`Node ${id} must be crashed before it is wiped`);
      // As the runtime decides for an empty data directory whose peers hold a log.
      this.durable.set(id, { ...emptyDurable(), recovery: 'recovering' });
    }
    return [];
  }

  private restart(cmd: Command): string[] {
    for (const id of this.ids(cmd)) this.startNode(id);
    return this.ids(cmd).map((id) => this.status(id));
  }

  private ids(cmd: Command): number[] {
    const listed = cmd.args.filter((a) => /^\d+$/.test(a)).map(Number);
    return listed.length > 0 ? listed : [...this.durable.keys()].filter((id) => this.nodes.has(id));
  }

  private node(id: number): RaftNode {
    const n = this.nodes.get(id);
    if (n === undefined) throw new Error(`No running node ${id}`);
    return n;
  }

  private durableOf(id: number): Durable {
    const d = this.durable.get(id);
    if (d === undefined) throw new Error(`No node ${id}`);
    return d;
  }
}

function num(s: string | undefined): number {
  const n = Number(s);
  if (!Number.isInteger(n)) throw new Error(`Expected an integer, got "${s}"`);
  return n;
}

function parseList(s: string | undefined): number[] {
  if (s === undefined) return [];
  return s.replace(/[()]/g, '').split(',').filter(Boolean).map(Number);
}

/** Parses one command line: `name arg arg key=value`. */
export function parseCommand(line: string): Command {
  const parts = line.trim().split(/\s+/);
  const args: string[] = [];
  const kv = new Map<string, string>();
  for (const p of parts.slice(1)) {
    const eq = p.indexOf('=');
    if (eq > 0) kv.set(p.slice(0, eq), p.slice(eq + 1));
    else args.push(p);
  }
  return { name: parts[0] ?? '', args, kv };
}
