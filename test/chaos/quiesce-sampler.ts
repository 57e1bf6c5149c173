// With --quiesce, how asleep the cluster really was: a run whose groups never quiesce between
// faults would test nothing new. Every second each node's metrics are read (a node down or
// cut off is skipped for that sample) and summed: group-samples quiesced against all, and the
// groups woken by a peer's silence (a counter per process, so the highest seen per node).

export interface QuiesceSummary {
  readonly samples: number;
  readonly groupSamples: number;
  readonly quiescedSamples: number;
  /** Per node, the most groups its node-level failure detection had woken in one lifetime. */
  readonly wokenBySilence: ReadonlyMap<number, number>;
}

/** `flotilla_raft_groups{state=...}` and `flotilla_quiesce_woken_by_silence` from a scrape. */
export function parseQuiesceMetrics(
  text: string,
): { quiesced: number; awake: number; woken: number } | null {
  const gauge = (re: RegExp): number | null => {
    const m = re.exec(text);
    return m === null ? null : Number(m[1]);
  };
  const quiesced = gauge(/^flotilla_raft_groups\{[^}]*state="quiesced"[^}]*\} (\d+)/m);
  const awake = gauge(/^flotilla_raft_groups\{[^}]*state="awake"[^}]*\} (\d+)/m);
  const woken = gauge(/^flotilla_quiesce_woken_by_silence(?:\{[^}]*\})? (\d+)/m);
  if (quiesced === null || awake === null || woken === null) return null;
  return { quiesced, awake, woken };
}

export class QuiesceSampler {
  private samples = 0;
  private groupSamples = 0;
  private quiescedSamples = 0;
  private readonly woken = new Map<number, number>();
  private timer: NodeJS.Timeout | null = null;
  private inFlight: Promise<void> = Promise.resolve();

  /** `endpoints()`: each node's id and client URL now (members come and go). */
  constructor(private readonly endpoints: () => ReadonlyArray<readonly [number, string]>) {}

  start(everyMs = 1_000): void {
    this.timer = setInterval(() => {
      this.inFlight = this.inFlight.then(() => this.sample());
    }, everyMs);
  }

  async stop(): Promise<QuiesceSummary> {
    if (this.timer !== null) clearInterval(this.timer);
    this.timer = null;
    await this.inFlight;
    return {
      samples: this.samples,
      groupSamples: this.groupSamples,
      quiescedSamples: this.quiescedSamples,
      wokenBySilence: new Map(this.woken),
    };
  }

  private async sample(): Promise<void> {
    this.samples++;
    await Promise.all(
      this.endpoints().map(async ([id, url]) => {
        let text: string;
        try {
          const res = await fetch(`${url}/metrics`, { signal: AbortSignal.timeout(500) });
          text = await res.text();
        } catch {
          return; // down, paused or cut off: this sample has nothing from it
        }
        const m = parseQuiesceMetrics(text);
        if (m === null) return;
        this.groupSamples += m.quiesced + m.awake;
        this.quiescedSamples += m.quiesced;
        this.woken.set(id, Math.max(this.woken.get(id) ?? 0, m.woken));
      }),
    );
  }
}

export function formatQuiesce(s: QuiesceSummary): string {
  const share = s.groupSamples === 0 ? 0 : (100 * s.quiescedSamples) / s.groupSamples;
  const woken = [...s.wokenBySilence].map(([id, n]) => `n${id} ${n}`).join(', ');
  return (
    `  quiesce: ${share.toFixed(0)}% of ${s.groupSamples} group samples quiesced ` +
    `(${s.samples} scrapes); woken by silence: ${woken === '' ? 'none seen' : woken}`
  );
}
