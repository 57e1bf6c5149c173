// Crash test with real processes: a child appends to a WAL and prints what was acknowledged;
// we SIGKILL it at random moments, reopen, and check every acknowledged entry is there, intact
// and in order, and the hard state did not go back. Bounded by rounds and by wall time.

import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { createRng } from '../../src/raft/index.js';
import { openWalStorage } from '../../src/storage/wal.js';
import { entry, plain, tempDir } from './helpers.js';

const CHILD = join(fileURLToPath(new URL('.', import.meta.url)), 'crash-child.js');
const ROUNDS_MAX = 40;
const TIME_BUDGET_MS = 15_000;

interface RoundResult {
  readonly acked: number;
  readonly ackedTerm: number;
}

/** Runs the child until it printed `ready`, then kills it after a random delay. */
function runChild(
  dir: string,
  term: number,
  killAfterMs: number,
  plant = false,
): Promise<RoundResult> {
  return new Promise((resolve, reject) => {
    const env = { ...process.env, FLOTILLA_CRASH_PLANT: plant ? 'ack-early' : '' };
    const child = spawn(process.execPath, [CHILD, dir, String(term)], {
      stdio: ['ignore', 'pipe', 'pipe'],
      env,
    });
    let out = '';
    let err = '';
    let timer: NodeJS.Timeout | null = null;
    child.stdout.setEncoding('utf8').on('data', (chunk: string) => {
      out += chunk;
      if (timer === null && out.includes('ready'))
        timer = setTimeout(() => child.kill('SIGKILL'), killAfterMs);
    });
    child.stderr.setEncoding('utf8').on('data', (chunk: string) => (err += chunk));
    child.on('error', reject);
    child.on('close', (code, signal) => {
      if (timer !== null) clearTimeout(timer);
      if (signal !== 'SIGKILL') return reject(new Error(`child exited ${code} ${signal}: ${err}`));
      let acked = 0;
      for (const line of out.split('\n')) {
        const m = /^ack (\d+) (\d+)$/.exec(line);
        if (m !== null) acked = Math.max(acked, Number(m[1]));
      }
      resolve({ acked, ackedTerm: term });
    });
  });
}

async function verify(dir: string, acked: number, term: number): Promise<number> {
  const s = await openWalStorage(dir, { segmentBytes: 64 * 1024 });
  try {
    const init = s.initialState();
    const from = (init.snapshot?.index ?? 0) + 1;
    assert.ok(
      s.log.lastIndex() >= acked,
      `acknowledged ${acked} but recovered only up to ${s.log.lastIndex()}`,
    );
    assert.ok(
      init.hardState.term >= term || acked === 0,
      `hard state term went back to ${init.hardState.term}`,
    );
    let prevTerm = 0;
    for (const e of init.entries) {
      assert.ok(e.term >= prevTerm, `term decreased at ${e.index}`);
      prevTerm = e.term;
      assert.deepEqual(
        plain([e]),
        plain([entry(e.index, e.term, 16 + (e.index % 200))]),
        `entry ${e.index} is intact`,
      );
    }
    assert.equal(init.entries[0]?.index ?? from, from, 'entries start right after the snapshot');
    const snap = await s.loadSnapshot();
    if (snap !== null)
      assert.match(
        new TextDecoder().decode(snap.data),
        new RegExp(`^snapshot ${snap.meta.index} `),
      );
    return s.log.lastIndex();
  } finally {
    await s.close();
  }
}

void describe('WAL crash safety', () => {
  void it('keeps every acknowledged entry across SIGKILL at random moments', async (t) => {
    const { dir, cleanup } = await tempDir('flotilla-crash-');
    const rng = createRng(Number(process.env['FLOTILLA_CRASH_SEED'] ?? 7));
    const started = Date.now();
    let rounds = 0;
    let totalAcked = 0;
    try {
      // Each round's child starts a new term, like a restarted node that saw a new election.
      for (let term = 1; term <= ROUNDS_MAX && Date.now() - started < TIME_BUDGET_MS; term++) {
        const { acked } = await runChild(dir, term, 20 + rng.int(250));
        const last = await verify(dir, acked, term);
        totalAcked = Math.max(totalAcked, acked);
        assert.ok(last >= acked);
        rounds++;
      }
    } finally {
      await cleanup();
    }
    t.diagnostic(`${rounds} rounds, ${totalAcked} entries acknowledged`);
    assert.ok(rounds >= 5, `only ${rounds} rounds ran`);
    assert.ok(totalAcked > 0, 'the children acknowledged some writes');
  });

  void it('catches a child that acknowledges before writing (planted bug)', async () => {
    const { dir, cleanup } = await tempDir('flotilla-crash-plant-');
    const rng = createRng(11);
    let caught: unknown = null;
    try {
      for (let term = 1; term <= 10 && caught === null; term++) {
        const { acked } = await runChild(dir, term, 20 + rng.int(150), true);
        await verify(dir, acked, term).catch((err: unknown) => (caught = err));
      }
    } finally {
      await cleanup();
    }
    assert.ok(
      caught instanceof assert.AssertionError,
      `the checker missed the planted bug: ${String(caught)}`,
    );
    assert.match(caught.message, /acknowledged \d+ but recovered only up to/);
  });
});
