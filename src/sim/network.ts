// The virtual network's link state: which directed links are cut. Drops, delays and
// duplicates are decided per message by the simulation from its seeded random stream.

export class LinkTable {
  /** Invariant: a key `from*1000+to` is present iff messages from->to are dropped. */
  private readonly cut = new Set<number>();

  constructor(private readonly maxNodeId: number) {}

  blocked(from: number, to: number): boolean {
    return this.cut.has(from * 1000 + to);
  }

  cutOneWay(from: number, to: number): void {
    if (from !== to) this.cut.add(from * 1000 + to);
  }

  /** Splits the nodes into two sides that cannot talk to each other in either direction. */
  split(side: ReadonlySet<number>): void {
    for (let a = 1; a <= this.maxNodeId; a++) {
      for (let b = 1; b <= this.maxNodeId; b++) {
        if (side.has(a) !== side.has(b)) this.cutOneWay(a, b);
      }
    }
  }

  healAll(): void {
    this.cut.clear();
  }

  describe(): string {
    const links = [...this.cut]
      .sort((a, b) => a - b)
      .map((k) => `${Math.floor(k / 1000)}->${k % 1000}`);
    return links.length === 0 ? 'none' : links.join(' ');
  }
}
