// The version gate of a rolling upgrade (DESIGN.md, "Upgrades"). A command introduced at a
// feature level (src/base/features.ts) is proposed only once the cluster's active level reached
// it; until then it is refused FEATURE_NOT_ENABLED before anything enters a log, because a
// member of an older release would refuse it when applying it while the others apply it.
//
// Who runs what: every node says its level in each peer handshake (PROTOCOL.md), so a node
// knows the level each peer runs now, not one it ran once: a restart with another release
// says the new one on its next connection. Absent (a release before the gate) is level 0.
//
// The active level is replicated: group 0's leader raises it, by an entry of its own kind in
// group 0's log (envelope kind 3, applied by the session layer and kept in its snapshots),
// to the lowest level any member (voters and learners) runs, once it heard from all of them.
// Every member then agrees on the entry from which it holds, and it never goes down. Only the
// replicated level admits a command; what the handshakes say only decides between refusing
// at once (a member is behind) and waiting a moment for a raise that is due.

import type { Logger } from 'pino';
import { FlotillaError } from '../base/errors.js';
import { features, type Feature } from '../base/features.js';
import type { Clock } from '../host/contracts.js';
import { KIND_FEATURE_LEVEL, encodeEnvelope, encodeFeatureLevel } from '../host/envelope.js';
import type { RaftRuntime } from '../host/runtime.js';
import type { SessionMachine } from '../host/sessions.js';
import type { QueueCommandAny } from '../queue/index.js';
import { Periodic } from './periodic.js';

/** What a service asks before it proposes a command behind the gate. */
export interface FeatureCheck {
  /**
   * Resolves once the cluster's active level enables `feature` as this node applied it;
   * throws FEATURE_NOT_ENABLED (definite) when a member runs an older release, or when a raise
   * that is due did not reach this node within the gate's wait.
   */
  require(feature: Feature, signal?: AbortSignal): Promise<void>;
  /** The cluster's active level as this node applied it. */
  active(): number;
}

/**
 * A write's session as it may enter the log at the active `level`: without its acknowledgement
 * mark below the level that has it (a member of an older release would refuse the envelope
 * that carries it). Without the mark the session keeps its whole window, as before.
 */
export function sessionAtLevel<S extends { readonly seq: number; readonly ackedBelow?: number }>(
  session: S | null,
  level: number,
): S | null {
  if (session?.ackedBelow === undefined || level >= features.sessionAcks.level) return session;
  const { ackedBelow: _mark, ...rest } = session;
  return rest as S;
}

/** The feature a queue command belongs to; null for commands every release knows. */
export function queueCommandFeature(cmd: QueueCommandAny): Feature | null {
  if (cmd.op === 'reportBulk') return features.queueReportBulk;
  if (cmd.op === 'fail' && cmd.counted === true) return features.queueReleaseCap;
  if (cmd.op === 'configure' && cmd.maxReleases !== undefined) return features.queueReleaseCap;
  if (cmd.op === 'fail' && cmd.release === true) return features.queueRelease;
  if (cmd.op === 'addBulk') return features.queueNextAndBulk;
  if ((cmd.op === 'complete' || cmd.op === 'fail') && cmd.next !== undefined)
    return features.queueNextAndBulk;
  return null;
}

/** One member's level as this node knows it; null: not heard from since this node started. */
export interface MemberLevel {
  readonly id: number;
  readonly level: number | null;
}

export interface FeatureGateOptions {
  readonly selfId: number;
  /** The level this node runs (FEATURE_LEVEL, lower only where a test plays an older release). */
  readonly level: number;
  /** Group 0: its configuration names the members, its log holds the active level. */
  readonly runtime: RaftRuntime;
  readonly sessions: SessionMachine;
  /** The level each peer's latest handshake said (absent: none yet; 0: an older release). */
  readonly peerLevels: ReadonlyMap<number, number>;
  readonly clock: Clock;
  /** How long `require` waits for a raise that is due (every member runs the level). */
  readonly raiseWaitMs: number;
  /** How often group 0's leader looks whether the level can rise (also on every handshake). */
  readonly checkEveryMs: number;
  readonly log: Logger;
}

export class FeatureGate implements FeatureCheck {
  private readonly periodic: Periodic;
  private raising = false;
  private readonly offs: (() => void)[] = [];

  constructor(private readonly o: FeatureGateOptions) {
    this.periodic = new Periodic(o.clock, o.checkEveryMs, () => void this.maybeRaise());
  }

  start(): void {
    this.offs.push(this.o.runtime.onLeaderChange(() => void this.maybeRaise()));
    this.periodic.start();
  }

  stop(): void {
    this.periodic.stop();
    for (const off of this.offs.splice(0)) off();
  }

  /** The level this node runs. */
  get level(): number {
    return this.o.level;
  }

  /** The cluster's active level, as this node applied group 0's log. */
  active(): number {
    return this.o.sessions.featureLevel();
  }

  /** Every member of group 0 (voters, learners, outgoing voters) and the level it runs. */
  members(): MemberLevel[] {
    const s = this.o.runtime.status();
    const ids = new Set([...s.conf.voters, ...s.conf.outgoing, ...s.conf.learners]);
    return [...ids]
      .sort((a, b) => a - b)
      .map((id) => ({
        id,
        level: id === this.o.selfId ? this.o.level : (this.o.peerLevels.get(id) ?? null),
      }));
  }

  /** A peer said its level in a handshake: the level may be able to rise now. */
  peerChanged(): void {
    void this.maybeRaise();
  }

  async require(feature: Feature, signal?: AbortSignal): Promise<void> {
    if (this.active() >= feature.level) return;
    const behind = this.members().filter((m) => m.level === null || m.level < feature.level);
    if (behind.length > 0) throw this.notEnabled(feature, behind);
    // Every member runs the level: group 0's leader raises it (at once if that is this node);
    // this replica enables the feature when it applies the raise.
    void this.maybeRaise();
    await this.waitForLevel(feature, signal);
  }

  /** On group 0's leader: raises the active level to the lowest any member runs. */
  async maybeRaise(): Promise<void> {
    if (this.raising || !this.o.runtime.isLeader()) return;
    const levels = this.members().map((m) => m.level);
    if (levels.length === 0 || levels.some((l) => l === null)) return;
    const target = Math.min(...(levels as number[]));
    if (target <= this.active()) return;
    this.raising = true;
    try {
      await this.o.runtime.propose(
        encodeEnvelope({
          kind: KIND_FEATURE_LEVEL,
          client: '',
          seq: 0,
          timeMs: this.o.clock.nowMs(),
          payload: encodeFeatureLevel(target),
        }),
        { timeoutMs: this.o.raiseWaitMs },
      );
      this.o.log.info({ featureLevel: this.active() }, 'cluster feature level raised');
    } catch (err) {
      // Proposed again at the next check, on whichever node then leads group 0.
      this.o.log.debug({ err: (err as Error).message }, 'raising the feature level failed');
    } finally {
      this.raising = false;
    }
  }

  private waitForLevel(feature: Feature, signal?: AbortSignal): Promise<void> {
    return new Promise((resolve, reject) => {
      const done = (err?: Error): void => {
        off();
        this.o.clock.clearTimeout(timer);
        signal?.removeEventListener('abort', aborted);
        if (err === undefined) resolve();
        else reject(err);
      };
      const off = this.o.sessions.onFeatureLevel((l) => {
        if (l >= feature.level) done();
      });
      const timer = this.o.clock.setTimeout(
        () =>
          done(
            new FlotillaError(
              'FEATURE_NOT_ENABLED',
              `${describe(feature)}: every member runs it, but the cluster's level (${this.active()}) ` +
                `was not raised here within ${this.o.raiseWaitMs} ms (group 0 raises it once it has ` +
                `a leader); retry`,
            ),
          ),
        this.o.raiseWaitMs,
      );
      const aborted = (): void =>
        done(
          new FlotillaError(
            'ABORTED',
            'The request was aborted while waiting for the feature level to rise; nothing was proposed',
            false,
          ),
        );
      signal?.addEventListener('abort', aborted, { once: true });
      if (this.active() >= feature.level) done();
    });
  }

  private notEnabled(feature: Feature, behind: readonly MemberLevel[]): FlotillaError {
    const who = behind
      .map((m) =>
        m.level === null
          ? `member ${m.id} has not been heard from`
          : `member ${m.id} runs level ${m.level}`,
      )
      .join(', ');
    return new FlotillaError(
      'FEATURE_NOT_ENABLED',
      `${describe(feature)}, and the cluster is at level ${this.active()}: ${who}. Upgrade ` +
        `every member to a release at level ${feature.level} or later; the level then rises by itself`,
    );
  }
}

function describe(feature: Feature): string {
  return `${feature.name} needs cluster feature level ${feature.level}`;
}
